"""Learning-rate schedules, evaluated per update inside the compiled loops.

    sched  float64 [code, params...], as fastbp.schedules' ``encode()`` writes it:
      CONSTANT     [0]                                  the rate is hyper[H_LR]
      COSINE       [1, initial, decay_steps, alpha, warmup_target, warmup_steps, has_warmup]
      EXPONENTIAL  [2, initial, decay_steps, decay_rate, staircase]
      PIECEWISE    [3, nb, boundaries[0..nb-1], values[0..nb]]
      ONECYCLE     [4, total_steps, end of phase 1, initial_lr, max_lr, min_lr]

``schedule_rate`` gives the rate of update t (t = 0, 1, ...: the updates made before it). The
formulas are written in the same order of operations as fastbp.schedules' Python versions (which
follow Keras' and torch's code), so ``opt.lr`` reads the very rate the kernel uses.
"""
import numpy as np

from .jit import kernel

CONSTANT, COSINE, EXPONENTIAL, PIECEWISE, ONECYCLE = range(5)


@kernel(inline="always")
def schedule_rate(sched, base_lr, t):
    """The learning rate of update ``t`` (int, 0-based) under ``sched``; ``base_lr`` for a constant rate.

    A OneCycle update at or past total_steps raises: the Python side checks the updates a call
    will make before it starts (Optimizer.check_updates), so this only guards direct kernel use.
    """
    code = int(sched[0])
    s = np.float64(t)
    if code == CONSTANT:
        return base_lr
    if code == EXPONENTIAL:
        p = s / sched[2]
        if sched[4] != 0.0:
            p = np.floor(p)
        return sched[1] * sched[3] ** p
    if code == PIECEWISE:
        nb = int(sched[1])
        for i in range(nb):
            if s <= sched[2 + i]:
                return sched[2 + nb + i]
        return sched[2 + 2 * nb]
    # The cosine schedules share one expression each (one copy of the code in every caller).
    if code == COSINE:
        initial, decay_steps, alpha = sched[1], sched[2], sched[3]
        if sched[6] == 0.0:
            s, decay_from = min(s, decay_steps), initial
        else:
            target, warmup = sched[4], sched[5]
            s = min(s, decay_steps + warmup)
            if s < warmup:
                return (target - initial) * (s / warmup) + initial
            s, decay_from = s - warmup, target
        completed = s / decay_steps
        cosine = 0.5 * (1.0 + np.cos(np.pi * completed))
        return decay_from * ((1.0 - alpha) * cosine + alpha)
    # ONECYCLE: torch's _annealing_cos(start, end, pct) in the phase holding update t
    if s >= sched[1]:
        raise ValueError("OneCycle: an update past total_steps (see Optimizer.check_updates)")
    end1 = sched[2]
    if s <= end1:
        start, end, pct = sched[3], sched[4], (s - 0.0) / (end1 - 0.0)
    else:
        start, end, pct = sched[4], sched[5], (s - end1) / ((sched[1] - 1.0) - end1)
    return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1.0)
