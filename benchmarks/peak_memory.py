"""Peak resident memory while training the mnist workload, fastbp or scikit-learn, same data.

    python benchmarks/peak_memory.py fastbp
    python benchmarks/peak_memory.py sklearn        # in a python that has scikit-learn

Prints the resident size after each of --epochs epochs (flat means nothing accumulates), the
process's peak, and what the library added over the data alone (numpy imported, data made),
split into private memory (anonymous pages: Python objects, buffers, BLAS work space) and pages
of shared libraries read from disk (file-backed: shared between processes, dropped first under
memory pressure). Linux only (reads /proc/self/status).
"""
import argparse
import resource

import numpy as np


def resident_mib():
    """Resident MiB: total, anonymous, file-backed."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["RssAnon"], fields["RssFile"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("system", choices=["fastbp", "sklearn"])
    ap.add_argument("--epochs", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32768, 784), dtype=np.float32)
    y = (X @ rng.standard_normal((784, 10), dtype=np.float32)).argmax(1).astype(np.int64)
    _, anon0, file0 = resident_mib()
    after = []
    if a.system == "fastbp":
        import fastbp
        model, opt = fastbp.MLP([784, 256, 128, 10], seed=0), fastbp.Adam(lr=1e-3)
        for _ in range(a.epochs):
            model.fit(X, y, epochs=1, batch_size=256, optimizer=opt, verbose=0)
            after.append(resident_mib())
    else:
        import warnings
        from sklearn.neural_network import MLPClassifier
        warnings.filterwarnings("ignore")
        model = MLPClassifier(hidden_layer_sizes=(256, 128), batch_size=256, learning_rate_init=1e-3,
                              max_iter=1, random_state=0)
        for _ in range(a.epochs):
            model.partial_fit(X, y, classes=np.arange(10))
            after.append(resident_mib())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _, anon, file = after[-1]
    print(f"{a.system}: resident MiB after each epoch {[round(r[0]) for r in after]}, peak {peak:.0f} MiB; "
          f"added over the data: private {anon - anon0:.0f} MiB, shared-library pages {file - file0:.0f} MiB")


if __name__ == "__main__":
    main()
