"""The HTTP API (Falcon) and the process entry points."""
