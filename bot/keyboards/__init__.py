"""Keyboard builders and callback-data factories."""
