"""Optimizers: each owns its state buffers (flat, in the parameter layout) and its step count.

``opt.step(params, grads)`` works on any flat float array, model or not; ``MLP.fit`` runs the
same update inside the compiled minibatch loop. The arithmetic matches torch.optim: SGD
``p -= lr*g``; Momentum ``v = mu*v + g; p -= lr*v`` (Nesterov: ``p -= lr*(g + mu*v)``); Adam with
bias-corrected moments; RMSprop and Adagrad; ``weight_decay`` adds ``wd*p`` to the gradient (L2),
AdamW decays the weights directly (``p *= 1 - lr*wd``). Lion and LAMB follow optax (their
``weight_decay`` is added to the update, decoupled from the gradient; LAMB scales each tensor's
update by its trust ratio). ``clip_norm`` rescales the whole gradient to at most that global L2
norm first (torch.nn.utils.clip_grad_norm_).

Every ``lr`` is a number or a schedule (fastbp.schedules), evaluated per update in the compiled loop.
"""

import math

import numpy as np

from . import threads
from .kernels import optimizers as K
from .kernels.args import Opt
from .kernels.parts import PARALLEL_MIN_PARAMS
from .kernels.registry import Entry, Registry
from .schedules import Schedule, deserialize, serialize
from .validation import (_describe, check_bool, check_flat_pair, check_int, check_nonnegative, check_positive,
                         check_unit_interval)

_CONSTANT_RATE = np.zeros(1)     # kernels.schedules' code 0: the rate is hyper[H_LR]


def _check_lr(lr):
    """(constant rate, schedule), one of them None, from a number > 0, a Schedule, or the dict
    ``schedules.serialize`` gives (as ``config()`` stores it)."""
    if isinstance(lr, Schedule):
        return None, lr
    if isinstance(lr, dict):
        return None, deserialize(lr, "lr")
    if isinstance(lr, (str, bytes)) or callable(lr):
        raise TypeError(f"lr: expected a number > 0 or a fastbp.schedules schedule, got {_describe(lr)}")
    return check_positive("lr", lr), None


class Optimizer:
    """Base class. Subclasses set ``code`` (the kernel's) and ``n_states`` and extend ``hyper``.

    Attributes
    ----------
    lr : float
        Learning rate of the next update (under a schedule, its rate for update ``iterations``;
        once a OneCycle schedule has run all its updates, the rate of its last one). Setting a
        number changes a constant rate; an optimizer with a schedule refuses it (use
        ``set_learning_rate``).
    schedule : Schedule or None
        The learning-rate schedule, or None for a constant rate.
    iterations : int
        Updates applied so far (Adam's t; a schedule's update index).
    state : ndarray or None
        The state buffers, shape (n_states, n_params), in the params layout (velocity; Adam's
        m and v); None before the first update.
    """

    code = None
    n_states = 0

    def __init__(self, lr, weight_decay=0.0, clip_norm=None):
        self._lr, self._schedule = _check_lr(lr)
        self.weight_decay = check_nonnegative("weight_decay", weight_decay)
        self.clip_norm = None if clip_norm is None else check_positive("clip_norm", clip_norm)
        self.iterations = 0
        self.state = None

    # -- learning rate -----------------------------------------------------------------------
    @property
    def schedule(self):
        """The learning-rate schedule (fastbp.schedules), or None for a constant rate."""
        return self._schedule

    @property
    def lr(self):
        """The learning rate of the next update (see the class docstring)."""
        if self._schedule is None:
            return self._lr
        last = self._schedule.last_update
        try:
            return self._schedule(self.iterations if last is None else min(self.iterations, last))
        except ValueError:
            # a growing ExponentialDecay past the float range: the rate the kernel would use
            return math.inf

    @lr.setter
    def lr(self, value):
        if self._schedule is not None:
            raise ValueError(f"lr: this {type(self).__name__} takes its rate from {self._schedule!r}, which "
                             f"sets every update's rate; a fixed rate ({value!r}) cannot replace it here "
                             "(set_learning_rate replaces the schedule)")
        self._lr = check_positive("lr", value)

    def set_learning_rate(self, lr):
        """Replace the learning rate, constant or scheduled, by ``lr``.

        Parameters
        ----------
        lr : float, Schedule or dict
            A number > 0, a schedule, or ``schedules.serialize``'s description of one.
        """
        self._lr, self._schedule = _check_lr(lr)

    def check_updates(self, n):
        """Raise ValueError, changing nothing, if the schedule has no rate for one of the next
        ``n`` updates (OneCycle past its total_steps). Call before running a batch of updates.

        Parameters
        ----------
        n : int
            How many updates are about to run.
        """
        n = check_int("n", n, 0)
        if self._schedule is not None:
            self._schedule.check_updates(self.iterations, n)

    # -- state -------------------------------------------------------------------------------
    def hyper(self):
        """The hyperparameters as the kernels read them (float64, see kernels.optimizers);
        ``hyper[H_LR]`` is the rate of the next update."""
        h = np.zeros(K.N_HYPER)
        h[K.H_LR] = self.lr
        h[K.H_WD] = self.weight_decay
        return h

    def sched(self):
        """The schedule as the kernels read it (kernels.schedules): [0] for a constant rate."""
        return _CONSTANT_RATE.copy() if self._schedule is None else self._schedule.encode()

    def check_params(self, params):
        """Raise ValueError if this optimizer holds state for params of another size or dtype."""
        s = self.state
        if s is not None and (s.shape[1] != params.shape[0] or s.dtype != params.dtype):
            raise ValueError(
                f"{type(self).__name__}: this optimizer holds state for {s.shape[1]} {s.dtype} parameters "
                f"but got params of size {params.shape[0]} and dtype {params.dtype}; use a new optimizer "
                "(or call reset()) for a different model")

    def state_for(self, params):
        """The state buffers for ``params`` (n_states, n_params), created at first use."""
        self.check_params(params)
        if self.state is None:
            self.state = self._initial_state(params)
        return self.state

    def _initial_state(self, params):
        return np.zeros((self.n_states, params.shape[0]), params.dtype)

    @staticmethod
    def check_segments(params, segments):
        """``segments`` as the kernels take it: int64 [0, end_0, ..., len(params)], the boundaries
        of the parameter tensors (LAMB's trust ratio is per tensor); None means one tensor."""
        n = params.shape[0]
        if segments is None:
            return np.array([0, n], np.int64)
        if isinstance(segments, (str, bytes)) or not hasattr(segments, "__len__"):
            raise TypeError(f"segments: expected a sequence of ints [0, ..., {n}], got {_describe(segments)}")
        seg = np.asarray(segments)
        if seg.ndim != 1 or seg.shape[0] < 2 or seg.dtype.kind not in "iu":
            raise ValueError(f"segments: expected a 1-D sequence of at least 2 ints [0, ..., {n}], got "
                             f"{_describe(seg)}")
        seg = np.ascontiguousarray(seg, np.int64).copy()
        if seg[0] != 0 or seg[-1] != n or (np.diff(seg) < 0).any():
            raise ValueError(f"segments: expected non-decreasing ints from 0 to len(params) = {n}, got "
                             f"{seg.tolist() if seg.size <= 10 else f'{seg[:3].tolist()} ... {seg[-3:].tolist()}'}")
        return seg

    def kernel_args(self, params, segments=None):
        """An ``Opt`` for the kernels; they count updates in its ``step`` array, which the caller
        copies back into ``iterations``.

        Parameters
        ----------
        params : ndarray
            The flat parameters the kernels will update.
        segments : sequence of int, optional
            The tensor boundaries in ``params`` (see ``check_segments``); None: one tensor.
        """
        seg = self.check_segments(params, segments)
        return Opt(self.code, self.hyper(), self.state_for(params), np.array([self.iterations], np.int64),
                   float(self.clip_norm or 0.0), seg, self.sched())

    def reset(self):
        """Forget the state (moments, velocity, step count)."""
        self.state = None
        self.iterations = 0

    def state_arrays(self):
        """The state buffers as {'s0': ..., 's1': ...}; empty before the first step."""
        return {} if self.state is None else {f"s{i}": s for i, s in enumerate(self.state)}

    def config(self):
        """Constructor arguments, for saving and repr (JSON-able: a schedule as
        ``schedules.serialize`` gives it, which ``lr`` accepts back)."""
        raise NotImplementedError

    def _lr_config(self):
        return self._lr if self._schedule is None else serialize(self._schedule)

    def __repr__(self):
        c = self.config()
        if self._schedule is not None:
            c["lr"] = self._schedule
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in c.items())})"

    # -- update ------------------------------------------------------------------------------
    def step(self, params, grads, segments=None):
        """Update ``params`` in place from ``grads`` (flat float arrays of one shape and dtype).

        Parameters
        ----------
        params, grads : ndarray
            Flat float32 or float64 arrays of one shape and dtype.
        segments : sequence of int, optional
            Where each parameter tensor ends (see ``check_segments``); by default the whole
            array is one tensor (it matters to LAMB's per-tensor trust ratio only).

        Returns
        -------
        ndarray
            ``params``.
        """
        check_flat_pair(params, grads)
        seg = self.check_segments(params, segments)
        self.check_params(params)
        self.check_updates(1)
        opt = self.kernel_args(params, seg)
        # chunks fixed by the buffer's size: the same bits on any number of threads
        split = threads.partition_cpus() > 1 and params.shape[0] >= PARALLEL_MIN_PARAMS
        with threads.using(threads.get_num_threads()):
            K.apply_update(params, grads, opt, threads.partition_cpus() if split else None, K.variant(opt))
        self.iterations = int(opt.step[0])
        return params


class SGD(Optimizer):
    """Plain gradient descent: ``p -= lr * g``."""

    code = K.SGD

    def __init__(self, lr=0.01, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, weight_decay, clip_norm)

    def config(self):
        return dict(lr=self._lr_config(), weight_decay=self.weight_decay, clip_norm=self.clip_norm)


class Momentum(Optimizer):
    """Heavy-ball momentum as torch.optim.SGD(momentum=mu): ``v = mu*v + g; p -= lr*v``."""

    code = K.MOMENTUM
    n_states = 1

    def __init__(self, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, weight_decay, clip_norm)
        self.momentum = check_unit_interval("momentum", momentum, open_right=True)
        self.nesterov = bool(nesterov)

    def hyper(self):
        h = super().hyper()
        h[K.H_MOMENTUM] = self.momentum
        h[K.H_NESTEROV] = float(self.nesterov)
        return h

    def config(self):
        return dict(lr=self._lr_config(), momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay, clip_norm=self.clip_norm)


class Nesterov(Momentum):
    """Nesterov momentum as torch.optim.SGD(momentum=mu, nesterov=True)."""

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, momentum, True, weight_decay, clip_norm)

    def config(self):
        c = super().config()
        del c["nesterov"]
        return c


class Adam(Optimizer):
    """Adam exactly as torch.optim.Adam (bias-corrected m and v)."""

    code = K.ADAM
    n_states = 2
    decoupled = False

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, weight_decay, clip_norm)
        self.beta1 = check_unit_interval("beta1", beta1, open_right=True)
        self.beta2 = check_unit_interval("beta2", beta2, open_right=True)
        self.eps = check_nonnegative("eps", eps)

    def hyper(self):
        h = super().hyper()
        h[K.H_BETA1] = self.beta1
        h[K.H_BETA2] = self.beta2
        h[K.H_EPS] = self.eps
        h[K.H_DECOUPLED] = float(self.decoupled)
        return h

    def config(self):
        return dict(lr=self._lr_config(), beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                    weight_decay=self.weight_decay, clip_norm=self.clip_norm)


class AdamW(Adam):
    """Adam with decoupled weight decay, as torch.optim.AdamW: ``p *= 1 - lr*wd`` then Adam."""

    decoupled = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm)


class RMSprop(Optimizer):
    """RMSprop as torch.optim.RMSprop.

    ``s = alpha*s + (1 - alpha)*g**2``; the denominator is ``sqrt(s) + eps`` or, ``centered``,
    ``sqrt(s - ga**2) + eps`` with ``ga`` the running mean of g; ``p -= lr*g/denominator``, or
    with momentum ``buf = momentum*buf + g/denominator; p -= lr*buf``. ``weight_decay`` adds
    ``weight_decay*p`` to the gradient. The state is ``s``, then ``ga`` (centered), then
    ``buf`` (momentum > 0).

    Parameters
    ----------
    lr : float or Schedule
        Learning rate (> 0), or a schedule of rates.
    alpha : float
        Smoothing constant of the squared-gradient average, in [0, 1).
    eps : float
        Added to the denominator (>= 0).
    momentum : float
        Momentum factor, in [0, 1); 0 for none.
    centered : bool
        Whether to divide by the estimated variance of the gradient rather than its second moment.
    weight_decay : float
        L2 penalty added to the gradient (>= 0).
    clip_norm : float or None
        Bound on the global gradient norm, or None.
    """

    code = K.RMSPROP

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0,
                 clip_norm=None):
        super().__init__(lr, weight_decay, clip_norm)
        self.alpha = check_unit_interval("alpha", alpha, open_right=True)
        self.eps = check_nonnegative("eps", eps)
        self.momentum = check_unit_interval("momentum", momentum, open_right=True)
        self.centered = check_bool("centered", centered)

    @property
    def n_states(self):
        return 1 + int(self.centered) + int(self.momentum > 0)

    def hyper(self):
        h = super().hyper()
        h[K.H_ALPHA] = self.alpha
        h[K.H_EPS] = self.eps
        h[K.H_MOMENTUM] = self.momentum
        h[K.H_CENTERED] = float(self.centered)
        return h

    def config(self):
        return dict(lr=self._lr_config(), alpha=self.alpha, eps=self.eps, momentum=self.momentum,
                    centered=self.centered, weight_decay=self.weight_decay, clip_norm=self.clip_norm)


class Adagrad(Optimizer):
    """Adagrad as torch.optim.Adagrad (without lr_decay).

    ``sum += g**2; p -= lr * g / (sqrt(sum) + eps)``, ``sum`` starting at
    ``initial_accumulator_value``; ``weight_decay`` adds ``weight_decay*p`` to the gradient.

    Parameters
    ----------
    lr : float or Schedule
        Learning rate (> 0), or a schedule of rates.
    eps : float
        Added to the denominator (>= 0).
    initial_accumulator_value : float
        The starting value of every element's sum of squared gradients (>= 0).
    weight_decay : float
        L2 penalty added to the gradient (>= 0).
    clip_norm : float or None
        Bound on the global gradient norm, or None.
    """

    code = K.ADAGRAD
    n_states = 1

    def __init__(self, lr=1e-2, eps=1e-10, initial_accumulator_value=0.0, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, weight_decay, clip_norm)
        self.eps = check_nonnegative("eps", eps)
        self.initial_accumulator_value = check_nonnegative("initial_accumulator_value", initial_accumulator_value)

    def _initial_state(self, params):
        return np.full((1, params.shape[0]), self.initial_accumulator_value, params.dtype)

    def hyper(self):
        h = super().hyper()
        h[K.H_EPS] = self.eps
        return h

    def config(self):
        return dict(lr=self._lr_config(), eps=self.eps, initial_accumulator_value=self.initial_accumulator_value,
                    weight_decay=self.weight_decay, clip_norm=self.clip_norm)


class Lion(Optimizer):
    """Lion as optax.lion.

    ``u = sign((1 - beta1)*g + beta1*m) + weight_decay*p; m = (1 - beta2)*g + beta2*m;
    p -= lr*u`` (sign(0) = 0). The decay is decoupled from the gradient, as in optax, and
    applies to every parameter.

    Parameters
    ----------
    lr : float or Schedule
        Learning rate (> 0), or a schedule of rates. Every element moves by about lr per
        update (a sign), so Lion takes smaller rates than Adam.
    beta1 : float
        Interpolation between the gradient and the momentum for the sign, in [0, 1).
    beta2 : float
        Decay of the momentum, in [0, 1).
    weight_decay : float
        Decoupled weight decay (>= 0).
    clip_norm : float or None
        Bound on the global gradient norm, or None.
    """

    code = K.LION
    n_states = 1

    def __init__(self, lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, weight_decay, clip_norm)
        self.beta1 = check_unit_interval("beta1", beta1, open_right=True)
        self.beta2 = check_unit_interval("beta2", beta2, open_right=True)

    def hyper(self):
        h = super().hyper()
        h[K.H_BETA1] = self.beta1
        h[K.H_BETA2] = self.beta2
        return h

    def config(self):
        return dict(lr=self._lr_config(), beta1=self.beta1, beta2=self.beta2, weight_decay=self.weight_decay,
                    clip_norm=self.clip_norm)


class LAMB(Optimizer):
    """LAMB as optax.lamb: Adam's step, plus decoupled weight decay, scaled per tensor.

    ``u = (m/(1 - beta1**t)) / (sqrt(v/(1 - beta2**t)) + eps) + weight_decay*p``, then
    ``p -= lr * (||p|| / ||u||) * u`` with both norms over the tensor (a ratio of 1 where either
    is 0). In ``fit`` and ``train_step`` each W, b, gamma and beta is a tensor; ``step`` on a
    bare array takes the whole array as one unless given ``segments``.

    Parameters
    ----------
    lr : float or Schedule
        Learning rate (> 0), or a schedule of rates.
    beta1, beta2 : float
        Decay of the first and second moment estimates, in [0, 1).
    eps : float
        Added to the denominator (>= 0).
    weight_decay : float
        Decoupled weight decay (>= 0), on every parameter.
    clip_norm : float or None
        Bound on the global gradient norm, or None.
    """

    code = K.LAMB
    n_states = 2

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, weight_decay, clip_norm)
        self.beta1 = check_unit_interval("beta1", beta1, open_right=True)
        self.beta2 = check_unit_interval("beta2", beta2, open_right=True)
        self.eps = check_nonnegative("eps", eps)

    def hyper(self):
        h = super().hyper()
        h[K.H_BETA1] = self.beta1
        h[K.H_BETA2] = self.beta2
        h[K.H_EPS] = self.eps
        return h

    def config(self):
        return dict(lr=self._lr_config(), beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                    weight_decay=self.weight_decay, clip_norm=self.clip_norm)


# optimizer="name": the class, built with its default arguments.
OPTIMIZERS = Registry("optimizer", [Entry(name, cls.code, cls=cls) for name, cls in (
    ("sgd", SGD), ("momentum", Momentum), ("nesterov", Nesterov), ("adam", Adam), ("adamw", AdamW),
    ("rmsprop", RMSprop), ("adagrad", Adagrad), ("lion", Lion), ("lamb", LAMB))])


def get_optimizer(optimizer):
    """An Optimizer from an instance or a name in OPTIMIZERS (with default arguments)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        return OPTIMIZERS.get(optimizer.lower()).cls()
    raise TypeError(f"optimizer: expected an Optimizer or one of {OPTIMIZERS.names()}, got {type(optimizer).__name__}")
