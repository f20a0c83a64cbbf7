"""Every WGSL shader a build emits, checked by a real WGSL front end (Dawn's Tint).

TVM's WebGPU codegen emits code Dawn refuses (`array<i8>`, `inff`, a bare -2147483648)
and the build still succeeds; the page would fail at pipeline creation. So the shaders
are pulled out of the built module and handed to Dawn through Node and the npm `webgpu`
package before anything is linked. A shader that fails names its kernel and fails the build.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess  # nosec B404
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wsd import cache, toolchain
from wsd.errors import BuildError, ToolchainError
from wsd.proc import run

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
    """node_modules holding Dawn for Node, installed once into the user cache."""
    npm = toolchain.find("npm")
    node_version = subprocess.run([toolchain.find("node"), "--version"], capture_output=True, text=True,  # nosec B603
                                  check=False).stdout.strip()

    def build(out: Path) -> list[str]:
        echo(f"installing {DAWN_PACKAGE} (Dawn for Node) into the cache")
        run([npm, "install", "--no-audit", "--no-fund", "--prefix", out, DAWN_PACKAGE], what="npm install webgpu")
        addon = Path("node_modules/webgpu/dist/linux-x64/dawn.node")
        return [str(addon), "node_modules/webgpu/package.json"]

    entry = cache.get_or_build("dawn", {"package": DAWN_PACKAGE, "node": node_version}, build, echo=echo)
    return entry / "node_modules"


def vulkan_env() -> dict[str, str]:
    """Environment for Dawn: the system Vulkan loader if present, else the one Chromium ships;
    SwiftShader's ICD unless an NVIDIA GPU is there."""
    env = dict(os.environ)
    chromium_dir = Path("/usr/lib/chromium")
    has_loader = any(Path(p, "libvulkan.so.1").exists() for p in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"))
    if not has_loader and (chromium_dir / "libvulkan.so.1").exists():
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


# Dawn for Node stalls after ~100 shader modules in one process on SwiftShader (seen on the
# full SD 1.5 build: no CPU use, no reply); a fresh process per batch never does.
BATCH = 48
TIMEOUT_S = 300


def validate(shaders: dict[str, str], pipelines: bool = False, echo=print, on_batch=None) -> Validation:
    if not shaders:
        return Validation({}, 0, {}, 0)
    env = vulkan_env()
    env["WSD_DAWN_MODULES"] = str(dawn_modules(echo))
    names = list(shaders)
    adapter, ms, failures = {}, 0, {}
    for start in range(0, len(names), BATCH):
        batch = {n: shaders[n] for n in names[start:start + BATCH]}
        report = _validate_batch(batch, pipelines, env)
        adapter, ms = report["adapter"], ms + report["ms"]
        failures.update({r["name"]: r["messages"] for r in report["results"] if not r["ok"]})
        if on_batch:
            on_batch(len(batch))
    return Validation(adapter, ms, failures, len(names))


def _validate_batch(shaders: dict[str, str], pipelines: bool, env: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="wsd-wgsl-") as tmp:
        path = Path(tmp) / "shaders.json"
        path.write_text(json.dumps(shaders))
        argv = [toolchain.find("node"), str(SCRIPT), str(path)] + (["pipelines"] if pipelines else [])
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,  # nosec B603
                                  timeout=TIMEOUT_S)
            code, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            code, err = "timeout", f"no answer in {TIMEOUT_S} s"
        if code != 0:
            kept = cache.cache_root() / "failed-wgsl" / f"shaders-{os.getpid()}.json"
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, kept)
            raise ToolchainError(f"WGSL validation could not run (Dawn for Node, exit {code}); shaders "
                                 f"kept in {kept}: {err.strip()[-800:]}")
    return json.loads(proc.stdout)


def storage_buffer_overflows(shaders: dict[str, str], limit: int) -> dict[str, list[str]]:
    """Kernels binding more storage buffers than the runtime asks the device for."""
    out = {}
    for name, code in shaders.items():
        count = code.count("var<storage")
        if count > limit:
            out[name] = [f"{count} storage buffers; the runtime requests maxStorageBuffersPerShaderStage={limit}"]
    return out


def require_valid(shaders: dict[str, str], pipelines: bool = False, echo=print, on_batch=None) -> Validation:
    from wsd.passes import MAX_STORAGE_BUFFERS

    result = validate(shaders, pipelines, echo, on_batch)
    result.failures.update(storage_buffer_overflows(shaders, MAX_STORAGE_BUFFERS))
    if result.failures:
        lines = [f"  {name}: {msgs[0] if msgs else '?'}" for name, msgs in sorted(result.failures.items())[:10]]
        raise BuildError(f"{len(result.failures)} of {result.count} WGSL shaders fail Dawn's validation:\n"
                         + "\n".join(lines))
    return result


