"""Sparse input: text-like CSR rows (20000 features, 100 stored a row, the peer comparison's
"sparse" workload on SPARSE_SAMPLES rows) through 20000-256-20 relu, Adam, batch 256, float32.

fit: one epoch; predict: every row. X stays CSR throughout (layer 0 reads the stored entries
only). Kernels are compiled beforehand (``setup_cache``), and setup runs one warm-up minibatch
and one predict, so compilation and buffer allocation stay out of ``time_*``.
"""
import fastbp

from .common import (SPARSE_BATCH, SPARSE_NNZ, SPARSE_SAMPLES, SPARSE_SIZES, THREADS, each_thread_count, make_model,
                     make_sparse, use_threads)


def precompile_sparse(_benchmark=None):
    """``setup_cache``: one minibatch and one predict of the sparse network at every thread count."""
    X, y = make_sparse(SPARSE_SIZES[0], SPARSE_SIZES[-1], SPARSE_SAMPLES, SPARSE_NNZ)
    for _ in each_thread_count():
        model = make_model(SPARSE_SIZES)
        model.fit(X[:SPARSE_BATCH], y[:SPARSE_BATCH], epochs=1, batch_size=SPARSE_BATCH, verbose=0)
        model.predict(X)


precompile_sparse.timeout = 900


class SparseFit:
    """One fit epoch and one predict over the CSR rows."""
    setup_cache = precompile_sparse
    timeout = 300
    warmup_time = 0          # setup already warmed up
    params = (THREADS,)
    param_names = ["threads"]

    def setup(self, threads):
        self._old_threads = use_threads(threads)
        self.X, self.y = make_sparse(SPARSE_SIZES[0], SPARSE_SIZES[-1], SPARSE_SAMPLES, SPARSE_NNZ)
        self.model = make_model(SPARSE_SIZES)
        self.opt = fastbp.Adam(lr=1e-3)
        self.model.fit(self.X[:SPARSE_BATCH], self.y[:SPARSE_BATCH], epochs=1, batch_size=SPARSE_BATCH,
                       optimizer=self.opt, verbose=0)
        self.model.predict(self.X[:SPARSE_BATCH])

    def teardown(self, threads):
        if getattr(self, "_old_threads", None) is not None:
            fastbp.set_num_threads(self._old_threads)

    def _epoch(self):
        self.model.fit(self.X, self.y, epochs=1, batch_size=SPARSE_BATCH, optimizer=self.opt, verbose=0)

    def time_fit_epoch(self, threads):
        self._epoch()

    def peakmem_fit_epoch(self, threads):
        self._epoch()

    def time_predict(self, threads):
        self.model.predict(self.X)
