"""One optimizer update over a flat float32 buffer of about a million parameters (laid out as
OPTIMIZER_SIZES, whose W and b are LAMB's tensors): every optimizer at its default arguments, and
AdamW under each learning-rate schedule (evaluated inside the compiled update).

Setup makes one update first, so compilation and the allocation of the optimizer's state stay out
of ``time_*``; every timed call is a further update of the same buffers. ``peakmem_step`` shows the
memory of the state buffers (none for SGD, two for Adam and LAMB).
"""
import fastbp
from fastbp import schedules

from .common import OPTIMIZER_SIZES, THREADS, make_flat, precompile_optimizers, use_threads

# AdamW's rate under each schedule; none of them ends within any number of timed calls.
SCHEDULES = {
    "constant": lambda: 1e-3,
    "CosineDecay": lambda: schedules.CosineDecay(0.0, 10_000, warmup_target=1e-3, warmup_steps=100),
    "ExponentialDecay": lambda: schedules.ExponentialDecay(1e-3, decay_steps=1000, decay_rate=0.5),
    "PiecewiseConstantDecay": lambda: schedules.PiecewiseConstantDecay([1000, 5000], [1e-3, 3e-4, 1e-4]),
    "OneCycle": lambda: schedules.OneCycle(max_lr=1e-3, total_steps=10 ** 9),
}


class _Step:
    setup_cache = precompile_optimizers
    timeout = 120

    def _setup(self, optimizer, threads):
        self._old_threads = use_threads(threads)
        self.params, self.grads, self.segments = make_flat(OPTIMIZER_SIZES)
        self.opt = optimizer
        self.opt.step(self.params, self.grads, self.segments)

    def teardown(self, *params):
        if getattr(self, "_old_threads", None) is not None:
            fastbp.set_num_threads(self._old_threads)


class OptimizerStep(_Step):
    """One update of each optimizer (``opt.step`` with the network's tensors as segments)."""
    params = (list(fastbp.optim.OPTIMIZERS), THREADS)
    param_names = ["optimizer", "threads"]

    def setup(self, optimizer, threads):
        self._setup(fastbp.optim.get_optimizer(optimizer), threads)

    def time_step(self, optimizer, threads):
        self.opt.step(self.params, self.grads, self.segments)

    def peakmem_step(self, optimizer, threads):
        self.opt.step(self.params, self.grads, self.segments)


class ScheduledStep(_Step):
    """One AdamW update under each learning-rate schedule (the rate is computed in the update)."""
    params = (list(SCHEDULES), THREADS)
    param_names = ["schedule", "threads"]

    def setup(self, schedule, threads):
        self._setup(fastbp.AdamW(lr=SCHEDULES[schedule]()), threads)

    def time_step(self, schedule, threads):
        self.opt.step(self.params, self.grads, self.segments)
