"""Each stage case on each backend; the harness (conformance.plugin) does the work."""

import pytest

pytestmark = pytest.mark.conformance


def test_stage(conformance_case, harness):
    case, backend = conformance_case
    row = harness.run(case, backend)
    if row["status"] == "skip":
        pytest.skip(row["message"])
    where = f" [kernel {row['localized_kernel']}]" if row["localized_kernel"] else ""
    assert row["status"] == "pass", f"{case.id} on {backend}: {row['status']}{where}: {row['message']}"
