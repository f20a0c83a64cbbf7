"""Capture: torch.export each entry point, import it into Relax, merge into one IRModule.

Parameters stay function inputs (`keep_params_as_input`) so they ship as tensor-cache
shards rather than constants baked into the .wasm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wsd.entries import EntryPoint
from wsd.errors import BuildError


@dataclass
class Captured:
    mod: object  # tvm.IRModule with one Relax function per entry point
    params: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)  # entry -> named params
    # entry -> each param's torch name in its folder component (`unet.conv_in.weight`), None for a
    # buffer or constant: what a LoRA's keys name (wsd/lora.py)
    torch_names: dict[str, list[str | None]] = field(default_factory=dict)


# Non-strict export traces the wrappers as plain Python (torch >= 2.9's default): torch 2.7's
# strict default runs TorchDynamo first, 4-5x slower (sd15-tiny's UNet 6.4 s against 1.4 s).
STRICT = False


def example_args(entry: EntryPoint, spec, seed: int = 0):
    import torch

    rng = np.random.default_rng(seed)
    return tuple(torch.from_numpy(np.ascontiguousarray(t.example(rng))) for t in entry.inputs(spec))


def export_entry(entry: EntryPoint, model):
    return export_with_sources(entry, model)[0]


def export_with_sources(entry: EntryPoint, model, module=None):
    """(ExportedProgram, state_dict key -> LazyWeight for parameters of shell components);
    `module`: the entry's wrapper when the caller made it already."""
    import torch

    from wsd.weights import sources_of

    module = entry.wrapper(model) if module is None else module
    sources = sources_of(module)  # empty when the components hold their weights
    with torch.no_grad():
        return torch.export.export(module, example_args(entry, model.spec), strict=STRICT), sources


def var_name(var) -> str:
    """A Relax Var's name: `name_hint` up to TVM 0.26, `name` from 0.27."""
    name = getattr(var, "name_hint", None)
    return str(name if name is not None else var.name)


def plain_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """SDPA as matmul, softmax, matmul: the form attention is captured in.

    torch's own decomposition goes through `_safe_softmax` (a boolean "row is all -inf" test
    per score) and, on a full SD 1.5 UNet, folds into ~1.2 GB of constant masks that land in
    the .wasm. Scores of a row that is entirely masked are NaN here, as in eager PyTorch's
    math kernel before 2.5; SD's masks never mask a whole row.
    """
    import math

    import torch

    if dropout_p or is_causal or enable_gqa:
        raise NotImplementedError("plain_attention handles inference SDPA without is_causal/GQA")
    scale = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    rows = query.shape[-2]
    chunks = score_chunks(query, key)
    if chunks > 1 and attn_mask is None:  # query rows are independent: each chunk is its own softmax
        step = -(-rows // chunks)
        parts = [plain_attention(query[..., i : i + step, :], key, value, scale=scale) for i in range(0, rows, step)]
        return torch.cat(parts, dim=-2)
    scores = torch.matmul(query * scale, key.transpose(-2, -1))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.matmul(torch.softmax(scores, dim=-1), value)


# The largest score matrix attention may materialize: WebGPU binds one buffer per kernel
# argument and tvmjs asks for maxStorageBufferBindingSize 1 GiB. SDXL's self-attention at
# 1024² (batch 2 x 10 heads x 4096² fp32) is 1.25 GiB, so it is split by query rows.
MAX_SCORES_BYTES = 2**30


def score_chunks(query, key) -> int:
    """How many query-row chunks keep each (..., rows, keys) score matrix within MAX_SCORES_BYTES."""
    import math

    elems = math.prod(int(d) for d in query.shape[:-1]) * int(key.shape[-2])
    return max(1, -(-elems * query.element_size() // MAX_SCORES_BYTES))


def decompositions():
    """torch.export's default decompositions, with SDPA captured as plain attention."""
    import torch

    table = torch.export.default_decompositions()
    table[torch.ops.aten.scaled_dot_product_attention.default] = plain_attention
    return table


def import_exported(name: str, exported, custom_convert_map=None, sources=None):
    """One ExportedProgram -> (Relax function named `name`, its params as named numpy arrays).

    The arrays are zero-copy views of the torch weights, found by the placeholder names the
    importer gives the Relax params; the importer's own copies are dropped at once, so a
    full SD 1.5 capture holds the weights about once, not three times. The decomposition
    the importer would run is run here, so the names refer to the program we look them up in.
    """
    import inspect

    from tvm.relax.frontend.torch import from_exported_program

    kwargs = {"keep_params_as_input": True, "unwrap_unit_return_tuple": True, "custom_convert_map": custom_convert_map}
    exported = exported.run_decompositions(decompositions())
    if "run_ep_decomposition" in inspect.signature(from_exported_program).parameters:
        kwargs["run_ep_decomposition"] = False
    mod = from_exported_program(exported, **kwargs)
    func = mod["main"]
    num_input = int(func.attrs["num_input"]) if "num_input" in func.attrs else len(func.params)
    func = drop_unread_weights(func, num_input)
    names = [var_name(p) for p in func.params[num_input:]]
    func = func.without_attr("params").with_attr("global_symbol", name)
    del mod
    return func, [(n, weight_of(exported, n, sources or {})) for n in names]


def drop_unread_weights(func, num_input: int):
    """Non-strict export lifts every parameter of the wrapped modules, read or not (the VAE
    entry, which decodes, would carry the encoder's weights): keep the weights the body reads."""
    from tvm import relax

    from wsd import compat

    read = {var_name(v) for v in relax.analysis.free_vars(func.body)}
    keep = list(func.params[:num_input]) + [p for p in func.params[num_input:] if var_name(p) in read]
    if len(keep) == len(func.params):
        return func
    return relax.Function(keep, func.body, compat.return_type(func), func.is_pure, func.attrs, func.span)


def weight_of(exported, placeholder: str, sources: dict | None = None):
    """The torch tensor behind an ExportedProgram placeholder (parameter, buffer or constant),
    or where it lives in the folder's files (a LazyWeight) for a shell's parameter."""
    sig = exported.graph_signature
    tables = (sig.inputs_to_parameters, sig.inputs_to_buffers, getattr(sig, "inputs_to_lifted_tensor_constants", {}))
    for table in tables:
        if placeholder in table:
            target = table[placeholder]
            if sources and target in sources:
                return sources[target]
            tensor = exported.state_dict.get(target)
            if tensor is None:
                tensor = exported.constants[target]
            return tensor.detach().contiguous().numpy()
    raise BuildError(f"placeholder {placeholder!r} is not a parameter, buffer or constant of the exported program")


def component_names(exported, module, model, placeholders: list[str]) -> list[str | None]:
    """Each placeholder's parameter as its folder component names it: the wrapper's attribute
    (`self.unet`, SDXL's `self.second`) replaced by the component's subfolder (`unet`, `text_encoder_2`)."""
    parts = [(model.spec.unet.subfolder, model.unet), (model.spec.vae.subfolder, model.vae)]
    parts += [(c.subfolder, enc) for c, enc in zip(model.spec.text_encoders, model.text_encoders, strict=True)]
    owner = {attr: next((sub for sub, m in parts if m is child), None) for attr, child in module.named_children()}
    targets = exported.graph_signature.inputs_to_parameters
    out = []
    for placeholder in placeholders:
        attr, _, path = targets.get(placeholder, "").partition(".")
        out.append(f"{owner[attr]}.{path}" if owner.get(attr) and path else None)
    return out


def capture(model, entries, echo=None) -> Captured:
    import tvm

    functions = {}
    out = Captured(mod=None)
    for entry in entries:
        module = entry.wrapper(model)
        exported, sources = export_with_sources(entry, model, module)
        func, params = import_exported(entry.name, exported, sources=sources)
        functions[entry.name] = func
        out.params[entry.name] = params
        out.torch_names[entry.name] = component_names(exported, module, model, [n for n, _ in params])
        if echo:
            echo(entry.name)
    out.mod = tvm.IRModule({tvm.ir.GlobalVar(n): f for n, f in functions.items()})
    return out
