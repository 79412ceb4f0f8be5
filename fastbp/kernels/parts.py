"""How parallel work is split into parts, and how threads take them.

A part is one single-threaded product or loop over a block of rows (or of a weight gradient's
input features); no two parts write the same element. Parts are fixed by the shapes and
``maxparts`` only, so a result does not depend on which thread ran which part.

Threads take parts in turn (``take``): each thread of a region takes the next part nobody has
taken until none is left, so a thread the OS has parked behind another process when a region
starts leaves its part to the others. More parts than CPUs would let the running threads take
more of a parked thread's share, but every part repacks the other operand of its product, and
that costs more than it saves (docs/performance.rst, "A busy machine").

    maxparts is None           everything serial, and no parallel kernel is even compiled: numba
                               drops the branches that test ``maxparts is None`` when it is None
    maxparts == DETERMINISTIC  parts depend on the shapes alone, never on the CPU count
    maxparts == 1              everything serial
    maxparts > 1               for that many CPUs (threads.partition_cpus): one part per CPU
                               (BLAS repacks the other operand for every part)
Never by the thread count of the moment: a result is the same bits on any number of threads.
"""
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .jit import kernel

# A product with fewer multiply-adds than this (~10 us of BLAS on one core) runs on one thread:
# starting a parallel region costs a few microseconds. Parts never get fewer rows than MIN_PART_ROWS.
PARALLEL_MIN_WORK = 1 << 20
# An optimizer update over fewer parameters than this runs on one thread.
PARALLEL_MIN_PARAMS = 1 << 16
# Predicting or evaluating fewer multiply-adds than this in all runs on one thread: a few
# milliseconds of work, where splitting saves less than a first run spends compiling the
# parallel kernels.
PARALLEL_MIN_INFERENCE = 1 << 26
MIN_PART_ROWS = 16
# Deterministic parts hold about DET_PART_ROWS rows each (BLAS repacks the other operand for
# every part), 2 to DET_MAX_PARTS of them.
DETERMINISTIC = 0
DET_PART_ROWS = 256
DET_MAX_PARTS = 8


@intrinsic
def _fetch_add(typingctx, counter, delta):
    """counter[0] += delta atomically; returns the value before."""
    sig = types.int64(counter, delta)

    def codegen(context, builder, signature, args):
        arrty = signature.args[0]
        arr = context.make_array(arrty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, arrty, arr, [context.get_constant(types.intp, 0)],
                                       wraparound=False)
        return builder.atomic_rmw("add", ptr, args[1], "seq_cst")
    return sig, codegen


@kernel(inline="always")
def take(next_part):
    """The next part nobody has taken (next_part: a (1,) int64 array at 0 when a region starts):
    parts past the last mean none is left. A region loops ``for _ in prange(parts)`` and takes
    parts until none is left in each iteration: a thread's first iteration does its work, its
    others (numba hands each thread a fixed block of iterations) find none left."""
    return _fetch_add(next_part, np.int64(1))


@kernel(inline="always")
def n_parts(rows, work, maxparts):
    """How many parts a product of ``work`` multiply-adds over ``rows`` splittable rows gets."""
    if maxparts is None or work < PARALLEL_MIN_WORK:
        return 1
    if maxparts == DETERMINISTIC:
        return max(2, min(DET_MAX_PARTS, rows // DET_PART_ROWS))
    return max(1, min(maxparts, rows // MIN_PART_ROWS))


@kernel(inline="always")
def part_range(rows, parts, p):
    """Rows [r0, r1) of part p when ``rows`` rows are split into ``parts`` parts."""
    chunk = (rows + parts - 1) // parts
    r0 = min(rows, p * chunk)
    return r0, min(rows, r0 + chunk)


def kernel_parts(maxparts, sizes, rows, n_params=None, total_rows=None):
    """``maxparts`` for kernels that run batches of up to ``rows`` rows of a net with widths
    ``sizes``, or None when none of their work would be split (every product under
    PARALLEL_MIN_WORK, the update of ``n_params`` parameters under PARALLEL_MIN_PARAMS, or one
    thread), so that a run compiles and calls only serial code. Results are the same bits
    either way. Inference (``total_rows`` given, no update) also runs serially when all of it
    is under PARALLEL_MIN_INFERENCE."""
    if maxparts == 1:
        return None
    if total_rows is not None and total_rows * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) < PARALLEL_MIN_INFERENCE:
        return None
    if n_params is not None and n_params >= PARALLEL_MIN_PARAMS:
        return maxparts
    if any(rows * a * b >= PARALLEL_MIN_WORK for a, b in zip(sizes[:-1], sizes[1:])):
        return maxparts
    return None
