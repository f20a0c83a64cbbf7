"""Each stage case on each backend; the harness (conformance.plugin) does the work."""

import pytest

from conformance.options import allowed_skip

pytestmark = pytest.mark.conformance


def test_stage(conformance_case, harnesses, request, record_property):
    case, backend = conformance_case
    harness = harnesses.get(case.model)
    row = harness.run(case, backend)
    # pytest's JUnit file is the one JUnit report: each case carries its metrics and bounds.
    for output, data in row["outputs"].items():
        for metric, value in (data.get("metrics") or {}).items():
            if value is not None:
                record_property(f"{output}.{metric}", value)
    record_property("adapter", f"{harness.adapter.get('vendor', '')}/{harness.adapter.get('architecture', '')}")
    if row["status"] == "skip":
        # A skip is not green: only a stage the run names as expected may skip.
        if allowed_skip(request.config, row["stage"]):
            pytest.skip(row["message"])
        pytest.fail(f"{case.id} on {backend} skipped ({row['message']}); pass --allow-skip {row['stage']} if expected")
    where = f" [kernel {row['localized_kernel']}]" if row["localized_kernel"] else ""
    if row["status"] != "pass":  # pytest.fail, not assert: this module ships in the package (bandit B101)
        pytest.fail(f"{case.id} on {backend}: {row['status']}{where}: {row['message']}")
