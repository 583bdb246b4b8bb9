"""SIGTERM and SIGINT handled for a while, then handed back: how every stop modelforge offers is set up.

Only the main thread may set signal handlers; in another thread (a launcher running jobs in threads) the host
process's handling applies and nothing is set. Standard library only: every layer may use it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

# The signals that stop a run or a sweep: a scheduler's or `kill`'s SIGTERM, and Ctrl-C.
STOPS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def handled(handler: Callable[[int, Any], Any]) -> Iterator[dict[int, Any] | None]:
    """While inside, SIGTERM and SIGINT call `handler`; the handlers before come back on the way out, whatever
    ends the block.

    Yields:
        The handlers before, by signal; None off the main thread, where nothing was set.

    Example:
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> with handled(lambda signum, frame: None) as saved:
        ...     saved[signal.SIGTERM] is before
        True
        >>> signal.getsignal(signal.SIGTERM) is before
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    saved: dict[int, Any] = {int(s): signal.signal(s, handler) for s in STOPS}
    try:
        yield saved
    finally:
        for s, previous in saved.items():
            signal.signal(s, previous)
