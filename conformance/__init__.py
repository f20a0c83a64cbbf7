"""The conformance harness: PyTorch references vs compiled modules on real WebGPU."""
