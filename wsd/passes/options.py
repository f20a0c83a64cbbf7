"""Every knob the passes read, in one frozen value: no pass reads the environment.

`wsd build` makes it from its options (wsd.build.BuildOptions.passes); it is part of the build
key and of the manifest's `build_options`, so two builds with different knobs never share a
cache entry and a dist says how it was compiled.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class PassOptions:
    dtype: str = "float32"  # float16: fp16 arithmetic and weights (mixed_precision, half_softmax)
    subgroup_matrix: bool = False  # GEMMs as tensor-core WGSL the page swaps in (subgroup_gemm)
    split_k: bool = True  # convs too small to fill the GPU sum K in parts (split_k); off: comparison builds
    fused_attention: bool = False  # with subgroup_matrix in fp16: attention as one kernel (subgroup_attention)
    # repeated work on one value done once (pipeline's cse step). Measured on an H100 (session 12):
    # 53 fewer UNet dispatches, GPU time equal, the 20-step image 0.94 s against 1.03 s. The
    # clobbered-input fault targets a GroupNorm-and-SiLU kernel in such builds (conformance.faults)
    cse: bool = True
    matmul_tile: str | None = None  # "RxC" pins one tile for every matmul (matmul_schedule.TILES); None: per kernel
    matmul_unroll: int | None = None  # dlight's k-loop unroll; None: matmul_schedule's per-kernel default
    allow_fallback: bool = False  # let dlight's Fallback schedule large reductions (slow) instead of failing
    tune_db: str | None = None  # a MetaSchedule database whose records replace dlight's schedules
    max_binding: int | None = None  # bytes: a kernel binding a larger buffer fails the build, named

    @property
    def float16(self) -> bool:
        return self.dtype == "float16"


DEFAULT = PassOptions()  # an fp32 build with every pass at its default
