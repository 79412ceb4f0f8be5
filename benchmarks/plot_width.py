#!/usr/bin/env python3
"""Training throughput against layer width, fastbp and its peers: the figure of docs/performance.rst.

Network 784-w-10 (one relu hidden layer of width w, softmax cross-entropy), float32, Adam
(lr 1e-3), batch 256, the same seeded Gaussian data for every system. Each system runs in a
fresh process of its own, over all widths: per width one warm-up epoch (compilation, jit
tracing, allocation), then ``--epochs`` timed epochs, of which the fastest counts. Rounds
alternate the systems, so a machine whose load drifts hits all of them alike; the figure shows
the median over rounds in samples per second.

Systems: fastbp (the current python), and jax, torch and sklearn from ``--peer-python``, a
python that has them (kept out of fastbp's dependencies; missing ones are skipped). The
"GEMM floor" line is numpy's BLAS doing only the matrix products of each training step
(x@W, dA@W.T, x.T@dA per layer, without the first layer's dA@W.T, which no trainer needs): no
activation, loss or optimizer; a system above it uses a faster BLAS or skips work. Every system uses its own
default thread count, or ``--threads N`` for all of them (through OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS and XLA_FLAGS). OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from every child's
environment, so each runs the BLAS kernels a user's machine would pick.

    python benchmarks/plot_width.py --peer-python PATH/TO/peer/bin/python
    python benchmarks/plot_width.py --from-csv docs/throughput_vs_width.csv    # re-plot only

fastbp must be importable by the python that runs this script (``pip install .``);
matplotlib is needed for the figure only.
"""
import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

WIDTHS = [32, 64, 128, 256, 512, 1024, 2048]
N_IN, N_OUT, BATCH, LR = 784, 10, 256, 1e-3
SYSTEMS = ["fastbp", "jax", "torch", "sklearn", "gemm_floor"]
PEERS = {"jax", "torch", "sklearn"}
LABELS = {"fastbp": "fastbp", "jax": "JAX (jit)", "torch": "PyTorch (eager)",
          "sklearn": "scikit-learn MLPClassifier", "gemm_floor": "GEMM floor: numpy's matmuls alone"}
DROP_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "docs", "throughput_vs_width.png")


def make_data(n):
    """Gaussian rows (n, 784) float32, labelled by the argmax of a random linear map to 10 classes."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, N_IN), dtype=np.float32)
    y = (X @ rng.standard_normal((N_IN, N_OUT), dtype=np.float32)).argmax(1).astype(np.int64)
    return X, y


def epochs_timed(run_epoch, epochs):
    """Seconds of the fastest of ``epochs`` calls of run_epoch() after one warm-up call."""
    run_epoch()
    best = float("inf")
    for _ in range(epochs):
        t0 = time.perf_counter()
        run_epoch()
        best = min(best, time.perf_counter() - t0)
    return best


# ---- one system, every width, in this process ---------------------------------------------
def runner_fastbp(X, y, width, epochs):
    import fastbp
    model = fastbp.MLP([N_IN, width, N_OUT], activation="relu", output="softmax",
                       loss="cross_entropy", dtype="float32", seed=0)
    opt = fastbp.Adam(lr=LR)
    return epochs_timed(lambda: model.fit(X, y, epochs=1, batch_size=BATCH, optimizer=opt,
                                          shuffle=True, verbose=0), epochs)


def runner_torch(X, y, width, epochs):
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, width), torch.nn.ReLU(), torch.nn.Linear(width, N_OUT))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    lossf = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n = X.shape[0]

    def run_epoch():
        perm = torch.randperm(n)
        for s in range(0, n, BATCH):
            idx = perm[s:s + BATCH]
            opt.zero_grad(set_to_none=True)
            lossf(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    return epochs_timed(run_epoch, epochs)


def runner_jax(X, y, width, epochs):
    import jax
    import jax.numpy as jnp
    import optax
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    params = [(jax.random.normal(k1, (N_IN, width)) * np.sqrt(2 / N_IN), jnp.zeros(width)),
              (jax.random.normal(k2, (width, N_OUT)) * np.sqrt(2 / width), jnp.zeros(N_OUT))]

    def lossf(p, x, t):
        (W1, b1), (W2, b2) = p
        z = jax.nn.relu(x @ W1 + b1) @ W2 + b2
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), t[:, None], 1))

    tx = optax.adam(LR)
    state = [params, tx.init(params)]

    @jax.jit
    def step(p, st, x, t):
        g = jax.grad(lossf)(p, x, t)
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st

    rng = np.random.default_rng(0)
    n = X.shape[0]

    def run_epoch():
        perm = rng.permutation(n)
        p, st = state
        for s in range(0, n, BATCH):
            idx = perm[s:s + BATCH]
            p, st = step(p, st, X[idx], y[idx])
        jax.block_until_ready(p)
        state[:] = [p, st]
    return epochs_timed(run_epoch, epochs)


def runner_sklearn(X, y, width, epochs):
    import warnings
    from sklearn.neural_network import MLPClassifier
    warnings.filterwarnings("ignore")
    model = MLPClassifier(hidden_layer_sizes=(width,), activation="relu", solver="adam", batch_size=BATCH,
                          learning_rate_init=LR, shuffle=True, random_state=0)
    classes = np.arange(N_OUT)
    return epochs_timed(lambda: model.partial_fit(X, y, classes=classes), epochs)


def runner_gemm_floor(X, y, width, epochs):
    """Per step and layer: x@W, dA@W.T, x.T@dA into preallocated outputs; nothing else.
    The first layer has no dA@W.T: no trainer needs the gradient with respect to the data."""
    rng = np.random.default_rng(0)
    mats = []
    for i, (n_in, n_out) in enumerate(((N_IN, width), (width, N_OUT))):
        x = rng.standard_normal((BATCH, n_in), dtype=np.float32)
        W = rng.standard_normal((n_in, n_out), dtype=np.float32)
        d = rng.standard_normal((BATCH, n_out), dtype=np.float32)
        mats.append((x, W, d, np.empty((BATCH, n_out), np.float32),
                     np.empty((BATCH, n_in), np.float32) if i > 0 else None, np.empty_like(W)))
    steps = -(-X.shape[0] // BATCH)

    def run_epoch():
        for _ in range(steps):
            for x, W, d, o1, o2, o3 in mats:
                np.matmul(x, W, out=o1)
                if o2 is not None:
                    np.matmul(d, W.T, out=o2)
                np.matmul(x.T, d, out=o3)
    return epochs_timed(run_epoch, epochs)


def thread_env(env, n):
    """env with every system of this script held at n threads."""
    env = dict(env)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[k] = str(n)
    if n == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def thread_count(system):
    """The thread count a system runs with (for the CSV)."""
    try:
        if system == "jax":
            return None           # XLA's own pools; not reported
        if system == "fastbp":
            import fastbp
            return fastbp.get_num_threads()
        if system == "torch":
            import torch
            return torch.get_num_threads()
        from threadpoolctl import threadpool_info
        return max((i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"), default=None)
    except ImportError:
        return None


def child(system, widths, samples, epochs):
    X, y = make_data(samples)
    runner = globals()["runner_" + system]
    seconds = {w: runner(X, y, w, epochs) for w in widths}
    print(json.dumps({"seconds": seconds, "threads": thread_count(system)}))


# ---- parent: rounds of fresh processes, CSV, figure ---------------------------------------
def measure(args):
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    if args.threads:
        env = thread_env(env, args.threads)
    widths = ",".join(map(str, args.widths))
    runs, threads, errors = {}, {}, {}
    for r in range(args.rounds):
        for system in args.systems:
            if system in errors:
                continue
            py = args.peer_python if system in PEERS else sys.executable
            cmd = [py, os.path.abspath(__file__), "--child", system, "--widths", widths,
                   "--samples", str(args.samples), "--epochs", str(args.epochs)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                errors[system] = (p.stderr.strip().splitlines() or ["?"])[-1][:120]
                print(f"  {system}: skipped ({errors[system]})", file=sys.stderr)
                continue
            out = json.loads(p.stdout.strip().splitlines()[-1])
            threads[system] = out["threads"]
            for w, s in out["seconds"].items():
                runs.setdefault((system, int(w)), []).append(s)
            print(f"  round {r + 1}/{args.rounds} {system} done", file=sys.stderr)
    rows = []
    for (system, w), secs in sorted(runs.items(), key=lambda kv: (args.systems.index(kv[0][0]), kv[0][1])):
        med = statistics.median(secs)
        rows.append(dict(system=system, width=w, samples_per_s=round(args.samples / med),
                         median_epoch_s=round(med, 5), rounds=len(secs), threads=threads.get(system)))
    return rows


def write_csv(path, rows, notes):
    with open(path, "w", newline="") as f:
        for line in notes:
            f.write(f"# {line}\n")
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def read_csv(path):
    with open(path) as f:
        lines = f.read().splitlines()
    notes = [line[2:] for line in lines if line.startswith("# ")]
    rows = csv.DictReader(line for line in lines if not line.startswith("#"))
    return [dict(r, width=int(r["width"]), samples_per_s=float(r["samples_per_s"])) for r in rows], notes


def plot(rows, path, subtitle):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=100)
    styles = {"fastbp": dict(color="C3", marker="o", lw=2.4), "jax": dict(color="C0", marker="s"),
              "torch": dict(color="C1", marker="^"), "sklearn": dict(color="C2", marker="v"),
              "gemm_floor": dict(color="0.4", ls="--", marker=".")}
    for system in SYSTEMS:
        pts = sorted((r["width"], r["samples_per_s"]) for r in rows if r["system"] == system)
        if pts:
            ax.plot(*zip(*pts), label=LABELS[system], **styles[system])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    widths = sorted({r["width"] for r in rows})
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.set_xlabel("hidden layer width w  (network 784-w-10)")
    ax.set_ylabel("training throughput (samples/s)")
    ax.set_title("Training throughput against layer width\n" + subtitle, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", default=sys.executable, help="a python that has jax, optax, torch, scikit-learn")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    ap.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    ap.add_argument("--samples", type=int, default=16384, help="samples per epoch")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per width, after one warm-up epoch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, help="run every system with this many threads (default: each its own)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="the figure (PNG); the CSV goes beside it")
    ap.add_argument("--from-csv", help="plot this CSV (written by an earlier run) instead of measuring")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.widths = [int(w) for w in a.widths.split(",")]
    if a.child:
        return child(a.child, a.widths, a.samples, a.epochs)
    a.systems = a.systems.split(",")
    unknown = sorted(set(a.systems) - set(SYSTEMS))
    if unknown:
        ap.error(f"unknown systems {unknown}; expected some of {SYSTEMS}")
    if a.from_csv:
        rows, notes = read_csv(a.from_csv)
        subtitle = next((n for n in notes if n.startswith("float32")), "")
    else:
        load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        t0 = time.time()
        rows = measure(a)
        if not rows:
            sys.exit("no system ran")
        load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        threads = f"{a.threads} thread{'s' if a.threads > 1 else ''} each" if a.threads else "default threads"
        subtitle = (f"float32, Adam, batch {BATCH}, {a.samples} samples/epoch; {os.cpu_count()} CPUs, {threads}, "
                    f"{time.strftime('%Y-%m-%d', time.localtime(t0))}")
        notes = [subtitle,
                 f"{platform.machine()} {platform.system()}; median over {a.rounds} rounds of the fastest of "
                 f"{a.epochs} epochs after one warm-up epoch",
                 f"load average (1 min) {load0:.2f} at start, {load1:.2f} at end; {time.time() - t0:.0f} s"]
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        csv_path = os.path.splitext(a.out)[0] + ".csv"
        write_csv(csv_path, rows, notes)
        print(f"wrote {csv_path}", file=sys.stderr)
    print(f"{'system':11} {'width':>6} {'samples/s':>11}")
    for r in rows:
        print(f"{r['system']:11} {r['width']:>6} {r['samples_per_s']:>11.0f}")
    plot(rows, a.out, subtitle)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
