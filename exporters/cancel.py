"""Cooperative cancellation: the safe points where a conversion stops when its job is canceled.

Converters stay pure: they only call checkpoint() between frames, pages and inputs (and while
they wait for LibreOffice). What "canceled" means is the caller's: actors/export.py sets a token,
a function that says whether the job should stop, for the duration of one job on its thread.
Without a token (tests, the CLI, a converter called directly) checkpoint() does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

_token: contextvars.ContextVar[Callable[[], bool] | None] = contextvars.ContextVar(
    "exportd_cancel", default=None
)


class Canceled(BaseException):
    """The job was canceled: the conversion stops here. A BaseException, as Dramatiq's time limit
    is: the boundaries that turn a decoder's Exception into CorruptInput let it through."""


@contextlib.contextmanager
def cancel_token(canceled: Callable[[], bool]) -> Iterator[None]:
    """Conversions run inside this block stop at their next checkpoint once `canceled()` is true."""
    reset = _token.set(canceled)
    try:
        yield
    finally:
        _token.reset(reset)


def checkpoint() -> None:
    """A safe point to stop at. Raises Canceled when the job was canceled."""
    canceled = _token.get()
    if canceled is not None and canceled():
        raise Canceled()
