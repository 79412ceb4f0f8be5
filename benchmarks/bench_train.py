"""fit: one epoch per call, on the reference workloads and over batch size and layer width.

Kernels are compiled beforehand (``setup_cache``), and setup builds the model and runs one
warm-up minibatch, so compilation, the cache load and buffer allocation stay out of ``time_*``;
compile time has its own suite (bench_compile). asv re-runs setup before every timed call, so every epoch starts from a
freshly initialized model.
"""
import fastbp

from .common import (SWEEP_BATCH, SWEEP_BATCH_SIZES, SWEEP_SAMPLES, SWEEP_WIDTHS, THREADS, WORKLOADS,
                     make_data, make_model, precompile, use_threads, warm_up)


class _Fit:
    """Setup/teardown shared by the fit suites: subclasses set sizes, batch, n and lr in _config."""
    setup_cache = precompile
    timeout = 300
    warmup_time = 0          # setup already warmed up; an extra untimed epoch would only cost time

    def _config(self, *params):
        raise NotImplementedError

    def setup(self, *params):
        sizes, self.batch, n, lr, threads = self._config(*params)
        self._old_threads = use_threads(threads)
        self.X, self.y = make_data(sizes[0], sizes[-1], n)
        self.model = make_model(sizes)
        self.opt = fastbp.Adam(lr=lr)
        warm_up(self.model, self.X, self.y, self.batch, self.opt)

    def teardown(self, *params):
        if getattr(self, "_old_threads", None) is not None:
            fastbp.set_num_threads(self._old_threads)

    def _epoch(self):
        self.model.fit(self.X, self.y, epochs=1, batch_size=self.batch, optimizer=self.opt, verbose=0)


class FitWorkload(_Fit):
    """One epoch of the tiny, mnist and wide workloads (as in the peer comparison)."""
    params = (list(WORKLOADS), THREADS)
    param_names = ["workload", "threads"]

    def _config(self, workload, threads):
        sizes, batch, n, lr = WORKLOADS[workload]
        return sizes, batch, n, lr, threads

    def time_fit_epoch(self, workload, threads):
        self._epoch()

    def peakmem_fit_epoch(self, workload, threads):
        self._epoch()


class FitBatchSize(_Fit):
    """The mnist network (784-256-128-10) over 8192 samples at several batch sizes."""
    params = (SWEEP_BATCH_SIZES, THREADS)
    param_names = ["batch_size", "threads"]

    def _config(self, batch_size, threads):
        return WORKLOADS["mnist"][0], batch_size, SWEEP_SAMPLES, 1e-3, threads

    def time_fit_epoch(self, batch_size, threads):
        self._epoch()

    def peakmem_fit_epoch(self, batch_size, threads):
        self._epoch()


class FitWidth(_Fit):
    """One hidden layer of ``width`` units (784-width-10), batch 256, 8192 samples."""
    params = (SWEEP_WIDTHS, THREADS)
    param_names = ["width", "threads"]

    def _config(self, width, threads):
        return [784, width, 10], SWEEP_BATCH, SWEEP_SAMPLES, 1e-3, threads

    def time_fit_epoch(self, width, threads):
        self._epoch()
