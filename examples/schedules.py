"""A learning-rate schedule inside the compiled loop: AdamW with a linear warm-up and a cosine
decay, against AdamW at a constant rate.

The schedule is Keras' ``CosineDecay(0, decay_steps, warmup_target=lr, warmup_steps=w)``: the
rate climbs from 0 to ``lr`` over the first ``w`` updates (one epoch here), then falls to 0 along a
half cosine over the rest of the run. fastbp evaluates it for every minibatch inside the compiled
epoch loop. The script prints the rate of a few updates twice, from the schedule object and from
Keras' formula written out below, then trains the same network (gelu, layer norm, dropout) on a
generated 10-class task with both optimizers and prints each epoch's rate (History's ``lr``, the
rate of the next update as Keras logs it) and losses, and the held-out figures at the end.

    python examples/schedules.py [--epochs 10] [--lr 3e-3] [--samples 8000]
"""
import argparse
import math

import numpy as np

import fastbp
from fastbp import schedules
from fastbp.datasets import make_classification

BATCH = 128


def keras_cosine_with_warmup(t, target, warmup, decay_steps):
    """Keras' CosineDecay(0.0, decay_steps, warmup_target=target, warmup_steps=warmup) at update t."""
    if t < warmup:
        return target * t / warmup
    done = min(t - warmup, decay_steps) / decay_steps
    return target * 0.5 * (1 + math.cos(math.pi * done))


def train(optimizer, data, epochs):
    Xtr, ytr, Xval, yval = data
    model = fastbp.MLP([Xtr.shape[1], 256, 128, 10], activation="gelu", norm="layer", dropout=0.1, seed=0)
    hist = model.fit(Xtr, ytr, epochs=epochs, batch_size=BATCH, optimizer=optimizer, validation_data=(Xval, yval),
                     verbose=0)
    return model, hist


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3, help="the constant rate, and the peak of the schedule")
    ap.add_argument("--samples", type=int, default=8000, help="training rows (a quarter more are held out)")
    args = ap.parse_args(argv)

    n_val = args.samples // 4
    X, y = make_classification(args.samples + n_val, n_features=64, n_classes=10, n_informative=24, class_sep=0.8,
                               seed=0)
    data = (X[:args.samples], y[:args.samples], X[args.samples:], y[args.samples:])
    per_epoch = -(-args.samples // BATCH)                    # the last partial batch is an update too
    total = args.epochs * per_epoch
    warmup = per_epoch
    sched = schedules.CosineDecay(0.0, total - warmup, warmup_target=args.lr, warmup_steps=warmup)
    print(f"{args.samples} training rows in batches of {BATCH}: {per_epoch} updates per epoch, {total} in "
          f"{args.epochs} epochs; warm-up over the first {warmup}")
    print("update   schedule(t)   Keras' formula")
    for t in sorted({0, warmup // 2, warmup, (warmup + total) // 2, total - 1}):
        print(f"{t:6d}   {sched(t):.8f}    {keras_cosine_with_warmup(t, args.lr, warmup, total - warmup):.8f}")

    runs = {"constant": fastbp.AdamW(lr=args.lr), "cosine": fastbp.AdamW(lr=sched)}
    hists, models = {}, {}
    for name, opt in runs.items():
        models[name], hists[name] = train(opt, data, args.epochs)
    print()
    print("epoch  " + "  ".join(f"{name + ': lr':>16s} {'loss':>7s} {'val_loss':>8s}" for name in runs))
    for e in range(args.epochs):
        print(f"{e + 1:5d}  " + "  ".join(f"{h.history['lr'][e]:16.6f} {h.history['loss'][e]:7.4f} "
                                          f"{h.history['val_loss'][e]:8.4f}" for h in hists.values()))
    for name, h in hists.items():
        print(f"{name}: held-out loss {h.history['val_loss'][-1]:.4f}, accuracy {h.history['val_accuracy'][-1]:.4f}; "
              f"{runs[name].iterations} updates, next rate {runs[name].lr:.6g}")
    return sched, hists, runs


if __name__ == "__main__":
    main()
