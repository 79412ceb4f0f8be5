"""Training from a numpy memmap without holding the file in memory.

The compiled loop reads minibatch rows straight from the mapping. Pages it touches count in the
process's resident memory until released, so between chunks of minibatches fit drops them with
madvise(MADV_DONTNEED): the kernel keeps them in its page cache, our RSS stays bounded.
Only read-only mappings are released (on a copy-on-write mapping that would discard writes).
"""
import mmap

import numpy as np

# fit bounds a chunk of minibatches so that it touches at most this many bytes of the file
STREAM_CHUNK_BYTES = 256 << 20
# A page fault on a file mapping maps the neighbouring cached pages too (Linux "fault-around",
# 64 KiB by default), so a randomly read row costs up to this much resident memory.
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
    """Minibatches per chunk so that one chunk touches at most STREAM_CHUNK_BYTES of the file."""
    per_row = max(row_bytes, FAULT_AROUND_BYTES)   # what a shuffled row can map in
    return max(1, STREAM_CHUNK_BYTES // (batch * per_row))
