"""The legacy capture path (torch.compile/Dynamo -> FX -> Relax), kept importable.

The original web-stable-diffusion captured submodules with TVM's
`relax.frontend.torch.dynamo_capture_subgraphs`. On CLIP it fails:

    BackendCompilerFailed: backend='_capture' raised:
    AssertionError: Unsupported function types ['embedding']

Dynamo records `nn.Embedding` as a call of the *function* `torch.nn.functional.embedding`,
and TVM's FX importer converts the `nn.Embedding` module but has no entry for the function.
The shim is three FX rewrites run inside the Dynamo backend before `from_fx`:
- each functional embedding becomes `index_select(weight, 0, ids.reshape(-1))` reshaped
  back, which the importer converts;
- the boolean causal mask transformers 5 passes to SDPA becomes additive (the next
  failure once embeddings import: "Only a float mask is supported");
- `x.int()` becomes `x.to(torch.int32)` (the third: "Unsupported function target int").
`wsd build` itself uses torch.export (wsd.capture); this path exists for people bisecting
against the original pipeline.
"""

from __future__ import annotations


def rewrite_functional_embedding(graph_module) -> int:
    """Replace `F.embedding(ids, weight, ...)` calls with index_select + reshape. Returns the count."""
    import torch
    from torch.nn import functional

    graph = graph_module.graph
    count = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not functional.embedding:
            continue
        ids, weight = node.args[0], node.kwargs.get("weight", node.args[1] if len(node.args) > 1 else None)
        ids_shape = tuple(ids.meta["example_value"].shape)
        dim = node.meta["example_value"].shape[-1]
        with graph.inserting_before(node):
            flat = graph.call_function(torch.reshape, (ids, (-1,)))
            rows = graph.call_function(torch.index_select, (weight, 0, flat))
            out = graph.call_function(torch.reshape, (rows, (*ids_shape, int(dim))))
        out.meta = dict(node.meta)
        node.replace_all_uses_with(out)
        graph.erase_node(node)
        count += 1
    graph_module.recompile()
    return count


def rewrite_bool_attention_mask(graph_module) -> int:
    """A boolean `attn_mask` of F.scaled_dot_product_attention becomes an additive float mask.

    transformers 5 builds CLIP's causal mask as booleans; the FX importer accepts only float
    masks ("Only a float mask is supported"). True (attend) -> 0, False -> -3.4e38.
    """
    import torch
    from torch.nn import functional

    graph = graph_module.graph
    count = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not functional.scaled_dot_product_attention:
            continue
        mask = node.kwargs.get("attn_mask")
        value = getattr(mask, "meta", {}).get("example_value")
        if value is None or value.dtype != torch.bool:
            continue
        with graph.inserting_before(node):
            as_float = graph.call_method("float", (mask,))
            shifted = graph.call_function(torch.sub, (as_float, 1.0))
            additive = graph.call_function(torch.mul, (shifted, 3.4e38))
        node.kwargs = {**node.kwargs, "attn_mask": additive}
        count += 1
    graph_module.recompile()
    return count


def rewrite_int_method(graph_module) -> int:
    """`x.int()` (CLIP's pooled-output lookup) becomes `x.to(torch.int32)`; the importer has no "int"."""
    import torch

    count = 0
    for node in graph_module.graph.nodes:
        if node.op == "call_method" and node.target == "int":
            node.target = "to"
            node.args = (node.args[0], torch.int32)
            count += 1
    graph_module.recompile()
    return count


SHIMS = (rewrite_functional_embedding, rewrite_bool_attention_mask, rewrite_int_method)


def capture_subgraphs(model, *inputs, keep_params_as_input: bool = False, shim: bool = True):
    """Like TVM's `dynamo_capture_subgraphs`, with the shims applied (unless shim=False).

    Returns (IRModule, {subgraph name: its example inputs as numpy}); Dynamo passes the
    weights as graph inputs, so running a subgraph needs all of them.
    """
    import torch
    import tvm
    from torch import _dynamo as dynamo
    from tvm.relax.frontend.torch import from_fx

    mod = tvm.IRModule()
    example: dict = {}

    def backend(graph_module, example_inputs):
        if shim:
            for rewrite in SHIMS:
                rewrite(graph_module)
        info = [(tuple(t.shape), str(t.dtype).replace("torch.", "")) for t in example_inputs]
        imported = from_fx(graph_module, info, keep_params_as_input=keep_params_as_input, unwrap_unit_return_tuple=True)
        name = f"subgraph_{len(mod.get_global_vars())}"
        mod[name] = imported["main"].with_attr("global_symbol", name)
        example[name] = [t.detach().cpu().numpy() for t in example_inputs]
        return graph_module.forward

    dynamo.reset()
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        compiled(*inputs)
    return mod, example
