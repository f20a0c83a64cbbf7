"""The JS tests' tokenizer fixture still says what transformers says."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))


def test_tokenizer_fixture_matches_transformers():
    import js_fixtures

    stored = json.loads(js_fixtures.FIXTURE.read_text())
    assert stored == json.loads(json.dumps(js_fixtures.build(), ensure_ascii=False))
