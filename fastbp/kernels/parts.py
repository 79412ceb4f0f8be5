"""How parallel work is split into parts.

A part is one single-threaded product or loop over a block of rows (or of a weight gradient's
input features); no two parts write the same element. Parts are fixed by the shapes and
``maxparts`` only, so a result does not depend on which thread ran which part.

    maxparts == DETERMINISTIC  parts depend on the shapes alone, never on the thread count
    maxparts == 1              everything serial
    maxparts > 1               at most maxparts parts (the thread count)
"""
from .jit import kernel

# A product with fewer multiply-adds than this (~10 us of BLAS on one core) runs on one thread:
# starting a parallel region costs a few microseconds. Parts never get fewer rows than MIN_PART_ROWS.
PARALLEL_MIN_WORK = 1 << 20
MIN_PART_ROWS = 16
# Deterministic parts hold about DET_PART_ROWS rows each (BLAS repacks the other operand for
# every part), 2 to DET_MAX_PARTS of them.
DETERMINISTIC = 0
DET_PART_ROWS = 256
DET_MAX_PARTS = 8


@kernel
def n_parts(rows, work, maxparts):
    """How many parts a product of ``work`` multiply-adds over ``rows`` splittable rows gets."""
    if work < PARALLEL_MIN_WORK:
        return 1
    if maxparts == DETERMINISTIC:
        return max(2, min(DET_MAX_PARTS, rows // DET_PART_ROWS))
    return max(1, min(maxparts, rows // MIN_PART_ROWS))


@kernel
def part_range(rows, parts, p):
    """Rows [r0, r1) of part p when ``rows`` rows are split into ``parts`` parts."""
    chunk = (rows + parts - 1) // parts
    r0 = min(rows, p * chunk)
    return r0, min(rows, r0 + chunk)
