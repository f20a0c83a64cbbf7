"""golden/<model>/: stored reference outputs of the seeded models, one manifest per model.

A run compares the live reference with the golden one: when they differ beyond the stage's
drift bound (tolerances.toml [drift.*], far tighter than the candidate's), the reference
itself moved (a torch/diffusers bump, or different weights): the gate fails, naming the
versions the golden was made with and the versions now, unless the run accepts drift. For a
seeded model (SEEDED) a missing manifest, a case with no golden file, a golden made for
another config, or a file whose sha256 is not the manifest's is an error, never a skip.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from wsd import versions
from wsd.cache import file_digest
from wsd.errors import WsdError
from wsd.paths import golden_dir

MANIFEST = "manifest.json"


class GoldenError(WsdError):
    pass


SEEDED = ("sd15-tiny", "sdxl-tiny")  # models whose golden must exist: a missing one is an error


def root(model: str = "sd15-tiny") -> Path:
    return golden_dir() / model


def file_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "__", case_id) + ".npz"


def _sha256(path: Path) -> str:
    return file_digest(path).hex()


class Golden:
    def __init__(self, folder: Path | None = None, model: str = "sd15-tiny"):
        self.model = model
        self.folder = Path(folder or root(model))
        path = self.folder / MANIFEST
        self.present = path.is_file()
        self.manifest = json.loads(path.read_text()) if self.present else {"files": {}}

    def check(self, config_hash: str) -> None:
        """GoldenError when the golden cannot stand for this model: absent, or for another config."""
        where = f"golden/{self.model}/{MANIFEST}"
        if not self.present:
            raise GoldenError(f"{where} is missing: run `wsd-conformance golden --update --model {self.model}`")
        if self.manifest.get("config_hash") != config_hash:
            raise GoldenError(
                f"{where} was made for config {str(self.manifest.get('config_hash'))[:12]}…, this model is "
                f"{config_hash[:12]}…: regenerate it with `wsd-conformance golden --update --model {self.model}`"
            )

    def provenance(self) -> dict:
        return {k: v for k, v in self.manifest.items() if k != "files"}

    def load(self, case_id: str) -> dict[str, np.ndarray]:
        """The stored outputs of a case; GoldenError when absent or edited."""
        name = file_name(case_id)
        expected = self.manifest["files"].get(name)
        path = self.folder / name
        if expected is None:
            raise GoldenError(
                f"golden/{self.model} has no file for {case_id}: "
                f"run `wsd-conformance golden --update --model {self.model}`"
            )
        if not path.is_file():
            raise GoldenError(f"golden/{self.model}/{name} is listed in its manifest but missing")
        found = _sha256(path)
        if found != expected["sha256"]:
            raise GoldenError(
                f"golden/{self.model}/{name}: sha256 {found[:12]}… is not the manifest's {expected['sha256'][:12]}…: "
                "the file was edited; restore it, or regenerate with `wsd-conformance golden --update`"
            )
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def save(self, case_id: str, outputs: dict[str, np.ndarray], inputs_digest: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = file_name(case_id)
        path = self.folder / name
        np.savez_compressed(path, **outputs)
        self.manifest["files"][name] = {"case": case_id, "sha256": _sha256(path), "inputs": inputs_digest}

    def write_manifest(self, provenance: dict) -> None:
        self.manifest = {
            **provenance,
            "versions": {k: v for k, v in versions.collect().items() if k not in ("chromium", "emscripten")},
            "files": dict(sorted(self.manifest["files"].items())),
        }
        (self.folder / MANIFEST).write_text(json.dumps(self.manifest, indent=1, sort_keys=True) + "\n")


def _contents(path: Path):
    """A file as the digest sees it: a safetensors file's tensors and metadata (its byte layout
    varies between writes of the same tensors), any other file's sha256."""
    if path.suffix != ".safetensors":
        return _sha256(path)
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return {"metadata": f.metadata() or {}, "tensors": {k: f.get_tensor(k) for k in f.keys()}}  # noqa: SIM118


def inputs_digest(inputs) -> str:
    """A digest of a case's inputs, so a golden made from other inputs is not compared."""
    digest = hashlib.sha256()

    def feed(x):
        if isinstance(x, dict):
            for k in sorted(x):
                digest.update(k.encode())
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            for item in x:
                feed(item)
        elif isinstance(x, np.ndarray):
            digest.update(str(x.dtype).encode() + str(x.shape).encode() + np.ascontiguousarray(x).tobytes())
        elif isinstance(x, Path):  # a file input (a LoRA) is its content, wherever it was written
            feed(_contents(x))
        else:
            digest.update(repr(x).encode())

    feed(inputs)
    return digest.hexdigest()[:16]
