"""The project's own CLIP BPE tokenizer files (vocab.json, merges.txt).

No tokenizer can be downloaded here, so random-init models get one made from a small
built-in corpus. The files have exactly the layout of OpenAI CLIP's: 256 byte symbols,
the same with the end-of-word mark, one token per merge, then the two special tokens,
so transformers' `CLIPTokenizer` and the page's JS tokenizer read them as they would
read SD 1.5's.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

START, END = "<|startoftext|>", "<|endoftext|>"
EOW = "</w>"

CORPUS = """
a photograph of an astronaut riding a horse on the moon, highly detailed, 4k
a painting of a fox in the snow by a river at sunset, oil on canvas, trending
portrait of an old man with a beard, studio lighting, sharp focus, photorealistic
a castle on a hill above the sea, fantasy landscape, dramatic clouds, concept art
a cat sitting on a window sill looking at the rain, watercolor, soft colors
a futuristic city street at night with neon lights and flying cars, cyberpunk
a bowl of fruit on a wooden table, still life, natural light, high resolution
an illustration of a dragon flying over mountains, epic, cinematic lighting
a cozy cabin in the forest in winter, smoke from the chimney, warm light inside
the quick brown fox jumps over the lazy dog while the birds sing in the trees
"""


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte -> printable character map."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def _words(text: str) -> Counter:
    byte_map = bytes_to_unicode()
    counts: Counter = Counter()
    for word in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower()):
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += EOW
        counts[tuple(symbols)] += 1
    return counts


def learn_merges(text: str, count: int) -> list[tuple[str, str]]:
    """Greedy BPE: merge the most frequent adjacent pair, ties broken by the pair itself."""
    words = _words(text)
    merges: list[tuple[str, str]] = []
    while len(merges) < count:
        pairs: Counter = Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += freq
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged: Counter = Counter()
        for word, freq in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    return merges


def write_tokenizer(folder: Path, merges_count: int, max_length: int = 77, pad: str = END) -> None:
    """Write vocab.json, merges.txt and the tokenizer config into `folder`; `pad` is the padding
    token (SDXL's second tokenizer pads with "!", the first symbol, id 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + EOW for s in symbols]
    merges = learn_merges(CORPUS, merges_count)
    vocab_list += ["".join(pair) for pair in merges]
    vocab_list += [START, END]
    vocab = {}
    for token in vocab_list:  # a merge can re-create a token already present; keep the first id
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": START, "eos_token": END, "unk_token": END, "pad_token": pad})
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": max_length,
                "do_lower_case": True,
                "bos_token": START,
                "eos_token": END,
                "unk_token": END,
                "pad_token": pad,
            }
        )
    )
