"""GroupNorm's own kernels (wsd/passes/group_norm.py) on WebGPU in Chromium, against torch: one part
per group (dlight's Reduction once got this wrong: the rsqrt inlined into the sum's init), parts that
do not fill a workgroup, and several parts of 2048."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsd import smoke
from wsd.host.modules import run_entry


class GroupNormSiLU(torch.nn.Module):
    def __init__(self, groups: int, channels: int):
        super().__init__()
        self.norm = torch.nn.GroupNorm(groups, channels)
        with torch.no_grad():
            self.norm.weight.normal_()
            self.norm.bias.normal_()

    def forward(self, x):
        return torch.nn.functional.silu(self.norm(x))


@pytest.mark.browser
@pytest.mark.parametrize(
    ("groups", "shape"),
    [(4, (1, 8, 8, 8)), (4, (1, 16, 5, 7)), (4, (1, 64, 32, 32))],
    ids=["one-part", "odd-part", "eight-parts"],
)
def test_group_norm_on_webgpu_matches_torch(runner, runner_url, kit, groups, shape):
    torch.manual_seed(0)
    module = GroupNormSiLU(groups, shape[1]).eval()
    x = (np.random.default_rng(0).standard_normal(shape) * 3 + 1).astype("float32")
    _, artifacts = runner_url
    wasm, _, _ = smoke.build_wasm(module, x, artifacts, kit)
    result = run_entry(runner, f"/a/{wasm.name}", smoke.ENTRY, [x], repeat=1)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    got = np.asarray(result.outputs[0]).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
