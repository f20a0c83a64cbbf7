"""Every command answers a bad value in one line, exit 2, in under a second (issue 38), before any
browser, build or server starts. Before: `wsd generate --guidance -1` waited until killed (the form's
own min/max blocked the submit silently), `--scheduler foo` printed a Playwright call log after 61 s,
`wsd serve --port 80000` a traceback.

The values are generated (hypothesis): numbers out of range, unknown names, odd strings, paths that
cannot be written. Each command runs in this process (argparse's exit included), so the time
bound is the command's own: a browser launch alone takes longer than the bound.
"""

from __future__ import annotations

import io
import math
import time
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance import cli as conformance_cli
from wsd import cli as wsd_cli

pytestmark = pytest.mark.e2e  # one webgpu build of sd15-tiny (the cache's, shared with the app tests)

BOUND_S = 1.0
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    from wsd.build import BuildOptions, build

    out = tmp_path_factory.mktemp("dist")
    result = build(BuildOptions("sd15-tiny", random_init=True), out, echo=lambda *_: None, progress=False)
    return out, result.manifest


def call(main, argv: list[str]) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own exit
            code = exc.code
    return code, err.getvalue(), time.perf_counter() - t0


def refused(main, argv: list[str], flag: str) -> str:
    code, err, seconds = call(main, argv)
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert len(lines) == 1, (argv, err)
    assert flag in lines[0], (argv, lines[0])
    assert seconds < BOUND_S, (argv, seconds)
    return lines[0]


def names(known) -> st.SearchStrategy[str]:
    """Odd strings that are no known name (passed as --flag=VALUE, so a leading "-" is a value too)."""
    text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=24)
    return text.filter(lambda s: s not in known)


def generate(dist, *extra: str) -> list[str]:
    out, _ = dist
    return ["generate", "--dist", str(out), "--model", "sd15-tiny", "--prompt", "a cat", *extra]


@PROPERTY
@given(st.floats(allow_nan=True, allow_infinity=True).filter(lambda g: not 0 <= g <= 50))
def test_generate_refuses_guidance_out_of_range(dist, guidance):
    line = refused(wsd_cli.main, generate(dist, f"--guidance={guidance!r}"), "--guidance")
    assert "0 to 50" in line


@PROPERTY
@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
def test_generate_refuses_a_seed_out_of_range(dist, seed):
    line = refused(wsd_cli.main, generate(dist, f"--seed={seed}"), "--seed")
    assert "4294967295" in line


@PROPERTY
@given(st.data())
def test_generate_refuses_steps_the_sampler_has_no_table_for(dist, data):
    _, manifest = dist
    sampler = data.draw(st.sampled_from(manifest["schedulers"]))
    choices = manifest["scheduler_steps"][sampler]
    steps = data.draw(st.integers(-1000, 1000).filter(lambda n: n not in choices))
    line = refused(wsd_cli.main, generate(dist, "--scheduler", sampler, f"--steps={steps}"), "--steps")
    assert ", ".join(map(str, choices)) in line


@PROPERTY
@given(st.data())
def test_generate_refuses_an_unknown_sampler(dist, data):
    _, manifest = dist
    name = data.draw(names(manifest["schedulers"]))
    line = refused(wsd_cli.main, generate(dist, f"--scheduler={name}"), "--scheduler")
    assert all(s in line for s in manifest["schedulers"])


@PROPERTY
@given(st.sampled_from(["--steps", "--seed", "--guidance", "--timeout"]), st.text(min_size=1, max_size=12))
def test_generate_refuses_text_where_a_number_goes(dist, flag, text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None and (flag == "--guidance" or (flag == "--timeout" and math.isfinite(value) and value > 0)):
        return  # a number after all
    if flag in ("--steps", "--seed") and text.strip().lstrip("+-").isdigit():
        return  # a whole number (the ranges have their own tests)
    refused(wsd_cli.main, generate(dist, f"{flag}={text}"), flag)


@pytest.mark.parametrize("where", ["/proc/{}.png", "/etc/passwd/{}.png", "{tmp}"])
@PROPERTY
@given(name=st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=12))
def test_generate_refuses_an_output_it_cannot_write(dist, tmp_path, where, name):
    path = where.format(name, tmp=tmp_path)
    refused(wsd_cli.main, generate(dist, "--out", path), "--out")


@PROPERTY
@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=65536), st.text(min_size=1, max_size=8)))
def test_serve_refuses_a_port_that_is_none(dist, port):
    if isinstance(port, str) and port.strip().isdigit() and 0 <= int(port) <= 65535:
        return
    out, _ = dist
    refused(wsd_cli.main, ["serve", str(out), f"--port={port}"], "--port")


@PROPERTY
@given(st.data())
def test_conformance_refuses_unknown_models_and_faults(data):
    from conformance.faults import FAULTS
    from wsd import models

    model = data.draw(names(models.MODELS))
    refused(conformance_cli.main, ["run", f"--model={model}"], "--model")
    refused(conformance_cli.main, ["golden", "--update", f"--model={model}"], "--model")
    fault = data.draw(names({f.name for f in FAULTS}).filter(lambda s: "," not in s))
    refused(conformance_cli.main, ["selftest", f"--faults={fault}"], "--faults")


@PROPERTY
@given(st.integers(max_value=0), st.sampled_from(["run", "check"]))
def test_conformance_refuses_an_image_size_that_is_none(size, command):
    refused(conformance_cli.main, [command, f"--image-size={size}"], "--image-size")


@PROPERTY
@given(name=st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=12))
def test_conformance_refuses_files_that_are_not_there(tmp_path, name):
    missing = str(tmp_path / f"{name}.json")
    refused(conformance_cli.main, ["diff", missing, missing], "diff")
    refused(conformance_cli.main, ["repro", missing, "--dist", str(tmp_path)], "repro")
    refused(conformance_cli.main, ["run", "--weights", missing], "--weights")
    refused(conformance_cli.main, ["selftest", "--faults", "cfg-swapped", "--out", f"/proc/{name}.json"], "--out")


@pytest.mark.parametrize("main", [wsd_cli.main, conformance_cli.main], ids=["wsd", "wsd-conformance"])
def test_version_names_the_stack_in_one_line(main):
    out, code = io.StringIO(), None
    with redirect_stdout(out):
        try:
            main(["--version"])
        except SystemExit as exc:
            code = exc.code
    line = out.getvalue().strip()
    assert code == 0 and len(line.splitlines()) == 1
    for part in ("tvm", "torch", "diffusers", "web runtime key"):
        assert part in line, line


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    from PIL import Image

    from conformance.stages import init_image

    folder = tmp_path_factory.mktemp("pictures")
    Image.fromarray(init_image(64, 0)).save(folder / "right.png")
    Image.fromarray(init_image(48, 0)).save(folder / "small.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return folder


def test_generate_refuses_an_init_image_of_another_size(dist, pictures):
    line = refused(wsd_cli.main, generate(dist, "--init-image", str(pictures / "small.png")), "--init-image")
    assert "48x48" in line and "64x64" in line


def test_generate_refuses_an_unreadable_init_image(dist, pictures):
    line = refused(wsd_cli.main, generate(dist, "--init-image", str(pictures / "broken.png")), "--init-image")
    assert "not a readable image" in line


@pytest.mark.parametrize("strength", ["0", "1.5", "-0.2", "nan"])
def test_generate_refuses_a_strength_out_of_range(dist, pictures, strength):
    argv = generate(dist, "--init-image", str(pictures / "right.png"), f"--strength={strength}", "--steps", "4")
    refused(wsd_cli.main, argv, "--strength")


def test_generate_refuses_a_strength_that_leaves_no_step(dist, pictures):
    argv = generate(dist, "--init-image", str(pictures / "right.png"), "--strength", "0.2", "--steps", "4")
    assert "leaves no denoising step" in refused(wsd_cli.main, argv, "--strength")


def test_generate_refuses_strength_without_an_image(dist):
    refused(wsd_cli.main, generate(dist, "--strength", "0.5"), "--strength")


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    """A LoRA of sdxl-tiny (its layers are not sd15-tiny's) and a file that is not one."""
    from conformance.reference.lora import make_lora
    from wsd import models
    from wsd.build import random_folder

    folder = tmp_path_factory.mktemp("loras")
    sdxl = random_folder(models.get("sdxl-tiny"), 0, echo=lambda *_: None)
    (folder / "text.safetensors").write_text("not a LoRA")
    return {"sdxl": make_lora(sdxl, folder / "sdxl", seed=0), "text": folder / "text.safetensors"}


@pytest.mark.parametrize(
    ("which", "scale", "says"),
    [
        ("sdxl", "", "names no layer this model lets a LoRA change"),
        ("text", ":0.5", "not a safetensors LoRA file"),
        ("missing", "", "no such file"),
        ("sdxl", ":3", "between 0 and 2"),
        ("sdxl", ":nan", "between 0 and 2"),
    ],
)
def test_generate_refuses_a_lora_that_does_not_fit_before_any_browser(dist, loras, which, scale, says):
    path = loras.get(which, loras["text"].parent / "missing.safetensors")
    assert says in refused(wsd_cli.main, generate(dist, "--lora", f"{path}{scale}"), "--lora")
