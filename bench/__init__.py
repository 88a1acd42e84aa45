"""Benchmarks that run the real IVR components on this machine (``python -m bench.<name>``)."""
