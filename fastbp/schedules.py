"""Learning-rate schedules: the rate of each update, evaluated inside the compiled training loop.

Pass one as any optimizer's ``lr``::

    opt = fastbp.Adam(lr=fastbp.schedules.CosineDecay(1e-3, decay_steps=10_000))

Update t (t = 0, 1, ...: the optimizer's update count before it) runs at ``schedule(t)``. The
compiled loop computes that rate itself for every minibatch (kernels.schedules, from the array
``encode()`` gives); calling the schedule from Python gives the same number, bit for bit, and is
what ``opt.lr`` reads. CosineDecay, ExponentialDecay and PiecewiseConstantDecay take Keras'
arguments and follow Keras' code; OneCycle is torch's ``OneCycleLR`` (cosine annealing, two
phases, learning rate only). A schedule is immutable; ``config()`` and ``serialize`` give JSON
that ``deserialize`` (and every optimizer's ``lr``) reads back.
"""
import dataclasses
import math

import numpy as np

from .kernels import schedules as K
from .validation import (check_bool, check_int, check_nonnegative, check_number, check_positive,
                         check_unit_interval)

__all__ = ["Schedule", "CosineDecay", "ExponentialDecay", "PiecewiseConstantDecay", "OneCycle",
           "serialize", "deserialize", "SCHEDULES"]


class Schedule:
    """Base class: a learning rate for each update t = 0, 1, 2, ...

    Subclasses are frozen dataclasses of their constructor arguments and define ``_rate(t)``
    (in the same order of operations as kernels.schedules) and ``encode()``.
    """

    def __call__(self, t):
        """The learning rate of update ``t`` (an int >= 0), as a float.

        Raises
        ------
        ValueError
            If ``t`` is past the schedule's end (OneCycle: ``t >= total_steps``).
        """
        t = check_int("t", t, 0)
        self.check_updates(t, 1)
        return float(self._rate(t))

    @property
    def last_update(self):
        """The last update the schedule has a rate for, or None when it has no end."""
        return None

    def check_updates(self, first, n):
        """Raise ValueError unless updates ``first`` .. ``first + n - 1`` all have a rate.

        Parameters
        ----------
        first : int
            The first update (the optimizer's update count).
        n : int
            How many updates are about to run.
        """
        return None

    def config(self):
        """The constructor arguments (JSON-able)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def encode(self):
        """The float64 array the compiled loops read (see kernels.schedules)."""
        raise NotImplementedError


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def _cosine_decay(s, decay_steps, decay_from, alpha):
    completed = s / decay_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * completed))
    return decay_from * ((1.0 - alpha) * cosine + alpha)


def _cosine_anneal(start, end, pct):
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


@dataclasses.dataclass(frozen=True)
class CosineDecay(Schedule):
    """Cosine decay with optional linear warm-up: ``keras.optimizers.schedules.CosineDecay``.

    Without ``warmup_target``: ``initial_learning_rate * ((1 - alpha) * c + alpha)`` with
    ``c = 0.5 * (1 + cos(pi * min(t, decay_steps) / decay_steps))``; ``warmup_steps`` is then
    ignored, as in Keras. With it: a linear ramp from ``initial_learning_rate`` to
    ``warmup_target`` over the first ``warmup_steps`` updates, then the cosine decay from
    ``warmup_target`` over ``decay_steps`` more. After the decay the rate stays at its end
    value (``alpha`` times the starting rate).

    Parameters
    ----------
    initial_learning_rate : float
        The rate of update 0 (>= 0; > 0 without ``warmup_target``).
    decay_steps : int
        Updates the cosine decay takes (>= 1).
    alpha : float
        The final rate as a fraction of the rate the decay starts from, in [0, 1].
    warmup_target : float or None
        The rate at the end of the warm-up (> 0), or None for no warm-up.
    warmup_steps : int
        Updates of the warm-up (>= 0).
    """

    initial_learning_rate: float
    decay_steps: int
    alpha: float = 0.0
    warmup_target: float = None
    warmup_steps: int = 0

    def __post_init__(self):
        initial = check_nonnegative("initial_learning_rate", self.initial_learning_rate)
        decay_steps = check_int("decay_steps", self.decay_steps, 1)
        alpha = check_unit_interval("alpha", self.alpha)
        target = self.warmup_target
        if target is None:
            if initial == 0:
                raise ValueError("initial_learning_rate: expected a number > 0 without warmup_target "
                                 "(every rate would be 0), got 0.0")
        else:
            target = check_positive("warmup_target", target)
        warmup_steps = check_int("warmup_steps", self.warmup_steps, 0)
        for name, value in (("initial_learning_rate", initial), ("decay_steps", decay_steps), ("alpha", alpha),
                            ("warmup_target", target), ("warmup_steps", warmup_steps)):
            object.__setattr__(self, name, value)

    def _rate(self, t):
        s = float(t)
        decay_steps = float(self.decay_steps)
        if self.warmup_target is None:
            return _cosine_decay(min(s, decay_steps), decay_steps, self.initial_learning_rate, self.alpha)
        warmup = float(self.warmup_steps)
        s = min(s, decay_steps + warmup)
        if s < warmup:
            return (self.warmup_target - self.initial_learning_rate) * (s / warmup) + self.initial_learning_rate
        return _cosine_decay(s - warmup, decay_steps, self.warmup_target, self.alpha)

    def encode(self):
        has_warmup = self.warmup_target is not None
        return np.array([K.COSINE, self.initial_learning_rate, self.decay_steps, self.alpha,
                         self.warmup_target if has_warmup else 0.0, self.warmup_steps, float(has_warmup)])


@dataclasses.dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """Exponential decay: ``keras.optimizers.schedules.ExponentialDecay``.

    ``initial_learning_rate * decay_rate ** (t / decay_steps)``, the exponent rounded down with
    ``staircase=True`` (the rate then changes every ``decay_steps`` updates).

    Parameters
    ----------
    initial_learning_rate : float
        The rate of update 0 (> 0).
    decay_steps : int
        Updates per factor of ``decay_rate`` (>= 1).
    decay_rate : float
        The factor (> 0; below 1 decays).
    staircase : bool
        Whether the rate changes in steps rather than every update.
    """

    initial_learning_rate: float
    decay_steps: int
    decay_rate: float
    staircase: bool = False

    def __post_init__(self):
        values = {"initial_learning_rate": check_positive("initial_learning_rate", self.initial_learning_rate),
                  "decay_steps": check_int("decay_steps", self.decay_steps, 1),
                  "decay_rate": check_positive("decay_rate", self.decay_rate),
                  "staircase": check_bool("staircase", self.staircase)}
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def check_updates(self, first, n):
        first = check_int("first", first, 0)
        n = check_int("n", n, 0)
        # a growing rate (decay_rate > 1) is largest at the last update
        if n > 0 and self.decay_rate > 1 and not math.isfinite(self._rate(first + n - 1)):
            raise ValueError(f"lr: {self!r} grows past the largest float by update {first + n - 1} ({first} "
                             f"updates made so far, {n} more about to run); nothing was changed")

    def _rate(self, t):
        p = float(t) / float(self.decay_steps)
        if self.staircase:
            p = float(math.floor(p))
        try:
            return self.initial_learning_rate * self.decay_rate ** p
        except OverflowError:           # the kernel's pow gives inf there
            return math.inf

    def encode(self):
        return np.array([K.EXPONENTIAL, self.initial_learning_rate, self.decay_steps, self.decay_rate,
                         float(self.staircase)])


@dataclasses.dataclass(frozen=True)
class PiecewiseConstantDecay(Schedule):
    """A constant rate per range of updates: ``keras.optimizers.schedules.PiecewiseConstantDecay``.

    ``values[0]`` while ``t <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < t <= boundaries[i]``, ``values[-1]`` once ``t > boundaries[-1]``.

    Parameters
    ----------
    boundaries : sequence of numbers
        Strictly increasing update counts.
    values : sequence of numbers
        The rates (>= 0, not all 0), one more than ``boundaries``.
    """

    boundaries: tuple
    values: tuple

    def __post_init__(self):
        boundaries = _numbers("boundaries", self.boundaries)
        values = _numbers("values", self.values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values: expected one more value than boundaries ({len(boundaries) + 1}), "
                             f"got {len(values)}")
        for i in range(1, len(boundaries)):
            if not boundaries[i] > boundaries[i - 1]:
                raise ValueError(f"boundaries: expected strictly increasing numbers, got {list(boundaries)} "
                                 f"(boundaries[{i}] = {boundaries[i]} after {boundaries[i - 1]})")
        for i, v in enumerate(values):
            if v < 0:
                raise ValueError(f"values[{i}]: expected a learning rate >= 0, got {v}")
        if not any(values):
            raise ValueError(f"values: expected some rate > 0, got {list(values)}")
        object.__setattr__(self, "boundaries", boundaries)
        object.__setattr__(self, "values", values)

    def _rate(self, t):
        s = float(t)
        for b, v in zip(self.boundaries, self.values):
            if s <= b:
                return v
        return self.values[-1]

    def encode(self):
        return np.array([K.PIECEWISE, len(self.boundaries), *self.boundaries, *self.values], np.float64)


def _numbers(name, seq):
    """A tuple of finite floats from a sequence of real numbers (a 1-D array works too)."""
    if isinstance(seq, (str, bytes, dict)) or not hasattr(seq, "__len__"):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(seq).__name__}")
    if isinstance(seq, np.ndarray) and seq.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got an array of shape {seq.shape}")
    return tuple(check_number(f"{name}[{i}]", v) for i, v in enumerate(seq))


@dataclasses.dataclass(frozen=True)
class OneCycle(Schedule):
    """The one-cycle policy: ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing, two
    phases), learning rate only.

    From ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start * total_steps``
    updates, then down to ``max_lr / div_factor / final_div_factor`` at update
    ``total_steps - 1``, each phase a half cosine. Update ``total_steps`` and later have no
    rate: an optimizer refuses to make them (a ValueError before the call that would, with
    nothing changed).

    Parameters
    ----------
    max_lr : float
        The peak rate (> 0).
    total_steps : int
        Updates in the cycle (>= 1).
    pct_start : float
        Fraction of the updates spent rising, in [0, 1]; ``pct_start * total_steps`` must not
        be 1 (torch's first phase would then have no length).
    div_factor : float
        The starting rate is ``max_lr / div_factor`` (> 0).
    final_div_factor : float
        The final rate is the starting rate divided by this (> 0).
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self):
        values = {"max_lr": check_positive("max_lr", self.max_lr),
                  "total_steps": check_int("total_steps", self.total_steps, 1),
                  "pct_start": check_unit_interval("pct_start", self.pct_start),
                  "div_factor": check_positive("div_factor", self.div_factor),
                  "final_div_factor": check_positive("final_div_factor", self.final_div_factor)}
        if float(values["pct_start"] * values["total_steps"]) - 1 == 0.0:
            raise ValueError(f"pct_start: pct_start * total_steps = {values['pct_start']} * {values['total_steps']} "
                             "= 1 leaves the rising phase no length (torch divides 0 by 0 there); change "
                             "pct_start or total_steps")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def initial_lr(self):
        """The rate of update 0: ``max_lr / div_factor``."""
        return self.max_lr / self.div_factor

    @property
    def min_lr(self):
        """The rate of the last update: ``initial_lr / final_div_factor``."""
        return self.initial_lr / self.final_div_factor

    @property
    def last_update(self):
        return self.total_steps - 1

    def _phase1_end(self):
        return float(self.pct_start * self.total_steps) - 1

    def check_updates(self, first, n):
        first = check_int("first", first, 0)
        n = check_int("n", n, 0)
        if n > 0 and first + n > self.total_steps:
            bad = max(first, self.total_steps)
            raise ValueError(
                f"lr: {self!r} gives rates to updates 0 to {self.total_steps - 1}, and update {bad} would pass "
                f"total_steps={self.total_steps} ({first} updates made so far, {n} more about to run); nothing "
                f"was changed. Give OneCycle total_steps >= {first + n} (all the updates of the run), or run "
                "fewer updates")

    def _rate(self, t):
        s = float(t)
        end1 = self._phase1_end()
        if s <= end1:
            return _cosine_anneal(self.initial_lr, self.max_lr, (s - 0.0) / (end1 - 0.0))
        return _cosine_anneal(self.max_lr, self.min_lr, (s - end1) / ((float(self.total_steps) - 1.0) - end1))

    def encode(self):
        return np.array([K.ONECYCLE, self.total_steps, self._phase1_end(), self.initial_lr, self.max_lr,
                         self.min_lr])


SCHEDULES = {cls.__name__: cls for cls in (CosineDecay, ExponentialDecay, PiecewiseConstantDecay, OneCycle)}


def serialize(schedule):
    """``{"class": name, "config": schedule.config()}``: JSON that ``deserialize`` reads back."""
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule: expected a fastbp.schedules schedule, got {type(schedule).__name__}")
    return {"class": type(schedule).__name__, "config": schedule.config()}


def deserialize(data, name="schedule"):
    """The schedule ``serialize`` described; every argument is checked as by its constructor.

    Parameters
    ----------
    data : dict
        ``{"class": one of SCHEDULES, "config": {argument: value}}``.
    name : str
        What to call ``data`` in error messages.
    """
    if not isinstance(data, dict) or set(data) != {"class", "config"} or not isinstance(data["config"], dict):
        raise ValueError(f"{name}: expected {{'class': ..., 'config': {{...}}}} as schedules.serialize "
                         f"gives, got {data!r}")
    cls = SCHEDULES.get(data["class"])
    if cls is None:
        raise ValueError(f"{name}: unknown schedule {data['class']!r}; expected one of {sorted(SCHEDULES)}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data["config"]) - fields)
    if unknown:
        raise TypeError(f"{name}: {cls.__name__} takes no argument {unknown[0]!r}; its arguments are "
                        f"{sorted(fields)}")
    return cls(**data["config"])
