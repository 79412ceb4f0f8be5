"""A large synthetic task shaped like MNIST (784 features, 10 classes): samples/s on every core.

Trains a 784-256-128-10 ReLU network with Adam on ``make_classification`` data, timing one
epoch with 1 thread and one with all of fastbp's threads (after a warm-up epoch, so compile and
first-touch costs stay out), then reports samples/s, how many cores were busy (process CPU time
over wall time), the speedup, and held-out accuracy.

    python examples/mnist_like.py [--samples 20000] [--epochs 2] [--batch-size 128]
"""
import argparse
import time


import fastbp
from fastbp.datasets import make_classification


def timed_epoch(model, X, y, batch_size, opt):
    """(samples/s, cores busy) of the faster of two epochs; cores busy = process CPU time / wall
    time. The first epoch at a new thread count also pays for worker threads of the previous
    phase still spinning before they sleep (OpenMP, BLAS), which would show as cores busy."""
    best = None
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(X, y, epochs=1, batch_size=batch_size, optimizer=opt, verbose=0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or wall < best[0]:
            best = (wall, cpu)
    return X.shape[0] / best[0], best[1] / best[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=2, help="further epochs (all threads) before the accuracy check")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args(argv)

    n_test = max(1, args.samples // 6)
    X, y = make_classification(args.samples + n_test, n_features=784, n_classes=10, n_informative=40,
                               class_sep=1.0, seed=0)
    Xtr, ytr, Xte, yte = X[:args.samples], y[:args.samples], X[args.samples:], y[args.samples:]
    model = fastbp.MLP([784, 256, 128, 10], activation="relu", seed=0)
    opt = fastbp.Adam(lr=1e-3)
    print(model.summary())

    all_threads = fastbp.get_num_threads()
    model.fit(Xtr[:2048], ytr[:2048], epochs=1, batch_size=args.batch_size, optimizer=opt, verbose=0)  # warm-up
    rates = {}
    for n in sorted({1, all_threads}):
        fastbp.set_num_threads(n)
        rates[n], busy = timed_epoch(model, Xtr, ytr, args.batch_size, opt)
        print(f"{n} thread{'s' if n > 1 else ' '}: {rates[n]:>10,.0f} samples/s, {busy:.2f} cores busy")
    fastbp.set_num_threads(all_threads)
    if all_threads > 1:
        print(f"speedup with {all_threads} threads: {rates[all_threads] / rates[1]:.2f}x")
    else:
        print("only one thread available: set NUMBA_NUM_THREADS or run on a multicore machine to compare")
    if args.epochs:
        model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, optimizer=opt, verbose=1)
    acc = model.evaluate(Xte, yte)["accuracy"]
    print(f"held-out accuracy after {2 * len(rates) + args.epochs} epochs: {acc:.4f} ({n_test} samples)")
    return rates, acc


if __name__ == "__main__":
    main()
