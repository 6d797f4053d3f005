"""Lighthouse's performance, accessibility and best-practices scores for every page of built sites.

    npm install --prefix benchmarks          # Lighthouse, once
    python benchmarks/bench_lighthouse.py default=site sample=/tmp/sample-site [--runs 3] [--write]

Each site is served over http from a loopback port (Lighthouse does not audit file:// pages) and
every HTML page of it is audited with the system Chromium, headless, under Lighthouse's default
mobile emulation and throttling. With several runs, each score is the median. `--write` puts the
table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path

from bench_build import machine, write_section

ROOT = Path(__file__).resolve().parent.parent
LIGHTHOUSE = ROOT / "benchmarks" / "node_modules" / ".bin" / "lighthouse"
CATEGORIES = ("performance", "accessibility", "best-practices")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def audit(url: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([str(LIGHTHOUSE), url, "--quiet", f"--output-path={report}", "--output=json",
                        "--only-categories=" + ",".join(CATEGORIES),
                        "--chrome-flags=--headless=new --no-sandbox --disable-gpu"],
                       check=True, env={**os.environ, "CHROME_PATH": CHROMIUM}, timeout=300)
        data = json.loads(report.read_text())
    return {k: data["categories"][k]["score"] for k in CATEGORIES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sites", nargs="+", help="NAME=FOLDER of a built site")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args()
    if not LIGHTHOUSE.exists():
        raise SystemExit("Lighthouse is missing: npm install --prefix benchmarks")
    rows = []
    for spec in args.sites:
        name, _, folder = spec.partition("=")
        folder = Path(folder).resolve()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            for page in sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.html")):
                runs = [audit(f"http://127.0.0.1:{server.server_address[1]}/{page}") for _ in range(args.runs)]
                scores = {k: statistics.median(r[k] for r in runs) for k in CATEGORIES}
                rows.append((name, page, scores))
                print(f"{name:10} {page:28} " + "  ".join(f"{k} {scores[k]:.2f}" for k in CATEGORIES), flush=True)
        finally:
            server.shutdown()
    lowest = {k: min(r[2][k] for r in rows) for k in CATEGORIES}
    table = ["| site | page | " + " | ".join(CATEGORIES) + " |", "|---|---|" + "---|" * len(CATEGORIES)]
    table += [f"| {n} | `{p}` | " + " | ".join(f"{s[k]:.2f}" for k in CATEGORIES) + " |" for n, p, s in rows]
    text = ("\n".join(table) + f"\n\nLowest: " + ", ".join(f"{k} {v:.2f}" for k, v in lowest.items()) +
            f". Lighthouse 13, mobile emulation and throttling, Chromium headless, median of {args.runs} "
            f"run{'s' if args.runs > 1 else ''} a page, {machine()}. Sites: quick preset builds. Command: "
            f"`python benchmarks/bench_lighthouse.py {' '.join(dict.fromkeys(n + '=SITE' for n, _, _ in rows))} --write`.")
    print(text)
    if args.write:
        write_section("Lighthouse", "<!-- lighthouse:start -->", "<!-- lighthouse:end -->", text)


if __name__ == "__main__":
    main()
