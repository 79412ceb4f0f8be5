"""The newer layers on the mnist network (784-256-128-10, batch 256, float32): gelu with layer
norm or batch norm and dropout 0.1 on every hidden layer, against the plain relu net of the same
sizes -- the peer comparison's "modern" workloads and what they cost over the plain one.

fit: one epoch of LAYER_SAMPLES rows; train_step: one update on one minibatch; predict: a
minibatch and all the rows. Every variant trains with the modern workloads' optimizer (AdamW
under a warm-up cosine schedule), so the variants differ only in their layers. Kernels are
compiled beforehand (``setup_cache``), and setup runs one warm-up minibatch, one train_step and
one predict, so compilation, the cache load and buffer allocation stay out of ``time_*``.
"""
import fastbp

from .common import (LAYER_PREDICT_ROWS, LAYER_SAMPLES, LAYER_VARIANTS, THREADS, WORKLOADS, make_data, make_model,
                     modern_optimizer, precompile_layers, use_threads, warm_up)


class _Layers:
    """Setup/teardown shared by the layer suites: the variant's model, warmed up."""
    setup_cache = precompile_layers
    timeout = 300
    warmup_time = 0          # setup already warmed up
    params = (list(LAYER_VARIANTS), THREADS)
    param_names = ["layers", "threads"]

    def setup(self, layers, threads, *rest):
        self._old_threads = use_threads(threads)
        sizes, self.batch = WORKLOADS["mnist"][0], WORKLOADS["mnist"][1]
        self.X, self.y = make_data(sizes[0], sizes[-1], LAYER_SAMPLES)
        self.model = make_model(sizes, **LAYER_VARIANTS[layers])
        self.opt = modern_optimizer()
        warm_up(self.model, self.X, self.y, self.batch, self.opt)
        self.Xb, self.yb = self.X[:self.batch], self.y[:self.batch]
        self.model.train_step(self.Xb, self.yb, self.opt)

    def teardown(self, *params):
        if getattr(self, "_old_threads", None) is not None:
            fastbp.set_num_threads(self._old_threads)


class FitLayers(_Layers):
    """One fit epoch (LAYER_SAMPLES rows in minibatches of 256)."""

    def _epoch(self):
        self.model.fit(self.X, self.y, epochs=1, batch_size=self.batch, optimizer=self.opt, verbose=0)

    def time_fit_epoch(self, layers, threads):
        self._epoch()

    def peakmem_fit_epoch(self, layers, threads):
        self._epoch()


class TrainStepLayers(_Layers):
    """One ``train_step`` on a minibatch of 256 rows (forward, backward, the update)."""

    def time_train_step(self, layers, threads):
        self.model.train_step(self.Xb, self.yb, self.opt)


class PredictLayers(_Layers):
    """``predict`` on a minibatch and on all LAYER_SAMPLES rows (batch norm from its running
    statistics, no dropout)."""
    params = (list(LAYER_VARIANTS), LAYER_PREDICT_ROWS, THREADS)
    param_names = ["layers", "rows", "threads"]

    def setup(self, layers, rows, threads):
        super().setup(layers, threads)
        self.Xp = self.X[:rows]
        self.model.predict(self.Xp)

    def time_predict(self, layers, rows, threads):
        self.model.predict(self.Xp)

    def peakmem_predict(self, layers, rows, threads):
        self.model.predict(self.Xp)
