"""`atlas serve`: preview a built site, rebuilding it when its sources change.

The server answers only with files inside the output folder, and adds a small script to
every HTML response (never to the file on disk) that polls `/__atlas/status`: it reloads the
page when the version changes, and shows the last rebuild's error over the page until a
rebuild succeeds. A `Watcher` polls the sources: an edit in content/ or templates/
re-renders the pages only, from the site's own data/manifest.json and data/build.json; an
edit of atlas.toml reruns the whole build, whose stages are cached.

Against DNS rebinding (a web page whose own name points at 127.0.0.1, reading the preview),
requests must name the server as an IP address or localhost in their Host header, or as a
name given with --allow-host; bound to a loopback address, only loopback addresses count.
Connections that send nothing are closed after `PreviewServer.idle_timeout_s`.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

import jinja2

from .config import Config, load_config
from .errors import AtlasError
from .pipeline import build  # torch is imported inside build(), so this stays cheap
from .progress import Reporter
from .site import render_site

STATUS_PATH = "/__atlas/status"  # {"version": n, "error": "..." or null}

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webp": "image/webp",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

# Polls quietly: a stopped server must not fill the console with errors or reload into an error page.
# The error may hold the user's text (a file name, a line of markdown): it is set as text, never as HTML.
RELOAD_SCRIPT = """<script>/* added by atlas serve, not in the file on disk */
(() => {
  const seen = %d;
  let banner = null;
  const show = (error) => {
    if (!error) {
      if (banner) banner.remove();
      banner = null;
      return;
    }
    if (!banner) {
      banner = document.createElement("div");
      banner.className = "atlas-serve-error";
      banner.setAttribute("role", "alert");
      banner.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:2147483647;margin:0;" +
        "padding:0.75em 1em;max-height:50vh;overflow:auto;background:#8b1a1a;color:#fff;" +
        "font:14px/1.45 ui-monospace,monospace;white-space:pre-wrap;box-shadow:0 2px 8px #0006";
      document.body.append(banner);
    }
    const text = "The last rebuild failed; this is the last good site.\\n" + error;
    if (banner.textContent !== text) banner.textContent = text;
  };
  const poll = () => fetch("%s", {cache: "no-store"})
    .then((r) => r.ok ? r.json() : null)
    .then((s) => { if (s && s.version !== seen) location.reload(); else if (s) show(s.error); })
    .catch(() => {});
  poll();
  setInterval(poll, 1000);
})();
</script>
"""

def resolve_request(out_dir: Path, url_path: str) -> Path | None:
    """The file inside `out_dir` that `url_path` asks for, or None.

    The path is resolved with symlinks followed before the check, so `..` (plain or
    %-encoded), absolute paths and links leading out of the folder all give None.
    """
    root = out_dir.resolve()
    path = url_path.split("?", 1)[0].split("#", 1)[0]
    try:
        target = (root / unquote(path).lstrip("/")).resolve()
        if target.is_dir():
            target = (target / "index.html").resolve()
    except (OSError, ValueError, RuntimeError):  # a null byte; a loop of links (RuntimeError before 3.13)
        return None
    if root not in target.parents or not target.is_file():
        return None
    return target


def add_reload_script(page: bytes, version: int) -> bytes:
    """`page` with the reload script before its last </body> (or at its end)."""
    script = (RELOAD_SCRIPT % (version, STATUS_PATH)).encode()
    at = page.lower().rfind(b"</body>")
    return page + script if at < 0 else page[:at] + script + page[at:]


def host_allowed(host: str | None, loopback_only: bool, names: set[str]) -> bool:
    """Whether a request's Host header names this server: an IP address (a loopback one when
    `loopback_only`), localhost, or one of `names`, with any port."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        name, closed, port = host[1:].partition("]")
        if not closed or (port and not port.startswith(":")):
            return False
        port = port[1:]
    else:
        name, _, port = host.partition(":")
    if port and not port.isdigit():
        return False
    name = name.rstrip(".")
    if name == "localhost" or name in names:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a name a page's own domain could point at us with
    return address.is_loopback or not loopback_only


def is_loopback(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PreviewHandler(BaseHTTPRequestHandler):
    server: "PreviewServer"

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout_s  # StreamRequestHandler sets it on the socket
        super().setup()

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        host = self.headers.get("Host")
        if not host_allowed(host, self.server.loopback_only, self.server.allowed_names):
            port = self.server.server_address[1]
            return self._send(403, f"atlas serve answers to its addresses and localhost, not to the host {host!r}: "
                                   f"open http://127.0.0.1:{port}/, or start it with --allow-host NAME\n".encode(),
                              "text/plain; charset=utf-8", body)
        if self.path.split("?", 1)[0] == STATUS_PATH and self.server.status:
            return self._send(200, json.dumps(self.server.status()).encode(), "application/json", body)
        target = resolve_request(self.server.out_dir, self.path)
        if target is None:
            return self._send(404, b"not found\n", "text/plain; charset=utf-8", body)
        url_path = self.path.split("?", 1)[0]
        if target.name == "index.html" and not url_path.endswith(("/", ".html")):
            # explore -> explore/, so that the page's relative links resolve in its folder
            self.send_response(301)
            self.send_header("Location", "/" + url_path.strip("/") + "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            data = target.read_bytes()
        except OSError:
            return self._send(404, b"not found\n", "text/plain; charset=utf-8", body)
        kind = CONTENT_TYPES.get(target.suffix.lower(), "application/octet-stream")
        if target.suffix.lower() == ".html" and self.server.status:
            data = add_reload_script(data, self.server.status()["version"])
        self._send(200, data, kind, body)

    def _send(self, code: int, data: bytes, kind: str, body: bool) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")  # a reload must see the rebuilt files
            self.end_headers()
            if body:
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser left before the answer was written

    def log_request(self, code="-", size="-") -> None:
        if str(code).isdigit() and int(code) >= 400:  # missing files are worth a line; the polling is not
            super().log_request(code, size)

    def log_error(self, format: str, *args) -> None:
        if not format.startswith("Request timed out"):  # a browser's spare connection, closed as meant
            super().log_error(format, *args)


class PreviewServer(ThreadingHTTPServer):
    daemon_threads = True
    idle_timeout_s = 20.0  # a connection that sends nothing for this long is closed

    def __init__(self, address: tuple[str, int], out_dir: Path, status: Callable[[], dict] | None,
                 allowed_hosts: tuple[str, ...] = ()):
        self.out_dir = Path(out_dir)
        self.status = status
        self.loopback_only = is_loopback(address[0])
        self.allowed_names = {name.strip().lower().rstrip(".") for name in allowed_hosts}
        self.allowed_names.add(address[0].lower())  # a name given to --host
        super().__init__(address, PreviewHandler)


def make_server(out_dir: Path, host: str = "127.0.0.1", port: int = 8000,
                version: Callable[[], int] | None = lambda: 0, error: Callable[[], str | None] = lambda: None,
                allowed_hosts: tuple[str, ...] = ()) -> PreviewServer:
    """A server for `out_dir`, bound but not yet serving; port 0 picks a free port.

    `version()` is the number the pages' reload script watches and `error()` the text it shows
    over the page (None: no error); `version` None serves the pages as they are. `allowed_hosts`
    are names besides localhost and IP addresses that requests may give as their Host.
    """
    if not 0 <= port <= 65535:
        raise AtlasError("port must be 0 to 65535")
    status = (lambda: {"version": version(), "error": error()}) if version else None
    try:
        return PreviewServer((host, port), out_dir, status, tuple(allowed_hosts))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AtlasError(f"port {port} is in use: choose another with --port") from None
        raise AtlasError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def has_site(out_dir: Path) -> bool:
    return (out_dir / "data" / "manifest.json").is_file()


class Watcher:
    """Rebuilds the site when its sources change; `version` counts the successful rebuilds."""

    def __init__(self, cfg: Config, config_path: Path | None, overrides: dict | None = None,
                 report: Reporter | None = None):
        self.cfg = cfg
        self.config_path = Path(config_path) if config_path else None
        self.overrides = overrides or {}
        self.report = report or Reporter()
        self.version = 0
        self.last_error: str | None = None
        self._build_failed = False
        self._stamps = self._scan()

    def _folders(self) -> tuple[Path, Path]:
        return self.cfg.path(self.cfg.site.content), self.cfg.path(self.cfg.site.templates)

    def _scan(self) -> dict[Path, tuple[int, int]]:
        """(mtime, size) of every watched file."""
        files = [p for folder in self._folders() if folder.is_dir() for p in folder.rglob("*")]
        if self.config_path:
            files.append(self.config_path)
        stamps = {}
        for path in files:
            try:
                st = path.stat()
            except OSError:  # removed while we looked
                continue
            if path.is_file():
                stamps[path] = (st.st_mtime_ns, st.st_size)
        return stamps

    def poll(self) -> str | None:
        """Look for changes once and rebuild: returns "pages", "build", or None when nothing changed."""
        stamps = self._scan()
        if stamps == self._stamps:
            return None
        config_changed = self.config_path and stamps.get(self.config_path) != self._stamps.get(self.config_path)
        self._stamps = stamps
        # after a failed full build, any change retries it: the pages alone may not match the config
        what = "build" if config_changed or self._build_failed else "pages"
        try:
            if what == "build":
                self._build_failed = True
                self.cfg = load_config(self.config_path, self.overrides)
                self._stamps = self._scan()  # the config may name other folders to watch
                build(self.cfg, self.report)
                self._build_failed = False
            else:
                self.render_pages()
        except (AtlasError, jinja2.TemplateError, OSError, ValueError) as exc:
            self.last_error = str(exc) or type(exc).__name__  # every line: a config lists all its problems
            self.report.note(f"error: {self.last_error}")
            return what
        self.last_error = None
        self.version += 1
        self.report.note("site rebuilt" if what == "build" else "pages re-rendered")
        return what

    def render_pages(self) -> None:
        """Render the pages again, in place, from the data the last build wrote."""
        out = self.cfg.path(self.cfg.out)
        data = out / "data"
        if not has_site(out):
            raise AtlasError(f"no site in {out}: run atlas build")
        manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
        build_info = json.loads((data / "build.json").read_text(encoding="utf-8"))
        content, templates = self._folders()
        render_site(out, manifest, build_info, content if content.is_dir() else None,
                    templates if templates.is_dir() else None)

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        """Poll until `stop` is set; meant for a background thread."""
        while not stop.wait(interval_s):
            try:
                self.poll()
            except Exception:  # a bug: show it, and keep watching
                traceback.print_exc()


def serve_site(cfg: Config, config_path: Path | None, overrides: dict, host: str, port: int,
               build_first: bool = True, reload: bool = True, report: Reporter | None = None,
               allowed_hosts: tuple[str, ...] = ()) -> None:
    """Build the site if it is missing, then serve it until Ctrl+C, rebuilding on changes."""
    report = report or Reporter()
    out = cfg.path(cfg.out)
    watcher = Watcher(cfg, config_path, overrides, report) if reload else None
    server = make_server(out, host, port, (lambda: watcher.version) if watcher else None,
                         (lambda: watcher.last_error) if watcher else (lambda: None), allowed_hosts)
    try:
        if build_first and not has_site(out):
            build(cfg, report)
        if not out.is_dir():
            raise AtlasError(f"no site in {out}: run atlas build, or leave out --no-build")
        stop = threading.Event()
        if watcher:
            threading.Thread(target=watcher.run, args=(stop,), daemon=True).start()
        bound_host, bound_port = server.server_address[:2]
        report.note(f"Serving {out.resolve()} at http://{bound_host}:{bound_port}/ (Ctrl+C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
    finally:
        server.server_close()
