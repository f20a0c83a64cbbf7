"""Shared infrastructure below both the compiler CLI and the harness: the loopback file server
and the headless Chromium driver."""
