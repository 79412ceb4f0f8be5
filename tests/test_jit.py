"""The kernels' on-disk cache: two writers at once (jit.LockedCacheFile), a change to a
kernel's callee in another file (jit.package_cache), and a cached kernel that calls a parallel
one compiled by another process; jit.wide_vectors."""
import threading

import numpy as np
from numba import njit
from numba.core import caching

from fastbp.kernels import epoch, network
from fastbp.kernels.jit import LockedCacheFile, wide_vectors

from processes import python_in


def save_interleaved(cls, folder):
    """Two writers of one kernel's cache, ``a`` and ``b``, each saving a signature of its own,
    steered into the order that breaks numba's unlocked files: both read the empty index, a
    writes its index, b writes its index and its data (file 1), a writes its data (file 1, over
    b's). Each wait gives up after a second: with a lock, b cannot start until a is done."""
    a, b = (cls(str(folder), "kernel-1.py311", "stamp") for _ in range(2))
    a_in, a_indexed, b_loaded, b_done = (threading.Event() for _ in range(4))
    a_save_index, a_save_data, b_load_index = a._save_index, a._save_data, b._load_index

    def a_index(overloads):
        a_in.set()
        b_loaded.wait(1)
        a_save_index(overloads)
        a_indexed.set()

    def a_data(name, data):
        b_done.wait(1)
        a_save_data(name, data)

    def b_index():
        overloads = b_load_index()
        b_loaded.set()
        a_indexed.wait(1)
        return overloads

    a._save_index, a._save_data, b._load_index = a_index, a_data, b_index
    ta = threading.Thread(target=a.save, args=("sig a", "code of a"))
    ta.start()
    a_in.wait(5)
    tb = threading.Thread(target=lambda: (b.save("sig b", "code of b"), b_done.set()))
    tb.start()
    ta.join()
    tb.join()
    reader = cls(str(folder), "kernel-1.py311", "stamp")
    return reader.load("sig a"), reader.load("sig b")


def test_two_writers_at_once_keep_each_signature_with_its_own_code(tmp_path):
    assert save_interleaved(LockedCacheFile, tmp_path) == ("code of a", "code of b")


def test_the_interleaving_breaks_numbas_unlocked_files(tmp_path):
    """What the lock prevents (if numba's own files become safe, this fails: drop the lock)."""
    assert save_interleaved(caching.IndexDataCacheFile, tmp_path) == (None, "code of a")


def test_fastbp_kernels_use_the_locked_cache_files():
    for k in (epoch.shuffled_order, network.run_batches):
        assert type(k._cache._cache_file) is LockedCacheFile


def run_caller(folder, callee_body, decorator):
    """Write callee.py (``callee_body``) and caller.py, whose cached kernel calls callee's, both
    decorated with ``decorator``; return what caller's kernel gives in a new process."""
    header = "from numba import njit\nfrom fastbp.kernels.jit import kernel\n\n"
    (folder / "callee.py").write_text(header + f"@{decorator}\ndef f(x):\n    return {callee_body}\n")
    (folder / "caller.py").write_text(header + f"from callee import f\n\n\n@{decorator}\ndef g(x):\n"
                                      "    return 10 * f(x)\n")
    return int(python_in(folder, "import caller; print(caller.g(1))", check=True).stdout)


def test_a_change_to_a_callee_in_another_file_recompiles_its_callers(tmp_path):
    assert run_caller(tmp_path, "x + 1", "kernel") == 20
    assert run_caller(tmp_path, "x + 2", "kernel") == 30
    assert run_caller(tmp_path, "x + 1", "kernel") == 20


def test_numbas_own_cache_keeps_the_old_callee(tmp_path):
    """What the package stamp prevents (if numba starts to notice, this fails: drop the stamp)."""
    assert run_caller(tmp_path, "x + 1", "njit(cache=True)") == 20
    assert run_caller(tmp_path, "x + 2", "njit(cache=True)") == 20


PARALLEL = """
import numpy as np
from numba import njit, prange
from fastbp.kernels.jit import kernel


@{decorator}
def fill(a):
    for i in prange(a.size):
        a[i] = i
"""
CALLER = """
import numpy as np
from numba import njit
from fastbp.kernels.jit import kernel
from parallel import fill


@{decorator}
def total(a):
    fill(a)
    return a.sum()
"""


def run_three_processes(folder, parallel, serial):
    """A parallel kernel compiled and cached by one process, a caller of it compiled (loading it
    from the cache) and cached by a second, the caller loaded from the cache by a third: the
    third's return code and output."""
    (folder / "parallel.py").write_text(PARALLEL.format(decorator=parallel))
    (folder / "caller.py").write_text(CALLER.format(decorator=serial))
    python_in(folder, "import numpy as np, parallel; parallel.fill(np.zeros(100))", check=True)
    python_in(folder, "import numpy as np, caller; print(caller.total(np.zeros(100)))", check=True)
    p = python_in(folder, "import numpy as np, caller; print(caller.total(np.zeros(100)))")
    return p.returncode, p.stdout.strip()


def test_a_cached_caller_of_a_parallel_kernel_cached_elsewhere_runs(tmp_path):
    assert run_three_processes(tmp_path, "kernel(parallel=True)", "kernel") == (0, "4950.0")


def test_numbas_own_cache_crashes_there(tmp_path):
    """What LockedCacheFile.load prevents (if numba starts to get it right, this fails: drop the
    call there)."""
    code, out = run_three_processes(tmp_path, "njit(cache=True, parallel=True)", "njit(cache=True)")
    assert code != 0 and out == ""


def test_wide_vectors_marks_the_kernel_for_512_bit_vectors():
    """The LLVM function of a kernel that calls wide_vectors() carries the attribute; a kernel
    that does not keeps LLVM's default (see test_pinned_bits for what it must not change)."""
    @njit
    def wide(a):
        wide_vectors()
        for i in range(a.shape[0]):
            a[i] *= 2.0

    @njit
    def narrow(a):
        for i in range(a.shape[0]):
            a[i] *= 2.0

    a = np.ones(64)
    wide(a)
    narrow(a)
    assert np.all(a == 4.0)
    assert '"prefer-vector-width"="512"' in wide.inspect_llvm(wide.signatures[0])
    assert "prefer-vector-width" not in narrow.inspect_llvm(narrow.signatures[0])
