"""wsd-conformance: run the harness, prove it (selftest), refresh the golden outputs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conformance import gate
from wsd import cliargs
from wsd.cliargs import UsageError
from wsd.errors import WsdError


def _check_gate_args(args) -> None:
    """The gate's own options, checked before pytest starts (its collection errors are pages long)."""
    for name in args.model or []:
        _known_model(name)
    if args.weights is not None and not Path(args.weights).is_dir():
        raise UsageError("--weights", args.weights, "no such folder (a local diffusers folder)")


def _known_model(name: str | None) -> str | None:
    from wsd import models

    if name is not None and name not in models.MODELS:
        raise UsageError("--model", name, f"unknown; known: {', '.join(sorted(models.MODELS))}")
    return name


def _run(args) -> int:
    import pytest

    _check_gate_args(args)
    extra = [a for a in args.pytest_args if a != "--"]
    for flag, value in (("--weights", args.weights), ("--image-size", args.image_size)):
        if value is not None:
            extra = [flag, str(value), *extra]
    for model in args.model or []:
        extra = ["--model", model, *extra]
    argv = [*gate.pytest_args(), "-p", "no:cacheprovider", *extra]
    return int(pytest.main(argv))


def _selftest(args) -> int:
    from conformance import selftest
    from conformance.faults import FAULTS
    from conformance.harness import reports_dir

    names = [n for n in (args.faults or "").split(",") if n]
    known = [f.name for f in FAULTS]
    for name in names:
        if name not in known:
            raise UsageError("--faults", name, f"unknown fault; known: {', '.join(known)}")
    _known_model(args.model)
    if args.out:
        cliargs.writable_file("--out", Path(args.out))
    result = selftest.run(names=names or None, expected_only=args.expected_only, model=args.model or "sd15-tiny")
    out = Path(args.out) if args.out else reports_dir() / "selftest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if result["baseline"] != "pass":
        print("selftest: the clean build does not pass; fix that first:", *result["baseline_failures"], sep="\n  ")
        return 1
    for row in result["faults"]:
        mark = "caught" if row["caught"] else "MISSED"
        kernel = f", kernel {row['localized_kernel']}" if row["localized_kernel"] else ""
        where = row["caught_by"] or f"failed {row['failed_stages']}"
        print(f"  {mark:7} {row['fault']:24} expect {row['expect']:16} by {where}{kernel}")
    print(f"selftest: caught {result['caught']}/{result['total']} faults in {result['wall_s']} s ({out})")
    return 0 if result["caught"] == result["total"] else 1


def _golden(args) -> int:
    from conformance.golden import Golden, inputs_digest
    from conformance.harness import Harness
    from conformance.stages import all_cases
    from wsd.build import folder_fingerprint

    if not args.update:
        print("wsd-conformance golden: pass --update to regenerate golden/ from the live references")
        return 2
    model = _known_model(args.model) or "sd15-tiny"
    h = Harness(model=model, golden=Golden(model=model))  # golden/<model>/ only: other models stay as they are
    h.golden.manifest["files"] = {}
    for case in all_cases(h.model):
        ref = h.reference(case)
        h.golden.save(case.id, ref.outputs, inputs_digest(ref.inputs))
        print(f"  {case.id}")
    h.golden.write_manifest(
        {
            "model": h.model,
            "config_hash": h.spec.config_hash(),
            "weights": {"random_init_seed": 0, "fingerprint": folder_fingerprint(h.ctx.folder)},
            "seeds": "inputs are seeded by each case's name (conformance.stages.rng_for); pipeline noise by seed",
            **({"why": args.why} if args.why else {}),
        }
    )
    print(f"golden: {len(h.golden.manifest['files'])} files in {h.golden.folder}")
    return 0


def _bisect(args) -> int:
    from conformance import bisect
    from conformance.harness import reports_dir

    spec = {k: getattr(args, k) for k in bisect.PACKAGES if getattr(args, k)}
    out = Path(args.out) if args.out else reports_dir().parent / "bisect"
    gate_args = [a for a in args.pytest_args if a != "--"]
    body = bisect.run(spec, gate_args, out, resume=args.resume, perf=args.perf)
    print(f"bisect: {out / 'bisect.json'}")
    return 1 if any(s["first_bad"] and s["kind"] != "expected" for s in body["stages"]) else 0  # expected: known


def _matrix(args) -> int:
    from conformance import matrix

    argv = ["--out", args.out, *sum((["--cell", c] for c in args.cell or []), [])]
    argv += ["--merge-only"] if args.merge_only else []
    return matrix.main([*argv, *[a for a in args.pytest_args if a != "--"]])


def _diff(args) -> int:
    from conformance import diff

    a, b = (
        diff.load(cliargs.existing_file("diff", Path(args.a))),
        diff.load(cliargs.existing_file("diff", Path(args.b))),
    )
    diffs = diff.compare(a, b)
    print(diff.text(a, b, diffs))
    if args.html:
        Path(args.html).write_text(diff.html_page(a, b, diffs, (args.a, args.b)))
        print(f"html: {args.html}")
    return 1 if any(d.changed for d in diffs) else 0


def _perf_baseline(args) -> int:
    """A perf baseline (conformance/perf.py) from a --perf run's summary.json."""
    from conformance import diff, perf

    summaries = [diff.load(cliargs.existing_file("perf-baseline", Path(path))) for path in args.summary]
    try:
        baseline, out = perf.record(summaries, Path(args.out) if args.out else None)
    except perf.PerfError as exc:
        raise WsdError(str(exc)) from None
    runs = f"{baseline['runs']} runs each over {baseline['processes']} process(es)"
    print(f"{out}: {len(baseline['stages'])} stage(s) on {baseline['device']}, {runs}")
    return 0


# `git bisect run wsd-conformance check ...`: 0 good, 1 bad, 125 "cannot test this commit".
BISECT_GOOD, BISECT_BAD, BISECT_SKIP = 0, 1, 125


def _check(args) -> int:
    code = _run(args)
    if code == 0:
        return BISECT_GOOD
    if code == 1:  # pytest: some stage failed
        return BISECT_BAD
    print(f"wsd-conformance check: the gate could not run (pytest exit {code}); telling git bisect to skip")
    return BISECT_SKIP


def _repro(args) -> int:
    """Replay one saved kernel on WebGPU and compare with the native outputs it was saved with."""
    from conformance.backends import WebGPUBackend
    from conformance.localize import diverges, load_repro, replay_args
    from wsd.host.browser import Browser
    from wsd.webrt import ensure_kit

    rec = load_repro(cliargs.existing_file("repro", Path(args.file)))
    dist = Path(args.dist)
    if not (dist / "manifest.json").is_file():
        raise UsageError("--dist", dist, "not a built model folder (dist/<model> with a manifest.json)")
    with Browser(ensure_kit().bundle, dist.parent, timeout_s=600) as browser:
        backend = WebGPUBackend(browser.runner(), f"/a/{dist.name}/", dist)
        call = {"name": rec["name"], "outputs": rec["outputs"], "args": replay_args(rec["args"], rec["outputs"])}
        outs = backend.run_kernels([call])[0]
    if isinstance(outs, dict):
        print(f"{rec['name']}: could not be called alone: {outs['error']}")
        return 1
    for k, index in enumerate(rec["outputs"]):
        bad, metrics = diverges(rec["args"][index], outs[k])
        print(f"{rec['name']} output {index}: {'DIVERGES' if bad else 'agrees'} {metrics}")
    return 0


def main(argv=None) -> int:
    parser = cliargs.parser("wsd-conformance", __doc__)
    sub = cliargs.subparsers(parser)
    p = sub.add_parser("run", help="run every stage (pytest; extra arguments go to pytest, e.g. -k unet)")
    p.add_argument("--weights", help="gate a user's diffusers folder (its configs decide the model)")
    p.add_argument(
        "--image-size", type=cliargs.positive_int, help="gate at this image size (a full-size model at 64, say)"
    )
    p.add_argument("--model", action="append", help="a preset (repeatable; default sd15-tiny and sdxl-tiny)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_run)
    p = sub.add_parser("check", help="the gate with git-bisect exit codes: 0 good, 1 bad, 125 cannot test")
    p.add_argument("--weights")
    p.add_argument("--image-size", type=cliargs.positive_int)
    p.add_argument("--model", action="append")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_check)
    p = sub.add_parser("bisect", help="per stage, the last good and first bad release of one package")
    for short, package in (
        ("tvm", "apache-tvm"),
        ("torch", "torch"),
        ("diffusers", "diffusers"),
        ("transformers", "transformers"),
    ):
        p.add_argument(f"--{short}", metavar="GOOD..BAD", help=f"bisect {package} releases")
    p.add_argument("--out", help="where per-release reports and bisect.json go (default reports/bisect)")
    p.add_argument(
        "--resume", action="store_true", help="reuse a release's finished gate in --out instead of running it again"
    )
    p.add_argument(
        "--perf",
        action="store_true",
        help="the first release that made a stage slower: the good end's --perf times are the baseline (GPU backend)",
    )
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="gate options, e.g. --backend webgpu -k unet")
    p.set_defaults(func=_bisect)
    p = sub.add_parser("matrix", help="the gate in every TVM x torch x Python cell (resumable) and one report")
    p.add_argument("--cell", action="append", help="python=X,torch=Y,tvm=Z (repeatable; default every cell)")
    p.add_argument("--out", default="reports/matrix")
    p.add_argument("--merge-only", action="store_true")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_matrix)
    p = sub.add_parser("diff", help="per stage, status and metric changes between two summary.json files")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--html", help="also write an HTML page here")
    p.set_defaults(func=_diff)
    p = sub.add_parser("perf-baseline", help="record the perf gate's baseline from --perf runs' summary.json")
    p.add_argument("summary", nargs="+", help="one or more summaries (separate runs: their spread counts as noise)")
    p.add_argument("--out", help="where to write it (default conformance/perf/<adapter>.json)")
    p.set_defaults(func=_perf_baseline)
    p = sub.add_parser("selftest", help="inject faults and report the catch rate")
    p.add_argument("--faults", help="comma-separated fault names (default: all of conformance/faults.py)")
    p.add_argument("--expected-only", action="store_true", help="run only the cases of the stage each fault must fail")
    p.add_argument("--out", help="where to write selftest.json (default: reports/conformance/selftest.json)")
    p.add_argument(
        "--model", help="the seeded model to break (default sd15-tiny; sdxl-tiny adds its conditioning faults)"
    )
    p.set_defaults(func=_selftest)
    p = sub.add_parser("golden", help="regenerate golden/<model>/ (with --update)")
    p.add_argument("--update", action="store_true")
    p.add_argument("--model", help="the seeded model whose golden is regenerated (default sd15-tiny)")
    p.add_argument("--why", default="", help="why the golden moved (kept in its manifest for the next reader)")
    p.set_defaults(func=_golden)
    p = sub.add_parser("repro", help="replay a localized kernel saved under reports/conformance/repro/")
    p.add_argument("file")
    p.add_argument("--dist", required=True, help="the webgpu build folder (dist/<model>)")
    p.set_defaults(func=_repro)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # pytest's own options (-k unet, --backend webgpu) pass through run/check
        if not hasattr(args, "pytest_args"):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.pytest_args = [*unknown, *args.pytest_args]
    try:
        return args.func(args)
    except (WsdError, UsageError) as exc:
        print(f"wsd-conformance {args.command}: error: {exc}", file=sys.stderr)
        return cliargs.USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
