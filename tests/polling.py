"""The one way tests wait for something: poll a function until it returns a truthy value, or fail saying what was seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    fn: Callable[[], T], timeout: float, what: str, show: Callable[[], object] | None = None, every: float = 0.05
) -> T:
    """fn() until truthy, then its value. On timeout the failure names `what` and shows show() (what was seen last)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; last seen: {show()}" if show else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{seen}")
        time.sleep(every)
