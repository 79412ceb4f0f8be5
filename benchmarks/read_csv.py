"""Reading speed of a large numeric CSV: the command line's old reader against fastbp.tables.

    python benchmarks/read_csv.py [--mb 200] [--columns 20] [--repeat 1] [--dir /some/scratch/folder]

Writes a numeric CSV of about --mb megabytes (a header row, --columns float columns with four
decimals, an integer label column) into a temp folder, reads the whole file once so every
reader starts from a warm page cache, then prints MB/s (file bytes over wall time, best of
--repeat runs) for:

- ``np.loadtxt``: what ``fastbp train`` used before tables (numpy's parser after the header);
- ``read_table``: ``fastbp.tables.read_table``, pyarrow's multi-threaded CSV reader;
- ``read_table + encode``: that plus ``TablePreprocessor`` fit and transform into the float64
  matrix ``fastbp train`` trains on (the whole path the command takes before training).
"""
import argparse
import os
import tempfile
import time

import numpy as np

from fastbp import tables


def write_csv(path, megabytes, columns, seed=0):
    """About ``megabytes`` MB of numeric CSV at ``path``, written in batches by pyarrow."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    rng = np.random.default_rng(seed)
    names = [f"x{j}" for j in range(columns)] + ["label"]
    target = int(megabytes * 1e6)
    batch = 20_000
    with pcsv.CSVWriter(path, pa.schema([(n, pa.float64()) for n in names[:-1]] + [("label", pa.int64())]),
                        write_options=pcsv.WriteOptions(quoting_style="none")) as w:
        while os.path.getsize(path) < target:
            X = np.round(rng.standard_normal((batch, columns)), 4)
            label = (X[:, 0] > 0).astype(np.int64)
            w.write_table(pa.table([*X.T, label], names=names))
    return os.path.getsize(path)


def old_reader(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        f.readline()
        return np.loadtxt(f, delimiter=",", ndmin=2, dtype=np.float64)


def new_reader(path):
    return tables.read_table(path)


def new_reader_encoded(path):
    t = tables.read_table(path)
    return tables.TablePreprocessor().fit(t, "label").transform(t)


def best_seconds(fn, path, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(path)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200.0, help="size of the CSV in MB (default: 200)")
    ap.add_argument("--columns", type=int, default=20, help="float columns (default: 20)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per reader; the best counts (default: 1)")
    ap.add_argument("--dir", default=None, help="where to write the file (default: a temp folder)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        path = os.path.join(d, "numeric.csv")
        size = write_csv(path, a.mb, a.columns)
        with open(path, "rb") as f:                 # warm the page cache: every reader starts alike
            while f.read(1 << 24):
                pass
        new_reader(path)                             # pyarrow's imports out of the timings
        rows = old_reader(path).shape[0]
        print(f"{size / 1e6:.1f} MB, {rows:,} rows x {a.columns + 1} columns, best of {a.repeat}")
        base = None
        for name, fn in (("np.loadtxt (old reader)", old_reader), ("read_table", new_reader),
                         ("read_table + encode", new_reader_encoded)):
            s = best_seconds(fn, path, a.repeat)
            rate = size / 1e6 / s
            base = base or rate
            print(f"{name:<26} {rate:8.1f} MB/s  {s:7.2f} s  {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
