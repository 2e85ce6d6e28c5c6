"""One gzip member, its deflate blocks made in parallel: compressed where it pays, stored where not.

The tar stream is cut into blocks, each deflated on its own and ended with a full flush, so
the pieces concatenate into one valid deflate stream (as ``pigz`` does). The CRC-32 of the raw
stream is kept as it passes (isal: ~10 GB/s). Each block is

- compressed with isal when a sample of it shrinks enough to be worth it, on a small thread
  pool using both cores (isal drops the GIL), at a lower CPU priority than the training loop;
- stored (deflate stored blocks: the bytes framed in 64 KiB blocks) when it does not. Trained
  float32 weights compress to ~93 % at best, and compressing costs several times what copying
  does: landing them is then one copy, not a compression. Storing is done in the reading
  thread, while the block is still in the cache.

Each block comes back as one piece, so the pipeline after (hash, upload) moves a few big
pieces rather than many small ones: on a loaded machine each hand-over between threads waits
for the scheduler.

One member, not one per block: streaming readers (``tarfile`` in ``r|gz`` mode, some Go and
Rust decoders) stop after the first member. A bounded window of blocks in flight bounds memory.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from isal import isal_zlib

#: isal level 1: ~550 MiB/s per core on an idle machine here, ~20 MiB/s for stdlib gzip -6.
GZIP_LEVEL = 1
#: Raw bytes per member. Big enough that per-member overhead (18 bytes, one pool hop) vanishes.
BLOCK = 4 << 20
#: Bytes compressed to decide whether the block is worth compressing.
SAMPLE = 64 << 10
#: Compress a block only if its sample shrinks to this fraction or less.
WORTH = 0.90
#: Encoding threads (the machine's cores, at most 2: the training loop needs the rest).
THREADS = max(1, min(2, os.cpu_count() or 1))
#: Blocks in flight at once (read ahead while the earlier ones are encoded).
WINDOW = THREADS + 2
#: Niceness of the encoding threads (the training loop keeps priority).
BACKGROUND_NICE = 10

#: A block of the raw stream: the buffers it spans, in order.
Block = list[bytes | memoryview]
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _lower_priority() -> None:
    with contextlib.suppress(OSError):  # per thread on Linux
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


def _encoders() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                THREADS, thread_name_prefix="replicate-gzip", initializer=_lower_priority
            )
        return _pool


#: An empty final stored block: ends the deflate stream (RFC 1951 §3.2.4).
LAST_BLOCK = b"\x01\x00\x00\xff\xff"
#: RFC 1952 member header: deflate, no name or flags, no mtime, unknown OS.
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def worth_compressing(parts: Block) -> bool:
    """Whether a sample of the block shrinks enough (small blocks are always tried)."""
    if sum(len(p) for p in parts) <= 2 * SAMPLE:
        return True
    compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, -15)
    size = taken = 0
    for part in parts:
        piece = part[: SAMPLE - taken]
        size += len(compressor.compress(piece))
        taken += len(piece)
        if taken == SAMPLE:
            break
    return size + len(compressor.flush()) <= WORTH * SAMPLE


def compressed(parts: Block) -> list[bytes]:
    """Deflate blocks holding ``parts``, ending byte-aligned; stored if compressing didn't pay.

    Parts go in and pieces come out one by one: joining them would copy every byte once more,
    and copying is most of what landing incompressible data costs.
    """
    compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, -15)
    out = [compressor.compress(p) for p in parts]
    out.append(compressor.flush(isal_zlib.Z_FULL_FLUSH))
    if sum(len(p) for p in out) < sum(len(p) for p in parts):
        return [b"".join(out)]
    return stored(parts)


#: Most bytes one stored deflate block holds (its length field is 16 bits).
STORED_MAX = 0xFFFF


def stored(parts: Block) -> list[bytes]:
    """Stored deflate blocks (RFC 1951 §3.2.4) holding ``parts``, as one piece.

    Framed here rather than by ``zlib.compress(level=0)``: that copies the bytes once more
    than this join does, returns them in many pieces, and computes a CRC we already have.
    The frames are cut straight from the parts, so the join is the only copy.
    """
    framed: list[bytes | memoryview] = []
    remaining = sum(len(p) for p in parts)
    room = 0  # bytes the current stored block still takes
    for part in parts:
        view = memoryview(part)
        while len(view):
            if room == 0:
                room = min(STORED_MAX, remaining)
                framed.append(struct.pack("<BHH", 0, room, room ^ 0xFFFF))
            take = min(room, len(view))
            framed.append(view[:take])
            view = view[take:]
            room -= take
            remaining -= take
    return [b"".join(framed)]


def blocks(raw: Iterator[bytes], size: int = BLOCK) -> Iterator[Block]:
    """Regroup a stream of chunks into blocks of ``size`` bytes (the last may be shorter).

    A block is a list of the chunks (or views of them) it spans: nothing is copied here.
    """
    pending: Block = []
    held = 0
    for chunk in raw:
        view = memoryview(chunk)
        while len(view):
            take = min(size - held, len(view))
            pending.append(view[:take])
            held += take
            view = view[take:]
            if held == size:
                yield pending
                pending, held = [], 0
    if held:
        yield pending


class Packer:
    """Encodes a raw stream into one gzip member, blocks in parallel, handing pieces in order.

    ``read()`` pulls raw blocks (the caller's thread does the reading and the CRC) and waits
    for encodings done on the pool; call it off the event loop.
    """

    def __init__(self, raw: Iterator[bytes]) -> None:
        self._blocks = blocks(raw)
        self._in_flight: deque[Future[list[bytes]]] = deque()
        self._pieces: deque[bytes] = deque([HEADER])
        self._crc = 0
        self._size = 0
        self._exhausted = False
        self._done = False

    def _fill(self) -> None:
        while not self._exhausted and len(self._in_flight) < WINDOW:
            block = next(self._blocks, None)
            if block is None:
                self._exhausted = True
                break
            for part in block:
                self._crc = isal_zlib.crc32(part, self._crc)
                self._size += len(part)
            if worth_compressing(block):
                self._in_flight.append(_encoders().submit(compressed, block))
            else:  # storing is a copy: done here, while the block is still in the cache
                done: Future[list[bytes]] = Future()
                done.set_result(stored(block))
                self._in_flight.append(done)

    def read(self) -> bytes:
        """Return the next piece of the gzip stream, or b"" at the end."""
        while not self._pieces and not self._done:
            self._fill()
            if self._in_flight:
                self._pieces.extend(p for p in self._in_flight.popleft().result() if p)
            else:  # the last deflate block, then the CRC and size of everything
                self._pieces.append(LAST_BLOCK)
                self._pieces.append(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
                self._done = True
        return self._pieces.popleft() if self._pieces else b""

    def close(self) -> None:
        """Drop what is in flight (after an error or a cancelled upload)."""
        for future in self._in_flight:
            future.cancel()
        self._in_flight.clear()
        self._pieces.clear()
        self._exhausted = self._done = True
