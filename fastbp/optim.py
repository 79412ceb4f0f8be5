"""Optimizers: each owns its state buffers (flat, in the parameter layout) and its step count.

``opt.step(params, grads)`` works on any flat float array, model or not; ``MLP.fit`` runs the
same update inside the compiled minibatch loop. The arithmetic matches torch.optim: SGD
``p -= lr*g``; Momentum ``v = mu*v + g; p -= lr*v`` (Nesterov: ``p -= lr*(g + mu*v)``); Adam with
bias-corrected moments; ``weight_decay`` adds ``wd*p`` to the gradient (L2), AdamW decays the
weights directly (``p *= 1 - lr*wd``); ``clip_norm`` rescales the whole gradient to at most
that global L2 norm first (torch.nn.utils.clip_grad_norm_).
"""

import numpy as np

from . import threads
from .kernels import optimizers as K
from .kernels.args import Opt
from .kernels.parts import PARALLEL_MIN_PARAMS
from .kernels.registry import Entry, Registry
from .validation import check_flat_pair, check_positive, check_nonnegative, check_unit_interval


class Optimizer:
    """Base class. Subclasses set ``code`` (the kernel's) and ``n_states`` and extend ``hyper``.

    Attributes
    ----------
    lr : float
        Learning rate of the next update.
    iterations : int
        Updates applied so far (Adam's t).
    state : ndarray or None
        The state buffers, shape (n_states, n_params), in the params layout (velocity; Adam's
        m and v); None before the first update.
    """

    code = None
    n_states = 0

    def __init__(self, lr, weight_decay=0.0, clip_norm=None):
        self.lr = check_positive("lr", lr)
        self.weight_decay = check_nonnegative("weight_decay", weight_decay)
        self.clip_norm = None if clip_norm is None else check_positive("clip_norm", clip_norm)
        self.iterations = 0
        self.state = None

    # -- state -------------------------------------------------------------------------------
    def hyper(self):
        """The hyperparameters as the kernels read them (float64, see kernels.optimizers)."""
        h = np.zeros(K.N_HYPER)
        h[K.H_LR] = self.lr
        h[K.H_WD] = self.weight_decay
        return h

    def check_params(self, params):
        """Raise ValueError if this optimizer holds state for params of another size or dtype."""
        s = self.state
        if s is not None and (s.shape[1] != params.shape[0] or s.dtype != params.dtype):
            raise ValueError(
                f"{type(self).__name__}: this optimizer holds state for {s.shape[1]} {s.dtype} parameters "
                f"but got params of size {params.shape[0]} and dtype {params.dtype}; use a new optimizer "
                "(or call reset()) for a different model")

    def state_for(self, params):
        """The state buffers for ``params`` (n_states, n_params), created (zeros) at first use."""
        self.check_params(params)
        if self.state is None:
            self.state = np.zeros((self.n_states, params.shape[0]), params.dtype)
        return self.state

    def kernel_args(self, params):
        """An ``Opt`` for the kernels; they count updates in its ``step`` array, which the caller
        copies back into ``iterations``."""
        return Opt(self.code, self.hyper(), self.state_for(params), np.array([self.iterations], np.int64),
                   float(self.clip_norm or 0.0))

    def reset(self):
        """Forget the state (moments, velocity, step count)."""
        self.state = None
        self.iterations = 0

    def state_arrays(self):
        """The state buffers as {'s0': ..., 's1': ...}; empty before the first step."""
        return {} if self.state is None else {f"s{i}": s for i, s in enumerate(self.state)}

    def config(self):
        """Constructor arguments, for saving and repr."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # -- update ------------------------------------------------------------------------------
    def step(self, params, grads):
        """Update ``params`` in place from ``grads`` (flat float arrays of one shape and dtype)."""
        check_flat_pair(params, grads)
        opt = self.kernel_args(params)
        # chunks fixed by the buffer's size: the same bits on any number of threads
        split = threads.partition_cpus() > 1 and params.shape[0] >= PARALLEL_MIN_PARAMS
        with threads.using(threads.get_num_threads()):
            K.apply_update(params, grads, opt, threads.partition_cpus() if split else None)
        self.iterations = int(opt.step[0])
        return params


class SGD(Optimizer):
    """Plain gradient descent: ``p -= lr * g``."""

    code = K.SGD

    def __init__(self, lr=0.01, weight_decay=0.0, clip_norm=None):
        super().__init__(lr, weight_decay, clip_norm)

    def config(self):
        return dict(lr=self.lr, weight_decay=self.weight_decay, clip_norm=self.clip_norm)


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
        return dict(lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
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
        return dict(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                    weight_decay=self.weight_decay, clip_norm=self.clip_norm)


class AdamW(Adam):
    """Adam with decoupled weight decay, as torch.optim.AdamW: ``p *= 1 - lr*wd`` then Adam."""

    decoupled = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, clip_norm)


# optimizer="name": the class, built with its default arguments.
OPTIMIZERS = Registry("optimizer", [Entry(name, cls.code, cls=cls) for name, cls in (
    ("sgd", SGD), ("momentum", Momentum), ("nesterov", Nesterov), ("adam", Adam), ("adamw", AdamW))])


def get_optimizer(optimizer):
    """An Optimizer from an instance or a name in OPTIMIZERS (with default arguments)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        return OPTIMIZERS.get(optimizer.lower()).cls()
    raise TypeError(f"optimizer: expected an Optimizer or one of {OPTIMIZERS.names()}, got {type(optimizer).__name__}")
