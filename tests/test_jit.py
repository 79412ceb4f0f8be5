"""The kernels' on-disk cache under two writers at once (jit.LockedCacheFile)."""
import threading

from numba.core import caching

from fastbp.kernels import epoch, network
from fastbp.kernels.jit import LockedCacheFile


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
