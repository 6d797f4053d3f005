"""The output folder: checked before a build, swapped for the new site after it, repaired after a crash.

The site is built in `.<out>.building-PID` beside the output folder and renamed into
place. The user's own entries of the output folder (dotfiles such as `.git` and
`.nojekyll`, and `README.md`) move into the new site first. An output folder that
cannot be renamed (a mount point) has its contents replaced in place instead, with
the site built in `.atlas-building-PID` inside it.

Every step leaves a state the next build can undo: a build killed mid-swap leaves
`.<out>.old-PID` (or `.atlas-old-PID` / `.atlas-replaced-PID` inside the output),
and `recover` puts the previous site back before anything else runs.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from .errors import AtlasError

_OWN = ".atlas-"  # the prefix of folders atlas makes inside an output folder


def kept(name: str) -> bool:
    """Whether an entry of the output folder is the user's, to keep across builds."""
    return (name.startswith(".") and not name.startswith(_OWN)) or name == "README.md"


def check_out_dir(out: Path) -> None:
    """Refuse to replace a folder that holds files atlas did not make."""
    if not out.exists():
        return
    if not out.is_dir():
        raise AtlasError(f"{out} exists and is not a folder: choose another --out")
    own = (out / "data" / "manifest.json").is_file()
    foreign = [p.name for p in out.iterdir() if not kept(p.name) and not p.name.startswith(_OWN)]
    if foreign and not own:
        raise AtlasError(f"{out} holds files that atlas did not make ({', '.join(sorted(foreign)[:3])}): "
                         "choose another --out or empty that folder")


def check_writable(folder: Path, option: str) -> None:
    """Fail now, not after the compute, when nothing can be written in `folder`."""
    probe = folder / f".atlas-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"atlas")
        probe.unlink()
    except OSError as exc:
        raise AtlasError(f"cannot write in {folder} ({exc.strerror or exc}): make it writable, free space "
                         f"on its disk, or choose another {option}") from None


def building_dir(out: Path) -> Path:
    """Where the new site is built: beside `out`, or inside it where `out` is a mount point."""
    if out.is_dir() and os.path.ismount(out):
        return out / f"{_OWN}building-{os.getpid()}"
    return out.with_name(f".{out.name}.building-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _leftovers(folder: Path, pattern: str) -> list[tuple[Path, int]]:
    """Entries of `folder` named by `pattern` (with a PID group) whose process is gone, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = re.fullmatch(pattern, p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            found.append((p, int(m.group(1))))
    return sorted(found, key=lambda x: x[0].stat().st_mtime)


def _move_kept(source: Path, target: Path) -> None:
    """Move the user's entries of `source` into `target`, where `target` lacks them."""
    if source.is_dir():
        for p in list(source.iterdir()):
            if kept(p.name) and not (target / p.name).exists():
                os.replace(p, target / p.name)


def recover(out: Path, note: Callable[[str], None] = lambda m: None) -> None:
    """Undo what killed builds left: restore a site caught mid-swap, remove their half-built folders."""
    name = re.escape(out.name)
    olds = _leftovers(out.parent, rf"\.{name}\.old-(\d+)")
    if olds and not out.exists():
        old, pid = olds.pop()
        _move_kept(out.with_name(f".{out.name}.building-{pid}"), old)
        os.replace(old, out)
        note(f"output: restored {out} from a build killed while swapping it in")
    for old, _ in olds:
        _move_kept(old, out)
        shutil.rmtree(old, ignore_errors=True)
    if out.is_dir():
        for aside, _ in _leftovers(out, rf"{re.escape(_OWN)}old-(\d+)"):
            for p in list(aside.iterdir()):
                if not (out / p.name).exists():
                    os.replace(p, out / p.name)
            shutil.rmtree(aside, ignore_errors=True)
            note(f"output: restored {out} from a build killed while replacing its contents")
        for replaced, _ in _leftovers(out, rf"{re.escape(_OWN)}replaced-(\d+)"):
            _clear(out)
            for p in list(replaced.iterdir()):
                os.replace(p, out / p.name)
            replaced.rmdir()
            note(f"output: restored {out} from a build killed while replacing its contents")
        for building, _ in _leftovers(out, rf"{re.escape(_OWN)}building-(\d+)"):
            shutil.rmtree(building, ignore_errors=True)
    for building, _ in _leftovers(out.parent, rf"\.{name}\.building-(\d+)"):
        shutil.rmtree(building, ignore_errors=True)


def _clear(out: Path) -> None:
    """Remove the site's own entries of `out`, keeping the user's and atlas's working folders."""
    for p in list(out.iterdir()):
        if not kept(p.name) and not p.name.startswith(_OWN):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _replace_contents(new: Path, out: Path) -> None:
    """Swap the site into `out` entry by entry, for an output folder that cannot be renamed."""
    aside = out / f"{_OWN}old-{os.getpid()}"
    aside.mkdir()
    for p in list(out.iterdir()):
        if not kept(p.name) and not p.name.startswith(_OWN):
            os.replace(p, aside / p.name)
    # From here the old site is whole in one folder: recovery removes what came in and puts it back.
    replaced = out / f"{_OWN}replaced-{os.getpid()}"
    os.replace(aside, replaced)
    for p in list(new.iterdir()):
        if not (out / p.name).exists():
            shutil.move(p, out / p.name)
    shutil.rmtree(replaced)
    shutil.rmtree(new)


def swap_in(new: Path, out: Path) -> None:
    """Replace `out` by the site in `new`, keeping the user's entries of `out`."""
    if not out.exists():
        os.replace(new, out)
        return
    if new.parent == out:
        _replace_contents(new, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    try:
        os.replace(out, old)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES):
            raise
        _replace_contents(new, out)
        return
    try:
        _move_kept(old, new)
        os.replace(new, out)
    except BaseException:
        _move_kept(new, old)
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
