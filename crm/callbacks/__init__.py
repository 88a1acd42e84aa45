"""Callback requests: every missed caller is called back, in their turn (see service.py)."""
