"""Dropout and normalization on the digits: a gelu net with layer norm (or batch norm) and
dropout against the plain relu net of the same sizes.

The 1797 embedded 8x8 digits are shuffled once; the first 500 train, the other 1297 test, so a
64-256-256-10 network can memorize its training rows and the held-out figures tell the variants
apart. Every variant trains with the same seed, AdamW and batches of 32. For each the script
prints the training loss of the last epoch, the training and test accuracy, the test log-loss
(from ``predict``, which never drops) and the seconds ``fit`` took (on a first run, with the
compiling of the kernels each kind of network needs). Then it checks what the user
guide promises: the same seed gives bit-identical params, ``predict`` is the same on every call
(dropout is off outside training), and batch norm's running statistics live in
``model.buffers``.

    python examples/dropout_norm.py [--epochs 40] [--train 500] [--dropout 0.2]
"""
import argparse
import time

import numpy as np

import fastbp
from fastbp.datasets import load_digits

SIZES = [64, 256, 256, 10]


def split(n_train):
    X, y = load_digits()
    X = X / np.float32(16.0)                                  # pixels 0..16 -> [0, 1]
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def variants(dropout):
    return {
        "relu": dict(activation="relu"),
        "gelu + layer norm + dropout": dict(activation="gelu", norm="layer", dropout=dropout),
        "gelu + batch norm + dropout": dict(activation="gelu", norm="batch", dropout=dropout),
    }


def train(options, Xtr, ytr, epochs):
    model = fastbp.MLP(SIZES, seed=0, **options)
    t0 = time.perf_counter()
    hist = model.fit(Xtr, ytr, epochs=epochs, batch_size=32, optimizer=fastbp.AdamW(lr=1e-3), verbose=0)
    return model, hist, time.perf_counter() - t0


def log_loss(P, y):
    return float(-np.mean(np.log(np.maximum(P[np.arange(len(y)), y], 1e-12))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--train", type=int, default=500, help="training rows (the rest test)")
    ap.add_argument("--dropout", type=float, default=0.2)
    args = ap.parse_args(argv)
    Xtr, ytr, Xte, yte = split(args.train)
    print(f"digits: {len(Xtr)} training rows, {len(Xte)} test rows, network {SIZES}, {args.epochs} epochs")

    results = {}
    for name, options in variants(args.dropout).items():
        model, hist, seconds = train(options, Xtr, ytr, args.epochs)
        P = model.predict(Xte)
        r = results[name] = dict(model=model, train_loss=hist.history["loss"][-1],
                                 train_accuracy=model.evaluate(Xtr, ytr)["accuracy"],
                                 test_accuracy=float(np.mean(P.argmax(1) == yte)), test_log_loss=log_loss(P, yte),
                                 seconds=seconds)
        print(f"{name:28s}: train loss {r['train_loss']:.4f}  train accuracy {r['train_accuracy']:.4f}  "
              f"test accuracy {r['test_accuracy']:.4f}  test log-loss {r['test_log_loss']:.4f}  ({seconds:.2f} s)")

    name = "gelu + layer norm + dropout"
    model = results[name]["model"]
    print()
    print(model.summary())
    again, _, _ = train(variants(args.dropout)[name], Xtr, ytr, args.epochs)
    same_bits = bool(np.array_equal(again.params, model.params))
    print(f"same seed, same bits: {same_bits}")
    stable = bool(np.array_equal(model.predict(Xte), model.predict(Xte)))
    print(f"predict twice, same output (no dropout outside training): {stable}")
    bn = results["gelu + batch norm + dropout"]["model"]
    var = bn.layers[0].running_var
    print(f"batch norm: {bn.buffers.size} running statistics in model.buffers; layer 0's running variance "
          f"from {var.min():.4f} to {var.max():.4f}; {bn.updates} updates")
    return results, same_bits, stable


if __name__ == "__main__":
    main()
