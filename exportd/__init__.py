"""exportd's Python client package: `from exportd.client import Client` (needs only httpx)."""
