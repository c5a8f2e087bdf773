"""``quiet_runtime_warnings()``: NumPy's expected RuntimeWarnings (an all-NaN slice, an empty mean)
silenced for a block, safely when windows run in threads.

``warnings.catch_warnings`` swaps the process-wide filter list and puts the old one back on exit, so
two threads inside such blocks at once can restore each other's filters mid-block (a window thread
then sees "All-NaN slice encountered" escalated or printed). Every such block takes one process-wide
re-entrant lock, so the swaps never interleave; the blocks are short NumPy reductions.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_runtime_warnings() -> Iterator[None]:
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
