"""`wsd generate` with every sampler against diffusers' documented recipe, as PSNR (issue 33).

    python benchmarks/bench_sampler_parity.py                    # sd15-tiny, sdxl-tiny, a non-preset folder
    python benchmarks/bench_sampler_parity.py --weights DIR ...  # any diffusers folder

For each folder: `wsd build` (webgpu, cached), then one `wsd generate --scheduler S --seed 5
--steps 4` per sampler (the user's own path: the page draws its noise from the seed), against
`DiffusionPipeline.from_pretrained(folder)` with `Sampler.from_config(pipe.scheduler.config)`
and the same noise (conformance.reference: no `wsd` code). Target: >= 40 dB for every sampler.
Prints a table and writes benchmarks/results/sampler-parity-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
SETTINGS = {"prompt": "a lighthouse at dusk", "negative": "", "seed": 5, "steps": 4, "guidance": 7.5}


def wsd(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "wsd", *args], capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"wsd {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc


def parity(label: str, folder: Path, work: Path) -> list[dict]:
    import diffusers_ref
    from PIL import Image

    from conformance.metrics import compare

    dist = work / "dist"
    wsd("build", "--weights", str(folder), "--out", str(dist), "--quiet")
    (name,) = [p.name for p in dist.iterdir() if (p / "manifest.json").is_file()]
    manifest = json.loads((dist / name / "manifest.json").read_text())
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    rows = []
    for sampler in sorted(manifest["schedulers"]):
        png = work / f"{name}-{sampler}.png"
        t0 = time.perf_counter()
        wsd("generate", "--model", name, "--dist", str(dist), "--scheduler", sampler, "--seed", str(SETTINGS["seed"]),
            "--steps", str(SETTINGS["steps"]), "--prompt", SETTINGS["prompt"], "--guidance", str(SETTINGS["guidance"]),
            "--out", str(png))  # fmt: skip
        seconds = time.perf_counter() - t0
        got = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
        want = diffusers_ref.image(folder, manifest, {**SETTINGS, "scheduler": sampler})
        psnr = compare(want, got)["psnr"]
        rows.append(
            {
                "folder": label,
                "scheduler_config": {k: config.get(k) for k in ("_class_name", "timestep_spacing", "steps_offset")},
                "sampler": sampler,
                "psnr_db": round(float(psnr), 2),
                "generate_s": round(seconds, 1),
            }
        )
        print(f"{label:28s} {sampler:14s} {psnr:7.2f} dB   (wsd generate {seconds:.0f} s)", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", action="append", help="a diffusers folder (repeatable)")
    args = parser.parse_args()
    import diffusers
    import folders as test_folders  # tests/folders.py: an SD 1.5-family folder that is no preset
    import transformers

    from wsd import models
    from wsd.build import random_folder

    diffusers.utils.logging.set_verbosity_error()  # the reference's loading chatter, not figures
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = {Path(w).name: Path(w) for w in args.weights or []} or {
            **{m: random_folder(models.get(m), 0, echo=lambda *_: None) for m in ("sd15-tiny", "sdxl-tiny")},
            "reshaped (tests/folders.py)": test_folders.make("reshaped", Path(tmp) / "made"),
        }
        for k, (label, folder) in enumerate(folders.items()):
            rows += parity(label, folder, Path(tmp) / str(k))
    worst = min(r["psnr_db"] for r in rows)
    print(f"worst: {worst:.2f} dB (target >= 40 dB)")
    out = ROOT / "benchmarks" / "results" / f"sampler-parity-{datetime.date.today()}.json"
    out.write_text(json.dumps({"settings": SETTINGS, "rows": rows, "worst_psnr_db": worst}, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if worst >= 40 else 1


if __name__ == "__main__":
    raise SystemExit(main())
