"""The worker pool's alive file: touched by the supervisor, read by the liveness probe.

Imports nothing heavy: `exportd check-worker` runs every 30 s in every worker pod.
"""

from __future__ import annotations

from pathlib import Path


def is_alive(alive_file: Path, *, max_age_s: float, now: float) -> bool:
    """Whether a pool touched `alive_file` within the last `max_age_s` seconds."""
    try:
        return now - alive_file.stat().st_mtime <= max_age_s
    except FileNotFoundError:
        return False
