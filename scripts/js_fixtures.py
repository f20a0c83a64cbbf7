"""Write web/tests/fixtures/tokenizer.json: the tiny vocabulary and transformers' ids for the
harness's prompt corpus, so the JS tokenizer's node tests compare against the real thing.
tests/test_web/test_web_fixtures.py fails when the fixture no longer matches transformers."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "web" / "tests" / "fixtures" / "tokenizer.json"


def build() -> dict:
    from transformers import CLIPTokenizer

    from conformance.stages import PROMPTS
    from wsd import models
    from wsd.build import random_folder

    folder = random_folder(models.get("sd15-tiny"), 0, echo=lambda *_: None) / "tokenizer"
    tok = CLIPTokenizer.from_pretrained(str(folder))
    return {
        "source": "transformers CLIPTokenizer on the sd15-tiny seed-0 vocabulary; regenerate: python scripts/js_fixtures.py",  # noqa: E501 (the fixture's text)
        "vocab": json.loads((folder / "vocab.json").read_text()),
        "merges": (folder / "merges.txt").read_text(),
        "cases": [
            {"text": p, "ids": tok(p, padding="max_length", max_length=77, truncation=True).input_ids} for p in PROMPTS
        ],
    }


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    FIXTURE.write_text(json.dumps(build(), ensure_ascii=False))
    print(f"wrote {FIXTURE}")
