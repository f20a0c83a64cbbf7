"""The page's tokenizer on the real 49408-token CLIP vocabulary, not only on our toy one.

The BPE table is OpenAI CLIP's, as open-clip-torch ships it on PyPI (fetched once with
uv, no dependencies, into the user cache). vocab.json/merges.txt are laid out as SD 1.5's
and SDXL's tokenizer folders are: 256 byte symbols, the same with "</w>", one token per
merge of the first 48894, then the two special tokens. Both pad tokens are checked:
<|endoftext|> (SD 1.5, SDXL's first) and "!" (SDXL's second, a special token that splits).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conformance.stages import PROMPTS, token_ids
from wsd import toolchain
from wsd.models.tokenizer import END, EOW, START, bytes_to_unicode
from wsd.paths import cache_root, web_dir

OPEN_CLIP = "open-clip-torch==3.3.0"
BPE_FILE = "open_clip/bpe_simple_vocab_16e6.txt.gz"
MERGES = 49408 - 2 * 256 - 2  # 48894: what fills CLIP's vocabulary


def _bpe_table() -> Path:
    where = cache_root() / "clip-bpe" / OPEN_CLIP.replace("==", "-")
    if not (where / BPE_FILE).is_file():
        uv = shutil.which("uv") or str(Path.home() / ".cache" / "wsd" / "tools" / "bin" / "uv")
        staging = where.with_name(where.name + ".part")
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--no-deps", "--target", str(staging), OPEN_CLIP], check=True)
        shutil.rmtree(where, ignore_errors=True)
        staging.rename(where)
    return where / BPE_FILE


def _write_tokenizer(folder: Path, merges: list[str], pad: str) -> Path:
    folder.mkdir(parents=True)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + EOW for s in symbols] + ["".join(m.split()) for m in merges] + [START, END]
    assert len(tokens) == 49408
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    specials = {"bos_token": START, "eos_token": END, "unk_token": END, "pad_token": pad}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**specials, "model_max_length": 77, "do_lower_case": True})
    )
    return folder


@pytest.fixture(scope="module")
def real_tokenizers(tmp_path_factory):
    lines = gzip.decompress(_bpe_table().read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 1 + MERGES]  # the first line is a version header
    root = tmp_path_factory.mktemp("clip49408")
    return {pad: _write_tokenizer(root / name, merges, pad) for name, pad in (("eos", END), ("bang", "!"))}


def _prompts() -> list[str]:
    """The harness's corpus, and seeded mixes of words, digits, punctuation runs and scripts."""
    rng = np.random.default_rng(7)
    pieces = ["photo", "astronaut", "riding", "horse!", "!!", "?!", "a", "of", "ÜBER", "straße", "日本", "🐱"]
    pieces += ["x2", "it's", "3.14", "--", "<|endoftext|>", "  ", "\t", "naïve", "cyberpunk", "hyper-detailed", "8k,"]
    made = [" ".join(rng.choice(pieces, size=int(rng.integers(1, 30)))) for _ in range(120)]
    return list(PROMPTS) + made + ["!" * 90, "a" * 300, "wow!!! really?!"]


@pytest.mark.parametrize("pad", [END, "!"], ids=["pad-endoftext", "pad-bang"])
def test_js_tokenizer_matches_transformers_on_the_real_clip_vocabulary(real_tokenizers, pad):
    from transformers import CLIPTokenizer

    folder = real_tokenizers[pad]
    tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)  # nosec B615 (local folder)
    assert len(tok) == 49408 and tok.pad_token == pad
    prompts = _prompts()
    want = token_ids(tok, prompts, 77)
    proc = subprocess.run(  # nosec B603: node on our own script
        [toolchain.find("node"), str(web_dir() / "tools" / "tokenize.mjs"), str(folder)],
        input=json.dumps(prompts),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    got = np.asarray(json.loads(proc.stdout), "int32")
    bad = [p for p, w, g in zip(prompts, want, got, strict=True) if not np.array_equal(w, g)]
    assert not bad, f"{len(bad)} prompts differ, first {bad[0]!r}"
    assert (want[:, 1:] == tok.convert_tokens_to_ids(pad)).any()  # padding was exercised
