"""The install, proven as a user makes it: the wheel built with uv, installed into a fresh env
from the baseline lock (hash-checked), then, from an empty folder outside the checkout, the
README's main job, a WebGPU gate subset, and `wsd serve` answering with the app.

    python scripts/install_check.py [--keep]      # the `install` tier of the test command
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess  # nosec B404: uv and the installed commands, never a shell
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints" / "locks" / "py313-torch27.txt"
sys.path.insert(0, str(ROOT))
from wsd.paths import uv_path  # noqa: E402

GATE_SUBSET = ["--backend", "webgpu", "-k", "tokenizer or clip"]


def uv() -> str:
    return uv_path() or sys.exit("install_check: uv not found (scripts/tox installs it)")


def step(what: str, argv: list[str], cwd: Path, env: dict | None = None) -> float:
    print(f"install: {what}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, env=env)  # nosec B603
    took = time.perf_counter() - t0
    print(f"install: {what}: {took:.1f} s", flush=True)
    return took


# The app rendered in headless Chromium by the installed package: its form lists the built model.
RENDER = """
import sys
from playwright.sync_api import sync_playwright
from wsd.host.browser import launch_options
with sync_playwright() as p:
    browser = p.chromium.launch(**launch_options())
    page, errors = browser.new_page(), []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(sys.argv[1])
    page.wait_for_selector("#model option[value='sd15-tiny']", state="attached", timeout=60000)
    browser.close()
    sys.exit("page errors: " + "; ".join(errors) if errors else 0)
"""


def serve_answers(wsd: Path, dist: Path, cwd: Path, env: dict) -> None:
    """`wsd serve` in the background; its page and modules come back, and the app renders."""
    port = "8765"
    server = subprocess.Popen([str(wsd), "serve", str(dist), "--port", port], cwd=cwd, env=env)  # nosec B603
    try:
        for path in ("/", "/app.js", "/lib/session.js", "/lib/pipeline.js"):
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # nosec B310
                        body = r.read()
                    break
                except OSError:
                    time.sleep(0.2)
            else:
                raise SystemExit(f"install: wsd serve did not answer {path}")
            if path == "/" and b"<script" not in body:
                raise SystemExit("install: wsd serve's / is not the app")
        python = wsd.parent / "python"
        subprocess.run([str(python), "-c", RENDER, f"http://127.0.0.1:{port}/"], cwd=cwd, env=env, check=True)  # nosec
        print(
            "install: wsd serve answers /, /app.js and the page's modules; the app renders the model list", flush=True
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="wsd-install-"))
    try:
        step("uv build --wheel", [uv(), "build", "--wheel", "-q", "-o", str(tmp / "wheel")], ROOT)
        (wheel,) = (tmp / "wheel").glob("wsd-*.whl")
        env = tmp / "env"
        step("a fresh env", [uv(), "venv", "-q", "-p", sys.executable, str(env)], tmp)
        install = [uv(), "pip", "install", "-q", "--python", str(env / "bin" / "python"), "-c", str(LOCK)]
        step(f"install {wheel.name}[conformance] from the lock", [*install, f"{wheel}[conformance]"], tmp)
        work = tmp / "work"  # no checkout above it: only the installed package can answer
        work.mkdir()
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        python = env / "bin" / "python"
        where = subprocess.run(  # nosec B603
            [str(python), "-c", "import wsd, wsd.paths as p; print(wsd.__file__, p.web_dir())"],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
            env=clean,
        ).stdout.strip()
        print(f"install: wsd imported from {where}")
        if str(ROOT) in where:
            raise SystemExit("install: the installed wsd resolved to the checkout")
        step(
            "wsd build (the README's main job)",
            [str(env / "bin" / "wsd"), "build", "--model", "sd15-tiny", "--random-init", "--out", "dist", "--quiet"],
            work,
            clean,
        )
        gate = [str(env / "bin" / "wsd-conformance"), "run", "--model", "sd15-tiny", "--", *GATE_SUBSET, "-q"]
        step("wsd-conformance run (tokenizer and clip on WebGPU)", gate, work, clean)
        if not (work / "reports" / "conformance" / "summary.json").is_file():
            raise SystemExit("install: the gate wrote no reports/conformance/summary.json in the working folder")
        # another project's pytest: the plugin comes from the pytest11 entry point (no -p)
        plugin = [str(env / "bin" / "pytest"), "--pyargs", "conformance.gate", "-m", "conformance", "-q"]
        plugin += ["--model", "sd15-tiny", "--backend", "native", "-k", "tokenizer", "-p", "no:cacheprovider"]
        step("pytest --pyargs conformance.gate (the plugin by its entry point)", plugin, work, clean)
        serve_answers(env / "bin" / "wsd", work / "dist", work, clean)
        return 0
    finally:
        if args.keep:
            print(f"install: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
