import http.client
import json
import os
import threading

import pytest
from typer.testing import CliRunner

from generator import serve
from generator.cli import app
from generator.config import load_config
from generator.errors import AtlasError
from generator.progress import Reporter

PAGE = "<html><body><h1>atlas</h1></body></html>\n"


@pytest.fixture
def project(tmp_path):
    """A project with a fake built site: no model, no icons."""
    site = tmp_path / "site"
    (site / "data").mkdir(parents=True)
    (site / "data" / "manifest.json").write_text(json.dumps({"title": "t", "atlases": [], "classes": []}))
    (site / "data" / "build.json").write_text(json.dumps({"images": 1}))
    (site / "index.html").write_text(PAGE)
    (site / "explore").mkdir()
    (site / "explore" / "index.html").write_text(PAGE)
    (site / "style.css").write_text("body {}")
    (tmp_path / "outside.txt").write_text("secret")
    (site / "link.txt").symlink_to(tmp_path / "outside.txt")
    (site / "loop").symlink_to(site / "loop")
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "index.md").write_text("# Hello\n")
    (tmp_path / "templates").mkdir()
    (tmp_path / "atlas.toml").write_text('seed = 0\n')
    return tmp_path


@pytest.fixture
def server(project):
    srv = serve.make_server(project / "site", port=0, version=lambda: 7, error=lambda: None)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(server, path, host=None):
    """(status, headers, body) of a raw GET, the path (and the Host header, if given) sent exactly as written."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.putrequest("GET", path, skip_host=host is not None)
    if host:
        conn.putheader("Host", host)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, resp.headers, body


def test_binds_to_localhost_by_default(server):
    assert server.server_address[0] == "127.0.0.1"


def test_html_gets_the_reload_script_not_the_file(server, project):
    status, headers, body = _get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store"
    text = body.decode()
    assert serve.STATUS_PATH in text and text.index("<script>") < text.index("</body>")
    assert "const seen = 7;" in text  # the version the page was served at
    assert (project / "site" / "index.html").read_text() == PAGE
    assert _get(server, "/index.html?x=1#top")[0] == 200
    status, headers, body = _get(server, "/style.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css") and body == b"body {}"
    assert _get(server, "/data/manifest.json")[1]["Content-Type"] == "application/json"


def test_status_gives_the_version_and_the_last_error(server, project):
    status, headers, body = _get(server, serve.STATUS_PATH)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"version": 7, "error": None}
    failing = serve.make_server(project / "site", port=0, version=lambda: 3,
                                error=lambda: "invalid config in atlas.toml:\n  seed: -1\n  icons.steps: 0")
    threading.Thread(target=failing.serve_forever, args=(0.05,), daemon=True).start()
    try:
        assert json.loads(_get(failing, serve.STATUS_PATH)[2]) == \
            {"version": 3, "error": "invalid config in atlas.toml:\n  seed: -1\n  icons.steps: 0"}
    finally:
        failing.shutdown()
        failing.server_close()


def test_folders_serve_their_index_and_no_listing(server):
    status, headers, _ = _get(server, "/explore")
    assert status == 301 and headers["Location"] == "/explore/"
    assert _get(server, "/explore/")[0] == 200
    assert _get(server, "/data/")[0] == 404


@pytest.mark.parametrize("path", ["/../outside.txt", "/%2e%2e/outside.txt", "/%2E%2E%2Foutside.txt",
                                  "/link.txt", "/loop", "//etc/passwd", "/etc/passwd", "/%00", "/nothing.html"])
def test_nothing_outside_the_site(server, path):
    status, _, body = _get(server, path)
    assert status == 404 and b"secret" not in body


def test_port_in_use_is_one_line(server, project):
    with pytest.raises(AtlasError, match="is in use: choose another with --port"):
        serve.make_server(project / "site", port=server.server_address[1])


class Notes(Reporter):
    def __init__(self):
        self.lines = []

    def note(self, message):
        self.lines.append(message)


def _touch(path):
    """A later modification time than the file had, however coarse the file system's clock."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def _watcher(project, monkeypatch, render=None):
    calls = {"render": [], "build": []}

    def fake_render(out, manifest, build_info, content, templates):
        calls["render"].append((out, manifest, build_info, content, templates))
        if render:
            render()

    monkeypatch.setattr(serve, "render_site", fake_render)
    monkeypatch.setattr(serve, "build", lambda cfg, report=None: calls["build"].append(cfg))
    monkeypatch.chdir(project)
    config = project / "atlas.toml"
    notes = Notes()
    return serve.Watcher(load_config(config), config, {}, notes), calls, notes


def test_content_change_renders_pages_only(project, monkeypatch):
    watcher, calls, _ = _watcher(project, monkeypatch)
    assert watcher.poll() is None and watcher.version == 0
    _touch(project / "content" / "index.md")
    assert watcher.poll() == "pages"
    assert watcher.version == 1 and calls["build"] == []
    out, manifest, build_info, content, templates = calls["render"][0]
    assert out.resolve() == (project / "site").resolve() and manifest["title"] == "t" and build_info == {"images": 1}
    assert content.resolve() == (project / "content").resolve()
    assert templates.resolve() == (project / "templates").resolve()
    (project / "templates" / "page.html").write_text("x")  # a new file counts too
    assert watcher.poll() == "pages" and watcher.version == 2
    assert watcher.poll() is None


def test_config_change_rebuilds(project, monkeypatch):
    watcher, calls, _ = _watcher(project, monkeypatch)
    (project / "atlas.toml").write_text("seed = 3\n")
    _touch(project / "atlas.toml")
    assert watcher.poll() == "build"
    assert [cfg.seed for cfg in calls["build"]] == [3] and calls["render"] == []
    assert watcher.version == 1


def test_failed_render_keeps_the_version_and_says_why(project, monkeypatch):
    def broken():
        raise AtlasError("templates/page.html:3: unexpected '}'\n  and a second line")

    watcher, calls, notes = _watcher(project, monkeypatch, render=broken)
    _touch(project / "content" / "index.md")
    assert watcher.poll() == "pages"
    assert watcher.version == 0
    assert notes.lines[-1] == "error: templates/page.html:3: unexpected '}'\n  and a second line"
    assert watcher.last_error == "templates/page.html:3: unexpected '}'\n  and a second line"


def test_bad_config_keeps_serving_and_retries(project, monkeypatch):
    watcher, calls, notes = _watcher(project, monkeypatch)
    (project / "atlas.toml").write_text("seed = -1\n")
    _touch(project / "atlas.toml")
    assert watcher.poll() == "build" and watcher.version == 0 and calls["build"] == []
    assert notes.lines[-1].startswith("error: invalid config")
    (project / "atlas.toml").write_text("seed = -1\n[icons]\nsteps = 0\n[grid]\nmin_count = 0\n")
    _touch(project / "atlas.toml")
    assert watcher.poll() == "build" and watcher.version == 0
    for key in ("seed", "icons.steps", "grid.min_count"):  # every problem, as atlas build lists them
        assert key in watcher.last_error and key in notes.lines[-1]
    (project / "atlas.toml").write_text("seed = 1\n")
    _touch(project / "atlas.toml")
    assert watcher.poll() == "build" and watcher.version == 1 and calls["build"][0].seed == 1


def test_cli_serves_until_ctrl_c(project, monkeypatch):
    def interrupted(self, poll_interval=0.5):
        raise KeyboardInterrupt

    monkeypatch.setattr(serve.PreviewServer, "serve_forever", interrupted)
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["serve", "--no-build", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert "Serving" in result.output and "http://127.0.0.1:" in result.output


def test_cli_without_a_site_is_one_line(project, monkeypatch):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["serve", "--no-build", "--port", "0", "--out", "elsewhere"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: no site in") and len(result.output.strip().splitlines()) == 1


def test_without_reload_pages_are_served_as_they_are(project):
    srv = serve.make_server(project / "site", port=0, version=None)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        status, _, body = _get(srv, "/")
        assert status == 200 and body.decode() == PAGE
        assert _get(srv, serve.STATUS_PATH)[0] == 404
    finally:
        srv.shutdown()
        srv.server_close()


def test_real_render_error_reaches_the_status_whole(project, monkeypatch):
    """The pages' own mistakes, through the real render_site, as the page's banner will show them."""
    monkeypatch.chdir(project)
    config = project / "atlas.toml"
    watcher = serve.Watcher(load_config(config), config, {}, Notes())
    (project / "content" / "index.md").write_text("---\ntitle: T\n---\nText {{< layers\n")
    assert watcher.poll() == "pages" and watcher.version == 0
    assert watcher.last_error.startswith("content/index.md:4: unclosed shortcode '{{< layers'")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8000", "LOCALHOST", "[::1]:9000", "127.0.0.2:80"])
def test_loopback_names_are_answered(server, host):
    assert _get(server, "/", host=host)[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "192.168.1.5:8000",
                                  "localhost:x", "", "[::1"])
def test_other_hosts_get_403_against_dns_rebinding(server, host):
    """A page whose own domain resolves to 127.0.0.1 must not read the preview."""
    status, _, body = _get(server, "/", host=host)
    assert status == 403 and b"--allow-host" in body and b"<h1>" not in body
    assert _get(server, serve.STATUS_PATH, host=host)[0] == 403


def test_a_shared_preview_answers_to_addresses_and_allowed_names(project):
    srv = serve.make_server(project / "site", host="0.0.0.0", port=0, allowed_hosts=("Atlas.lan",))
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        for host in ["192.168.1.5:8000", "[fe80::1]:8000", "atlas.lan:8000", "localhost"]:
            assert _get(srv, "/", host=host)[0] == 200, host
        assert _get(srv, "/", host="evil.example:8000")[0] == 403
    finally:
        srv.shutdown()
        srv.server_close()


def test_idle_and_half_open_connections_are_closed(server):
    import socket
    import time

    server.idle_timeout_s = 0.3
    for opening in [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"]:  # nothing; headers never ended
        with socket.create_connection(server.server_address[:2], timeout=5) as sock:
            sock.sendall(opening)
            start = time.monotonic()
            assert sock.recv(100) == b""  # closed by the server, long before our own 5 s
            assert time.monotonic() - start < 3
    assert _get(server, "/")[0] == 200  # and the server still answers


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_port_out_of_range_is_one_line(project, monkeypatch, port):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["serve", "--no-build", "--port", port])
    assert result.exit_code == 1
    assert result.output.strip() == "error: port must be 0 to 65535"


def test_the_terminal_shows_an_error_quoting_brackets_as_written(project, monkeypatch):
    """Rich markup in a message ([b], [/x]) is the user's text, shown as it is, not a style or a crash."""
    import io

    from rich.console import Console

    from generator.progress import RichReporter

    monkeypatch.chdir(project)
    reporter = RichReporter()
    reporter.console = Console(file=io.StringIO(), width=300)
    config = project / "atlas.toml"
    watcher = serve.Watcher(load_config(config), config, {}, reporter)
    (project / "content" / "index.md").write_text('{{< atlas caption="[b]bold[/b] [/x]"\n')
    assert watcher.poll() == "pages"
    assert "[b]bold[/b] [/x]" in reporter.console.file.getvalue()
