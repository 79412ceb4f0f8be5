"""predict on the mnist network: one row (latency), one minibatch, and the whole data set.

Throughput is rows / time. Setup runs one predict of the same size first, so compilation and
buffer allocation stay out of ``time_*``.
"""
import fastbp

from .common import PREDICT_ROWS, THREADS, WORKLOADS, make_data, make_model, precompile, use_threads


class Predict:
    params = (PREDICT_ROWS, THREADS)
    param_names = ["rows", "threads"]
    setup_cache = precompile
    timeout = 300

    def setup(self, rows, threads):
        self._old_threads = use_threads(threads)
        sizes, _, n, _ = WORKLOADS["mnist"]
        X, _ = make_data(sizes[0], sizes[-1], n)
        self.X = X[:rows]
        self.model = make_model(sizes)
        self.model.predict(self.X)

    def teardown(self, rows, threads):
        if getattr(self, "_old_threads", None) is not None:
            fastbp.set_num_threads(self._old_threads)

    def time_predict(self, rows, threads):
        self.model.predict(self.X)

    def peakmem_predict(self, rows, threads):
        self.model.predict(self.X)
