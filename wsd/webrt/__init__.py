"""The tvmjs web runtime kit: built from the installed TVM wheel, cached, and used to link models."""

from wsd.webrt.kit import RuntimeKit, ensure_kit, runtime_bundle
from wsd.webrt.link import link_wasm, wasm_fcompile

__all__ = ["RuntimeKit", "ensure_kit", "link_wasm", "runtime_bundle", "wasm_fcompile"]
