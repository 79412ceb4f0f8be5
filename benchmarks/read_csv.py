"""Reading speed of a large numeric CSV: numpy's loadtxt against pyarrow and fastbp.tables.

    python benchmarks/read_csv.py [--mb 200] [--columns 20] [--format short,full,pixels]
                                  [--repeat 3] [--dir /some/scratch/folder]

For each --format, writes a numeric CSV of about --mb megabytes into a temp folder, reads the
whole file once so every reader starts from a warm page cache, then prints, for each reader,
MB/s (file bytes over wall time) of the fastest and the median of --repeat runs, and the CPU
seconds of the fastest run (all threads; on a busy machine, wall time depends on what else runs
and CPU time less so). The formats (each with a header row and an integer label column):

- ``short``: --columns float columns with four decimals (``-0.1234``);
- ``full``: --columns float columns at full precision, as pandas' ``to_csv`` and Python's
  ``repr`` write a float64 (``-0.12345678901234566``);
- ``pixels``: 784 integer columns 0-255, four in five of them 0, as the MNIST CSV exports.

The parsers' costs differ by format: per value, pyarrow's costs about the same whatever the
digits and numpy's grows with them, so the ratios are smallest on short numbers.
Each run is a new process, as a command reads its file once (the imports and one warm-up read
are not timed, but the memory allocators start fresh); --same-process times them all in this one:

- ``np.loadtxt``: what ``fastbp train`` used before tables (numpy's parser after the header);
- ``pyarrow.csv.read_csv``: pyarrow's multi-threaded reader with its default options, raw;
- ``read_table``: ``fastbp.tables.read_table``, that reader with fastbp's checks and NA spellings;
- ``read_table + numeric_matrix``: that plus the one C-contiguous float64 matrix of every
  column (what a model of arrays takes from a table);
- ``read_table + encode``: that plus ``TablePreprocessor`` fit and transform into the float64
  matrix ``fastbp train`` trains on, and its standardization (``fastbp.frames.standardizer``).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from fastbp import tables


FORMATS = ("short", "full", "pixels")


def write_csv(path, megabytes, columns, fmt="short", seed=0):
    """About ``megabytes`` MB of numeric CSV of format ``fmt`` (see FORMATS) at ``path``,
    written in batches by pyarrow (whose float64 text is the shortest that reads back exactly,
    as ``repr``)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    rng = np.random.default_rng(seed)
    if fmt == "pixels":
        columns = 784
    kind = pa.int64() if fmt == "pixels" else pa.float64()
    names = [f"x{j}" for j in range(columns)] + ["label"]
    target = int(megabytes * 1e6)
    batch = 2_000 if fmt == "pixels" else 20_000
    with pcsv.CSVWriter(path, pa.schema([(n, kind) for n in names[:-1]] + [("label", pa.int64())]),
                        write_options=pcsv.WriteOptions(quoting_style="none")) as w:
        while os.path.getsize(path) < target:
            if fmt == "pixels":
                X = np.where(rng.random((batch, columns)) < 0.8, 0, rng.integers(1, 256, (batch, columns)))
                label = rng.integers(0, 10, batch)
            else:
                X = rng.standard_normal((batch, columns))
                X = np.round(X, 4) if fmt == "short" else X
                label = (X[:, 0] > 0).astype(np.int64)
            w.write_table(pa.table([*X.T, label], names=names))
    return os.path.getsize(path)


def old_reader(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        f.readline()
        return np.loadtxt(f, delimiter=",", ndmin=2, dtype=np.float64)


def pyarrow_reader(path):
    import pyarrow.csv as pcsv
    return pcsv.read_csv(path)


def new_reader(path):
    return tables.read_table(path)


def new_reader_matrix(path):
    return tables.numeric_matrix(tables.read_table(path))


def new_reader_encoded(path):
    from fastbp import frames
    t = tables.read_table(path)
    prep = tables.TablePreprocessor().fit(t, "label")
    X = prep.transform(t)
    frames.standardizer(X, prep.numeric_features_out)
    return X


READERS = {"np.loadtxt (old reader)": old_reader, "pyarrow.csv.read_csv (raw)": pyarrow_reader,
           "read_table": new_reader, "read_table + numeric_matrix": new_reader_matrix,
           "read_table + encode": new_reader_encoded}


def one_run(name, path):
    """(wall seconds, CPU seconds) of one run of reader ``name``."""
    t, c = time.perf_counter(), time.process_time()
    READERS[name](path)
    return time.perf_counter() - t, time.process_time() - c


def head_of(path, lines=2000):
    """A small CSV beside ``path`` with its first lines, made once: the warm-up of a new process."""
    head = path + ".head.csv"
    if not os.path.exists(head):
        with open(path, "rb") as f, open(head, "wb") as out:
            for _ in range(lines):
                out.write(f.readline())
    return head


def timings(name, path, repeat, fresh):
    """[(wall seconds, CPU seconds)] of ``repeat`` runs, each in a new process if ``fresh``
    (imports not timed), as a command reads its file once."""
    if not fresh:
        return [one_run(name, path) for _ in range(repeat)]
    out = []
    for _ in range(repeat):
        child = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name, path, head_of(path)],
                               check=True, capture_output=True, text=True)
        out.append(tuple(float(v) for v in child.stdout.split()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200.0, help="size of the CSV in MB (default: 200)")
    ap.add_argument("--columns", type=int, default=20, help="float columns of short and full (default: 20)")
    ap.add_argument("--format", default=",".join(FORMATS),
                    help=f"comma-separated, of {', '.join(FORMATS)} (default: all, one after the other)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per reader (default: 3)")
    ap.add_argument("--dir", default=None, help="where to write the file (default: a temp folder)")
    ap.add_argument("--same-process", action="store_true",
                    help="every run in this process (warm allocators) instead of a new process per run")
    ap.add_argument("--child", nargs=3, metavar=("READER", "PATH", "HEAD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        name, path, head = a.child
        READERS[name](head)                          # imports and first calls on a small file, untimed
        print(*one_run(name, path))
        return
    formats = a.format.split(",")
    if not set(formats) <= set(FORMATS):
        ap.error(f"--format: expected some of {', '.join(FORMATS)}, got {a.format!r}")
    for fmt in formats:
        with tempfile.TemporaryDirectory(dir=a.dir) as d:
            path = os.path.join(d, f"{fmt}.csv")
            size = write_csv(path, a.mb, a.columns, fmt)
            with open(path, "rb") as f:                 # warm the page cache: every reader starts alike
                while f.read(1 << 24):
                    pass
            table = new_reader(path)
            print(f"\n{fmt}: {size / 1e6:.1f} MB, {table.num_rows:,} rows x {table.num_columns} columns, "
                  f"{a.repeat} runs each ({'in this process' if a.same_process else 'each in a new process'}), "
                  f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            del table
            print(f"{'':<30} {'MB/s best':>10} {'MB/s median':>12} {'x loadtxt':>10} {'CPU s':>7}")
            base = None
            for name in READERS:
                runs = sorted(timings(name, path, a.repeat, not a.same_process))
                best, median = size / 1e6 / runs[0][0], size / 1e6 / runs[len(runs) // 2][0]
                base = base or best
                print(f"{name:<30} {best:10.1f} {median:12.1f} {best / base:10.2f} {runs[0][1]:7.2f}", flush=True)


if __name__ == "__main__":
    main()
