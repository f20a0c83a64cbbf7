"""A legalized `pad` stays a kernel of its own instead of joining its producer's epilogue.

FuseOps appends an injective op to a reduction's output, so the VAE encoder's ResNet output
(conv, residual add, output scale) fused with the Downsample's asymmetric `pad` into one kernel
whose output is larger than the conv's. No dlight rule but Fallback takes that shape
(GeneralReduction caches whole rows: 256 KiB of workgroup memory at 64x64), and at SD's 512x512
the build refuses a Fallback reduction that large. Marked opaque, the pad is one cheap
elementwise kernel and the conv keeps its Matmul schedule.
"""

from __future__ import annotations

import re

# relax.nn.pad legalizes to PrimFuncs named pad, pad1, ...
_PAD = re.compile(r"^pad\d*$")
OPAQUE = 8  # tvm's OpPatternKind kOpaque: FuseOps never fuses it with a neighbour


def make(target, options):
    import tvm

    from wsd.passes.ir import is_prim_func

    @tvm.transform.module_pass(opt_level=0, name="wsd.PadApart")
    def run(mod, ctx):
        updated = {}
        for gvar, func in mod.functions_items():
            if is_prim_func(func) and _PAD.match(gvar.name_hint):
                updated[gvar] = func.with_attr("op_pattern", OPAQUE)
        for gvar, func in updated.items():
            mod[gvar] = func
        return mod

    return run
