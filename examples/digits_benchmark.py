"""Digits (8x8, 10 classes): fastbp vs scikit-learn's MLPClassifier, same net, same training.

Both train a 64-128-10 ReLU/softmax network with Adam (lr 1e-3, no L2), minibatches of 32,
shuffled each epoch, for the same number of epochs on the same standardized 80% split, and are
scored on the held-out 20%. Wall time of ``fit`` is the median of --repeats runs; fastbp's is
measured with a warm compile cache (one throwaway fit first), its cold first call reported apart,
with 1 thread and with all of fastbp's threads (a net this small may not gain from a second core).
scikit-learn is only needed for this comparison (pip install scikit-learn).

    python examples/digits_benchmark.py [--epochs 30] [--repeats 3] [--threads N]
"""
import argparse
import statistics
import time
import warnings

import numpy as np

import fastbp
from fastbp.datasets import load_digits


def split(seed=0, test_fraction=0.2):
    X, y = load_digits(dtype="float64")
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(len(X) * test_fraction)
    te, tr = order[:n_test], order[n_test:]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sd[sd == 0] = 1.0
    X = (X - mu) / sd
    return X[tr], y[tr], X[te], y[te]


def run_fastbp(Xtr, ytr, Xte, yte, epochs, batch, seed):
    model = fastbp.MLP([64, 128, 10], activation="relu", output="softmax", seed=seed)
    t0 = time.perf_counter()
    model.fit(Xtr, ytr, epochs=epochs, batch_size=batch, optimizer=fastbp.Adam(lr=1e-3), verbose=0)
    dt = time.perf_counter() - t0
    return dt, float(np.mean(model.predict_classes(Xte) == yte))


def run_sklearn(Xtr, ytr, Xte, yte, epochs, batch, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", solver="adam", alpha=0.0,
                        batch_size=batch, learning_rate_init=1e-3, max_iter=epochs, shuffle=True,
                        n_iter_no_change=epochs + 1, tol=0.0, random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)       # it runs exactly max_iter epochs
        clf.fit(Xtr, ytr)
    dt = time.perf_counter() - t0
    assert clf.n_iter_ == epochs
    return dt, float(clf.score(Xte, yte))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        fastbp.set_num_threads(args.threads)
    Xtr, ytr, Xte, yte = split()
    print(f"digits: {len(Xtr)} train / {len(Xte)} test, net 64-128-10, Adam lr 1e-3, batch {args.batch_size}, "
          f"{args.epochs} epochs, {fastbp.get_num_threads()} fastbp threads")

    t0 = time.perf_counter()
    run_fastbp(Xtr[:64], ytr[:64], Xte, yte, 1, args.batch_size, 0)        # loads (or compiles) kernels
    cold = time.perf_counter() - t0
    threads = fastbp.get_num_threads()
    counts = sorted({1, threads}) if not args.threads else [threads]
    results = {f"fastbp {n} thread{'s' if n > 1 else ''}": [] for n in counts}
    results["scikit-learn"] = []
    for r in range(args.repeats):
        for n in counts:
            fastbp.set_num_threads(n)
            results[f"fastbp {n} thread{'s' if n > 1 else ''}"].append(
                run_fastbp(Xtr, ytr, Xte, yte, args.epochs, args.batch_size, r))
        fastbp.set_num_threads(threads)
        results["scikit-learn"].append(run_sklearn(Xtr, ytr, Xte, yte, args.epochs, args.batch_size, r))
    summary = {}
    for name, runs in results.items():
        t = statistics.median(dt for dt, _ in runs)
        acc = [a for _, a in runs]
        summary[name] = (t, min(acc), statistics.mean(acc))
        print(f"{name:>17}: fit {t:7.3f} s (median of {len(runs)}), test accuracy mean {statistics.mean(acc):.4f}, "
              f"min {min(acc):.4f}")
    print(f"fastbp first call in a fresh process (kernel cache load or compile): {cold:.2f} s")
    best = min((v[0], k) for k, v in summary.items() if k.startswith("fastbp"))
    print(f"{best[1]} takes {best[0] / summary['scikit-learn'][0]:.2f}x scikit-learn's time "
          f"({summary['scikit-learn'][0] / best[0]:.1f}x faster)")
    return summary

if __name__ == "__main__":
    main()
