"""Attention split by query rows when its score matrix would exceed one WebGPU binding."""

import pytest


def test_chunked_attention_equals_whole(monkeypatch):
    import torch

    from wsd import capture

    q, k, v = (torch.randn(2, 3, 50, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    whole = capture.plain_attention(q, k, v)
    monkeypatch.setattr(capture, "MAX_SCORES_BYTES", 2 * 3 * 50 * 50 * 4 // 3)  # a third of the scores
    assert capture.score_chunks(q, k) == 3
    torch.testing.assert_close(capture.plain_attention(q, k, v), whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("tokens", "heads", "chunks"), [(4096, 8, 1), (4096, 10, 2), (1024, 20, 1)])
def test_sd_shapes(tokens, heads, chunks):
    """SD 1.5 at 512² (exactly 1 GiB of scores) stays whole; SDXL's 64x64 level at 1024² splits in two."""
    import torch

    from wsd.capture import score_chunks

    q = torch.empty((2, heads, tokens, 64), device="meta")
    assert score_chunks(q, q) == chunks
