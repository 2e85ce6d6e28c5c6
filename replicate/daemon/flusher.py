"""Journal lines flushed to disk right after ``checkpoint()`` returns, not inside it.

A line written to the journal is in the page cache the moment ``write`` returns, and the page
cache outlives the process (kill -9, OOM, an exception): that is the promise. Flushing it too
is for a machine crash, and on a VM a flush waits for every write the machine has in flight.
After ``torch.save`` rewrote a file in place, ext4 starts writing that whole file back when it
is closed (``auto_da_alloc``), so an ``fdatasync`` of a 600-byte line measured ~80 ms here
after a 64 MiB save and grows with the save: longer than the snapshot itself. The staged data
is not flushed either unless ``REPLICATE_FSYNC=1`` (which flushes both, in the call), so a
crash of the machine loses the same things either way; the line still reaches disk within a
flush's time.

One thread flushes every journal that has unflushed lines; lines written while a flush runs
get the next one.
"""

from __future__ import annotations

import contextlib
import os
import threading


class Flusher:
    """Runs ``fdatasync`` on journals in a background thread, coalescing requests."""

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:  # the thread does not exist in a forked child
        self._cond = threading.Condition()
        self._pending, self._busy, self._thread = {}, False, None

    def schedule(self, path: str, fd: int) -> bool:
        """Flush ``fd`` (the journal at ``path``) soon; False if no thread could be started."""
        with self._cond:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="replicate-spool-flush", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutdown: the caller flushes itself
                    return False
                self._thread = thread
            if path not in self._pending:
                self._pending[path] = os.dup(fd)  # its own fd: the journal may be closed first
            self._cond.notify()
        return True

    def drain(self) -> None:
        """Block until every line scheduled so far has been flushed."""
        with self._cond:
            while self._pending or self._busy:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch, self._pending, self._busy = self._pending, {}, True
            for fd in batch.values():
                with contextlib.suppress(OSError):  # a full disk: the line is still cached
                    os.fdatasync(fd)
                os.close(fd)
            with self._cond:
                self._busy = False
                self._cond.notify_all()


#: The process's one flusher.
FLUSHER = Flusher()
