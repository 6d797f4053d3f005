import errno
import subprocess

import numpy as np
import pytest

from generator import store
from generator.errors import AtlasError


def test_a_complete_folder_whose_file_changed_is_not_complete(tmp_path):
    folder = tmp_path / "layout" / "k"
    store.ensure(folder, "k", lambda f: store.save_array(f / "layout.npy", np.arange(6.0)))
    assert store.is_complete(folder, "k")
    data = bytearray((folder / "layout.npy").read_bytes())
    data[-1] ^= 1
    (folder / "layout.npy").write_bytes(bytes(data))
    notes = []
    assert not store.is_complete(folder, "k", notes.append)
    assert notes == ["cache: layout/k/layout.npy is damaged; recomputing"]
    made = []
    store.ensure(folder, "k", lambda f: made.append(1) or store.save_array(f / "layout.npy", np.arange(6.0)))
    assert made == [1] and np.array_equal(np.load(folder / "layout.npy"), np.arange(6.0))


def test_published_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        store.write_json(tmp_path / "x.json", {"fidelity": float("nan")})


def test_an_array_on_a_full_disk_is_an_error_when_reserved_not_a_crash_later(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("needs permission to mount a tmpfs")
    try:
        with pytest.raises(OSError) as caught:
            store.reserve_array(disk / "activations.npy", np.float16, (1000, 512))
        assert caught.value.errno == errno.ENOSPC
        with pytest.raises(AtlasError, match="free space"):
            with store.writing(disk):
                store.reserve_array(disk / "activations.npy", np.float16, (1000, 512))
    finally:
        subprocess.run(["umount", "--lazy", str(disk)])
