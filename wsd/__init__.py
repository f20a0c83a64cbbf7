"""wsd: Stable Diffusion compiled by Apache TVM for WebGPU, and proven against PyTorch."""

__version__ = "0.1.0"
