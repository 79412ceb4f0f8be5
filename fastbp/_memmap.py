"""Training from a numpy memmap without holding the file in memory.

The compiled loop reads minibatch rows straight from the mapping. Pages it touches count in the
process's resident memory until released, so between chunks of minibatches fit drops them with
madvise(MADV_DONTNEED): the kernel keeps them in its page cache, our RSS stays bounded.
Only read-only mappings are released (on a copy-on-write mapping that would discard writes).
"""
import mmap

import numpy as np

# fit bounds a chunk of minibatches so that it maps at most this many bytes of the file
STREAM_CHUNK_BYTES = 256 << 20
# A page fault on a file mapping maps the neighbouring cached pages too (Linux "fault-around",
# 64 KiB by default; a whole large folio of the page cache on newer kernels), so a randomly
# read row costs at least this much resident memory: the first chunk's estimate, which the
# resident memory chunks are then seen to map corrects (see ChunkBound).
FAULT_AROUND_BYTES = 64 << 10


def read_only_mapping(arr):
    """The mmap behind ``arr`` (an np.memmap opened with mode "r", or a view of one), else None."""
    a = arr
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap) and getattr(a, "mode", None) == "r":
            mm = getattr(a, "_mmap", None)
            if mm is not None:
                return mm
        a = a.base
    return None


def backs(arr, mm):
    """Whether ``arr`` lies inside the mapping ``mm`` (rather than in a converted copy)."""
    return np.may_share_memory(arr, np.frombuffer(mm, np.uint8))


def advise_random(mm):
    """Tell the kernel the mapping is read in random order (no read-ahead of neighbours)."""
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        try:
            mm.madvise(mmap.MADV_RANDOM)
        except (OSError, ValueError):
            pass


def release(mm):
    """Drop the resident pages of a read-only file mapping (no-op where unsupported)."""
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        pass


def max_chunk_steps(batch, row_bytes):
    """Minibatches per chunk so that one chunk maps at most STREAM_CHUNK_BYTES of the file,
    estimated from the row size alone."""
    per_row = max(row_bytes, FAULT_AROUND_BYTES)   # what a shuffled row can map in
    return max(1, STREAM_CHUNK_BYTES // (batch * per_row))


def resident_bytes():
    """This process's resident memory in bytes (Linux /proc/self/statm), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return None


class ChunkBound:
    """How many minibatches a chunk may hold: where resident memory can be read, one to begin
    with, then as many as STREAM_CHUNK_BYTES allows at the most memory a minibatch was seen to
    map (the kernel may map much more than a row around each fault); elsewhere an estimate
    from the row size (max_chunk_steps)."""

    def __init__(self, batch, row_bytes):
        self._base = resident_bytes()
        self.steps = 1 if self._base is not None else max_chunk_steps(batch, row_bytes)
        self._per_step = 1

    def chunk_done(self, steps):
        """After a chunk of ``steps`` minibatches, before its pages are released."""
        now = resident_bytes()
        if now is not None and self._base is not None and steps > 0:
            self._per_step = max(self._per_step, (now - self._base) // steps)
            self.steps = max(1, STREAM_CHUNK_BYTES // self._per_step)

    def released(self):
        """After the pages were released: the resident memory the next chunk starts from."""
        self._base = resident_bytes()
