"""Pack what a lent GPU machine needs into .gpu/ (at most 64 MiB travels a call), then run
scripts/gpu/run.sh there. Nothing there reaches a registry, so everything comes from here:

- Node (this machine's Debian binary) and Dawn for Node (npm `webgpu`'s dawn.node), xz'd;
- the Vulkan loader debs the device README names (NVIDIA's driver is there, its loader not);
- wheels the GPU image lacks (diffusers; torch, transformers, numpy, scikit-image are there);
- the tvmjs runtime bundle, and each build without its weights (the wasm xz'd): weights do
  not travel, they are made there from the build's seed (wsd/refill.py).

    python scripts/gpu/pack.py [--build sd15] [--build sd15-tiny]   # builds (cached) and packs
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import subprocess  # nosec B404
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LIMIT = 64 << 20
DEBS = ("libvulkan1", "libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2")
# the rest is in the GPU image; versions from the lock (peft and its two: the LoRA case's reference)
WHEELS = ("diffusers", "importlib-metadata", "zipp", "peft", "accelerate", "psutil")
LOCK = ROOT / "constraints" / "locks" / "py313-torch27.txt"
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:", "--no-deps"]


def xz(src: Path, dest: Path) -> None:
    with open(src, "rb") as f, lzma.open(dest, "wb", preset=3) as out:
        shutil.copyfileobj(f, out, 1 << 20)


def pack_build(model: str, dtype: str, out: Path) -> None:
    from wsd.build import BuildOptions, build

    opts = BuildOptions(model, random_init=True, target="webgpu", dtype=dtype)
    built = build(opts, ROOT / "dist" / "gpu", echo=print).out
    pack_dist(built, out / "dists" / (built.name if dtype == "float32" else f"{built.name}-{dtype}"))


def pack_dist(built: Path, dest: Path) -> None:
    """A built dist without its shards (made there from the seed), its large files xz'd."""
    dest.mkdir(parents=True)
    for path in built.rglob("*"):
        rel = path.relative_to(built)
        if path.is_dir() or path.suffix == ".bin":
            continue  # shards are made there from the seed
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if path.stat().st_size > 256 << 10:  # the wasm, the WGSL table: xz'd, restored there
            xz(path, dest / f"{rel}.xz")
        else:
            shutil.copy2(path, dest / rel)


def locked_requirements(lock: Path, names: tuple[str, ...]) -> str:
    """The lock's entries (name==version and its --hash lines) for these packages."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in lock.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            current = line.split("==")[0].lower()
            blocks[current] = [line]
        elif current and line.strip().startswith("--hash"):
            blocks[current].append(line)
    missing = [n for n in names if n not in blocks]
    if missing:
        raise SystemExit(f"{lock.name} has no {missing}: refresh it with python scripts/lock.py")
    return "\n".join("\n".join(blocks[n]) for n in names) + "\n"


def pip_python() -> str:
    """A Python that has pip (uv's environments have none) to download the wheels with."""
    seen = [sys.executable, shutil.which("python3"), "/usr/bin/python3", shutil.which("python3.13")]
    for exe in dict.fromkeys(p for p in seen if p):
        if subprocess.run([exe, "-m", "pip", "--version"], capture_output=True).returncode == 0:  # nosec B603
            return exe
    raise SystemExit("no Python with pip found to download the GPU machine's wheels")


def main(argv=None) -> int:
    from wsd import toolchain
    from wsd.webrt import runtime_bundle
    from wsd.wgsl import dawn_modules

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", action="append", help="model[:dtype] to build and pack (default: sd15, sd15-tiny)")
    ap.add_argument("--dist", action="append", default=[], help="NAME=DIR: a prebuilt random-init webgpu dist to pack")
    ap.add_argument("--tools-only", action="store_true", help="Node, Dawn, the debs, the wheels and the kit; no builds")
    ap.add_argument("--out", type=Path, default=ROOT / ".gpu")
    args = ap.parse_args(argv)
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "debs").mkdir(parents=True)
    node = Path(toolchain.find("node")).resolve()
    xz(node, out / "node.xz")
    addon = dawn_modules() / "webgpu"
    (out / "dawn").mkdir()
    shutil.copy2(addon / "package.json", out / "dawn" / "package.json")
    xz(addon / "dist" / "linux-x64" / "dawn.node", out / "dawn" / "dawn.node.xz")
    lists = Path(tempfile.mkdtemp(prefix="wsd-apt-"))
    (lists / "partial").mkdir()
    apt = ["apt-get", "-oAPT::Architecture=amd64", f"-oDir::State::Lists={lists}"]
    subprocess.run([*apt, "update", "-qq"], check=True, capture_output=True)  # nosec B603
    subprocess.run([*apt, "download", *DEBS], check=True, cwd=out / "debs", capture_output=True)  # nosec B603
    # the baseline lock's versions and sha256s: pip refuses a wheel whose hash is not the lock's
    wanted = lists / "wheels.txt"
    wanted.write_text(locked_requirements(LOCK, WHEELS))
    pip = [pip_python(), "-m", "pip", "download", "-q", *PLATFORM, "--require-hashes", "-d", str(out / "wheels")]
    subprocess.run([*pip, "-r", str(wanted)], check=True)  # nosec B603
    shutil.copy2(runtime_bundle(), out / "tvmjs.bundle.js")
    for item in args.dist:
        name, _, folder = item.partition("=")
        pack_dist(Path(folder), out / "dists" / name)
    defaults = [] if args.dist or args.tools_only else ["sd15", "sd15-tiny"]
    for item in args.build if args.build is not None else defaults:
        model, _, dtype = item.partition(":")
        pack_build(model, dtype or "float32", out)
    tree = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {tree / 2**20:.1f} MiB (a call carries at most {LIMIT >> 20} MiB with the checkout)")
    if tree > LIMIT - (4 << 20):
        print("too large for one call: pack fewer builds")
        return 1
    print('on the GPU machine: run(command="bash scripts/gpu/run.sh bench gate", carry=[".gpu"])')
    return 0


if __name__ == "__main__":
    sys.exit(main())
