"""Every WGSL shader a build emits, checked by a real WGSL front end (Dawn's Tint).

Shaders that need a feature the adapter here lacks (fp16 on SwiftShader, subgroup matrices) are
checked on Dawn's null adapter instead: Tint's whole front end, no GPU compiler behind it.

TVM's WebGPU codegen emits code Dawn refuses (`array<i8>`, `inff`, a bare -2147483648)
and the build still succeeds; the page would fail at pipeline creation. So the shaders
are pulled out of the built module and handed to Dawn through Node and the npm `webgpu`
package before anything is linked. A shader that fails names its kernel and fails the build.
"""

from __future__ import annotations

import json
import os
import re
import subprocess  # nosec B404
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from wsd import cache, toolchain
from wsd.errors import BuildError, ToolchainError
from wsd.proc import run, version_of

DAWN_PACKAGE = "webgpu@0.6.2"
SCRIPT = Path(__file__).with_name("js") / "validate_wgsl.js"
_HEADER = re.compile(r"^// Function: (\S+)\n//-+\n", re.M)


def shaders_of(runtime_module) -> dict[str, str]:
    """Kernel name -> WGSL source, from a built executable's webgpu module."""
    stack, found = [runtime_module], None
    while stack and found is None:
        mod = stack.pop()
        if mod.kind == "webgpu":
            found = mod
        stack.extend(mod.imports)
    if found is None:
        return {}
    parts = _HEADER.split(found.inspect_source())
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2) if parts[i + 1].strip()}


def dawn_modules(echo=print) -> Path:
    """node_modules holding Dawn for Node, installed once into the user cache (`WSD_DAWN_MODULES`
    names a carried copy on a machine without npm's registry)."""
    if os.environ.get("WSD_DAWN_MODULES"):
        return Path(os.environ["WSD_DAWN_MODULES"])
    npm = toolchain.find("npm")
    node_version = version_of([toolchain.find("node"), "--version"])

    def build(out: Path) -> list[str]:
        echo(f"installing {DAWN_PACKAGE} (Dawn for Node) into the cache")
        run([npm, "install", "--no-audit", "--no-fund", "--prefix", out, DAWN_PACKAGE], what="npm install webgpu")
        addon = Path("node_modules/webgpu/dist/linux-x64/dawn.node")
        return [str(addon), "node_modules/webgpu/package.json"]

    entry = cache.get_or_build("dawn", {"package": DAWN_PACKAGE, "node": node_version}, build, echo=echo)
    return entry / "node_modules"


def vulkan_env() -> dict[str, str]:
    """Environment for Dawn: the Vulkan loader Chromium ships; SwiftShader's ICD unless an
    NVIDIA GPU is there."""
    env = dict(os.environ)
    chromium_dir = Path("/usr/lib/chromium")
    # Chromium's own loader first: it is what the browser runs, and it is there without
    # installing libvulkan1.
    if (chromium_dir / "libvulkan.so.1").exists():
        env["LD_LIBRARY_PATH"] = f"{chromium_dir}:{env.get('LD_LIBRARY_PATH', '')}".rstrip(":")
    icd = chromium_dir / "vk_swiftshader_icd.json"
    if not Path("/dev/nvidia0").exists() and icd.exists() and "VK_ICD_FILENAMES" not in env:
        env["VK_ICD_FILENAMES"] = str(icd)
    return env


@dataclass
class Validation:
    adapter: dict
    ms: int
    failures: dict[str, list[str]]  # kernel -> messages
    count: int
    retries: int = 0  # batches re-run after Dawn died mid-batch
    skipped: dict[str, str] = field(default_factory=dict)  # kernel -> why it could not be validated here
    # kernels whose features the adapter lacks (fp16 on SwiftShader), checked by Tint's front end
    # on Dawn's null adapter: parsed, resolved and validated, not compiled for a GPU
    front_end_only: set[str] = field(default_factory=set)


# Shaders go to Dawn in batches, each in a fresh process; a batch whose process dies is
# split in two and retried, down to one shader, and only a shader that kills Dawn on its
# own is reported as failing. (The crashes and stalls first seen here were our script
# letting the GPU instance be garbage-collected under a live device, now fixed; the
# split stays so that a Dawn crash on one shader names that shader.)
BATCH = 128
TIMEOUT_S = 20  # a batch answers in well under a second; a stalled one is split


class _DawnDiedError(Exception):
    pass


def validate(shaders: dict[str, str], pipelines: bool = False, echo=print, on_batch=None) -> Validation:
    if not shaders:
        return Validation({}, 0, {}, 0)
    env = vulkan_env()
    env["WSD_DAWN_MODULES"] = str(dawn_modules(echo))
    names = list(shaders)
    result = Validation({}, 0, {}, len(names))
    for start in range(0, len(names), BATCH):
        _validate_split(names[start : start + BATCH], shaders, pipelines, env, result)
        if on_batch:
            on_batch(len(names[start : start + BATCH]))
    return result


def _validate_split(names, shaders, pipelines, env, result: Validation) -> None:
    try:
        report = _validate_batch({n: shaders[n] for n in names}, pipelines, env)
    except _DawnDiedError as died:
        if len(names) == 1:
            result.failures[names[0]] = [f"Dawn's validator died on this shader alone: {died}"]
            return
        result.retries += 1
        half = len(names) // 2
        _validate_split(names[:half], shaders, pipelines, env, result)
        _validate_split(names[half:], shaders, pipelines, env, result)
        return
    result.adapter, result.ms = report["adapter"], result.ms + report["ms"]
    result.failures.update({r["name"]: r["messages"] for r in report["results"] if not r["ok"]})
    result.skipped.update({r["name"]: r["skipped"] for r in report["results"] if r.get("skipped")})
    result.front_end_only.update(r["name"] for r in report["results"] if r.get("front_end_only"))


def _validate_batch(shaders: dict[str, str], pipelines: bool, env: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="wsd-wgsl-") as tmp:
        path = Path(tmp) / "shaders.json"
        path.write_text(json.dumps(shaders))
        argv = [toolchain.find("node"), str(SCRIPT), str(path)] + (["pipelines"] if pipelines else [])
        try:
            proc = subprocess.run(  # nosec B603 (an argv list, never a shell)
                argv, capture_output=True, text=True, env=env, check=False, timeout=TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise _DawnDiedError(f"no answer in {TIMEOUT_S} s") from None
    if proc.returncode == 3:  # the script's own error: no adapter, bad input
        raise ToolchainError(f"WGSL validation could not run (Dawn for Node): {proc.stderr.strip()[-800:]}")
    if proc.returncode != 0:
        raise _DawnDiedError(f"exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
    # Dawn writes compilation warnings (deprecated builtins) to stdout before the report
    return json.loads(proc.stdout[proc.stdout.rfind('{"adapter":') :])


def storage_buffer_overflows(shaders: dict[str, str], limit: int) -> dict[str, list[str]]:
    """Kernels binding more storage buffers than the runtime asks the device for."""
    out = {}
    for name, code in shaders.items():
        count = code.count("var<storage")
        if count > limit:
            out[name] = [f"{count} storage buffers; the runtime requests maxStorageBuffersPerShaderStage={limit}"]
    return out


def require_valid(shaders: dict[str, str], pipelines: bool = False, echo=print, on_batch=None) -> Validation:
    from wsd.passes.ir import MAX_STORAGE_BUFFERS

    result = validate(shaders, pipelines, echo, on_batch)
    result.failures.update(storage_buffer_overflows(shaders, MAX_STORAGE_BUFFERS))
    if result.failures:
        lines = [f"  {name}: {msgs[0] if msgs else '?'}" for name, msgs in sorted(result.failures.items())[:10]]
        raise BuildError(
            f"{len(result.failures)} of {result.count} WGSL shaders fail Dawn's validation:\n" + "\n".join(lines)
        )
    return result
