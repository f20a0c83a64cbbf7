"""The compiler passes. `pipeline.py` declares every step in order with its condition; one file per
pass; `ir.py` holds the names and helpers they share; `options.py` every knob they read."""
