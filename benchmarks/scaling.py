#!/usr/bin/env python3
"""Data-parallel scaling: 2 ranks x 1 thread against 1 rank x 2 threads and 1 x 1, and an
estimate for 8 and 64 nodes on a 10 Gb/s network.

A benchmark script, not part of the asv suite (it defines no asv benchmarks; importing it runs
nothing). Run from the project root, with fastbp, mpi4py and an MPI launcher installed
(``pip install ".[mpi]"``):

    python benchmarks/scaling.py                  # 3 rounds of 3 epochs; about 3 minutes
    python benchmarks/scaling.py --rounds 1 --epochs 2 --json scaling.json

Every configuration trains in fresh processes, in rounds that alternate the configurations so
that a drifting machine hits all of them alike; the median over rounds is reported.

Workload "mnist" (as the project's peer benchmark): sizes [784, 256, 128, 10], relu, softmax
cross-entropy, float32, Adam(lr=1e-3), batch 256, 32768 synthetic samples (throughput does not
depend on the values).

The estimate for N nodes (one rank per node, the node's cores as threads of that rank) takes
the step times measured here and a bandwidth-optimal allreduce (reduce-scatter + allgather,
as MPICH and Open MPI use for large messages) on the network:

    t_allreduce(N) = 2 (N-1)/N * S / bandwidth + 2 log2(N) * latency

S = 4 bytes x parameters. Weak scaling keeps 256 rows per node per step (global batch
256 N); strong scaling keeps the global batch at 256 (256/N rows per node). Efficiency is
single-node time per sample / (N x time per sample on N nodes).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = [784, 256, 128, 10]
BATCH = 256
SAMPLES = 32768
LR = 1e-3
NETWORK_BANDWIDTH = 10e9 / 8        # bytes/s: 10 Gb/s
NETWORK_LATENCY = 25e-6             # s per message: typical for MPI over TCP on 10 GbE
CONFIGS = [(1, 1), (1, 2), (2, 1)]  # (ranks, threads per rank)


def make_data(samples):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((samples, SIZES[0]), dtype=np.float32)
    T = rng.standard_normal((SIZES[0], SIZES[-1]), dtype=np.float32)
    return X, (X @ T).argmax(1).astype(np.int64)


# ---- workers: one measurement each, in a fresh process ------------------------------------------
def worker_fit(args):
    """Epoch throughput of fit (data-parallel when started by mpiexec with several ranks)."""
    import fastbp
    from fastbp.distributed import launched_comm
    comm = launched_comm()
    X, y = make_data(args.samples)
    model = fastbp.MLP(SIZES, activation="relu", output="softmax", loss="cross_entropy", dtype="float32", seed=0)
    opt = fastbp.Adam(lr=LR)
    # Compile (or load the cache) outside the timed epochs.
    model.fit(X[:4 * BATCH], y[:4 * BATCH], epochs=1, batch_size=BATCH, optimizer=opt, verbose=0, comm=comm)

    class EpochTimes(fastbp.Callback):
        def __init__(self):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t0)

    clock = EpochTimes()
    hist = model.fit(X, y, epochs=args.epochs, batch_size=BATCH, optimizer=opt, verbose=0, callbacks=[clock],
                     comm=comm)
    if comm is None or comm.Get_rank() == 0:
        out = {"ranks": 1 if comm is None else comm.Get_size(), "threads": fastbp.get_num_threads(),
               "epoch_seconds": clock.seconds, "samples_per_s": args.samples / statistics.median(clock.seconds),
               "best_samples_per_s": args.samples / min(clock.seconds)}
        steps = hist.params["steps"] * len(hist.epoch)
        if steps:
            out.update({f"{k}_ms_per_step": 1e3 * v / steps for k, v in hist.timing.items() if k in ("train", "allreduce")})
        print("RESULT " + json.dumps(out), flush=True)


def worker_parts(args):
    """Times of the pieces of one data-parallel step: a rank's gradient on b rows, the
    optimizer update, and (under mpiexec) the Allreduce of the flat float32 gradient."""
    import fastbp
    from fastbp import threads
    from fastbp.distributed import launched_comm
    from fastbp import data as D
    from fastbp.kernels import epoch as E
    from fastbp.kernels import optimizers as K
    comm = launched_comm()
    X, y = make_data(4 * BATCH)
    model = fastbp.MLP(SIZES, activation="relu", output="softmax", loss="cross_entropy", dtype="float32", seed=0)
    L = model.layout
    data = D.prepare(model, X, y)
    grads = np.zeros_like(model.params)

    def best_of(fn, seconds=1.0):
        """Fastest of repeated calls: on a shared machine, the one least disturbed by others."""
        fn()
        reps, t0 = 0, time.perf_counter()
        times = []
        while time.perf_counter() - t0 < seconds or reps < 5:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
            reps += 1
        return min(times)

    out = {"threads": fastbp.get_num_threads(), "params": int(L.size)}
    with threads.single_threaded_blas():
        for b in (256, 128, 32, 4):
            ws = model.workspace(b)
            rows = np.arange(b)

            def step(b=b, ws=ws, rows=rows):      # what a rank does for its b rows (a distributed step)
                E.run(E.GRADIENT, model.params, model.net, ws, data, grads=grads, order=rows, last=b,
                      maxparts=model.kernel_parts(b))
            out[f"gradient_ms_{b}_rows"] = 1e3 * best_of(step)
        opt = fastbp.Adam(lr=1e-9).kernel_args(model.params)
        out["update_ms"] = 1e3 * best_of(lambda: K.apply_update(model.params, grads, opt, model.kernel_parts(1), None))
    if comm is not None:
        from mpi4py import MPI
        buf = np.ones(L.size + 4, np.float32)
        times = []
        comm.Barrier()
        for _ in range(300):            # a fixed count: every rank must make the same calls
            t = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t)
        out["allreduce_ms_local"] = 1e3 * min(times[20:])
    if comm is None or comm.Get_rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


# ---- driver ----------------------------------------------------------------------------------
def launch(mode, ranks, nthreads, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--epochs", str(args.epochs),
           "--samples", str(args.samples)]
    if ranks > 1:
        cmd = [args.mpiexec, "-n", str(ranks)] + cmd
    env = dict(os.environ, NUMBA_NUM_THREADS=str(nthreads))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def allreduce_seconds(nbytes, nodes, bandwidth=NETWORK_BANDWIDTH, latency=NETWORK_LATENCY):
    """Bandwidth-optimal allreduce of nbytes over ``nodes`` nodes (reduce-scatter + allgather)."""
    if nodes == 1:
        return 0.0
    return 2 * (nodes - 1) / nodes * nbytes / bandwidth + 2 * math.log2(nodes) * latency


def estimate(parts, nodes):
    """(weak, strong) rows for ``nodes`` from the measured parts (ms; one node = one rank with
    the measured thread count)."""
    nbytes = 4 * (parts["params"] + 4)
    t_ar = 1e3 * allreduce_seconds(nbytes, nodes)
    upd = parts["update_ms"]
    one = parts["gradient_ms_256_rows"] + upd                 # one node, batch 256, no network
    weak_step = one + t_ar
    rows = {}
    for b in (256, 128, 32, 4):
        rows[b] = parts[f"gradient_ms_{b}_rows"]
    strong_rows = BATCH // nodes
    # Strong scaling needs the gradient time at 256/nodes rows: interpolate in rows (measured at 4..256).
    xs = sorted(rows)
    g = float(np.interp(strong_rows, xs, [rows[x] for x in xs]))
    strong_step = g + upd + t_ar
    return (dict(nodes=nodes, rows_per_node=BATCH, compute_ms=one, allreduce_ms=t_ar,
                 efficiency=one / weak_step),
            dict(nodes=nodes, rows_per_node=strong_rows, compute_ms=g + upd, allreduce_ms=t_ar,
                 efficiency=one / (nodes * strong_step)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per run (median taken)")
    ap.add_argument("--samples", type=int, default=SAMPLES)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--worker", choices=["fit", "parts"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "fit":
        return worker_fit(args)
    if args.worker == "parts":
        return worker_parts(args)
    from fastbp.distributed import find_mpiexec
    args.mpiexec = find_mpiexec()
    if args.mpiexec is None:
        sys.exit("no mpiexec found: pip install '.[mpi]'")

    load_before = os.getloadavg()
    fits = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        for ranks, nthreads in CONFIGS:
            res = launch("fit", ranks, nthreads, args)
            fits[(ranks, nthreads)].append(res)
            print(f"round {r + 1}: {ranks} rank(s) x {nthreads} thread(s): {res['samples_per_s']:,.0f} samples/s",
                  file=sys.stderr)
    parts1 = launch("parts", 1, 1, args)
    parts2 = launch("parts", 1, 2, args)
    parts_mpi = launch("parts", 2, 1, args)
    load_after = os.getloadavg()

    base = statistics.median(x["samples_per_s"] for x in fits[(1, 1)])
    print(f"\nmnist workload {SIZES}, batch {BATCH}, {args.samples} samples, float32 Adam; "
          f"median of {args.rounds} round(s) x {args.epochs} epoch(s)")
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores\n")
    best_base = statistics.median(x["best_samples_per_s"] for x in fits[(1, 1)])
    print("samples/s: median epoch of each run, and its fastest epoch (least disturbed by other load);")
    print("median over rounds, with the range over rounds\n")
    print(f"{'configuration':<22}{'median epoch':>14}{'vs 1x1':>8}{'fastest epoch':>15}{'vs 1x1':>8}   range (median epoch)")
    summary = {}
    for ranks, nthreads in CONFIGS:
        rates = [x["samples_per_s"] for x in fits[(ranks, nthreads)]]
        best = statistics.median(x["best_samples_per_s"] for x in fits[(ranks, nthreads)])
        med = statistics.median(rates)
        name = f"{ranks} rank{'s' if ranks > 1 else ''} x {nthreads} thread{'s' if nthreads > 1 else ''}"
        print(f"{name:<22}{med:>14,.0f}{med / base:>7.2f}x{best:>15,.0f}{best / best_base:>7.2f}x   "
              f"{min(rates):,.0f} - {max(rates):,.0f}")
        summary[f"{ranks}x{nthreads}"] = dict(samples_per_s=med, fastest_epoch_samples_per_s=best, rounds=rates)
        if ranks > 1:
            last = fits[(ranks, nthreads)][-1]
            summary[f"{ranks}x{nthreads}"].update({k: v for k, v in last.items() if k.endswith("_ms_per_step")})
    last = fits[(2, 1)][-1]
    print(f"\n2 x 1 per step (rank 0): gradient {last['compute_ms_per_step']:.2f} ms, Allreduce "
          f"{last['allreduce_ms_per_step']:.2f} ms (includes waiting for the other rank), update "
          f"{last['update_ms_per_step']:.2f} ms")
    for label, parts in (("1 thread", parts1), ("2 threads", parts2)):
        grads = ", ".join(f"{b} rows {parts[f'gradient_ms_{b}_rows']:.2f}" for b in (256, 128, 32, 4))
        print(f"one rank's step pieces, {label}: gradient of {grads} ms; Adam update {parts['update_ms']:.3f} ms")
    print(f"Allreduce of {parts_mpi['params']} float32 between 2 ranks on this machine (shared memory): "
          f"{parts_mpi['allreduce_ms_local']:.3f} ms")

    est = []
    for label, parts in (("1 core (1 thread)", parts1), ("2 cores (2 threads)", parts2)):
        print(f"\nEstimate on a 10 Gb/s network ({NETWORK_LATENCY * 1e6:.0f} us latency), nodes of {label} as "
              f"measured here, one rank per node; gradient {4 * (parts['params'] + 4) / 1e6:.2f} MB:")
        print(f"{'nodes':>6}{'scaling':>9}{'rows/node':>11}{'compute ms':>12}{'allreduce ms':>14}{'efficiency':>12}")
        for nodes in (8, 64):
            weak, strong = estimate(parts, nodes)
            for kind, row in (("weak", weak), ("strong", strong)):
                print(f"{nodes:>6}{kind:>9}{row['rows_per_node']:>11}{row['compute_ms']:>12.2f}"
                      f"{row['allreduce_ms']:>14.2f}{row['efficiency']:>11.0%}")
                est.append(dict(row, scaling=kind, node=label))
        # The gradient costs about the same per row from 128 rows up: rows per node that keep
        # the allreduce at a fifth of the step (80% weak-scaling efficiency).
        per_row = parts["gradient_ms_256_rows"] / 256
        for nodes in (8, 64):
            t_ar = 1e3 * allreduce_seconds(4 * (parts["params"] + 4), nodes)
            rows = math.ceil((4 * t_ar - parts["update_ms"]) / per_row)
            print(f"  80% efficiency on {nodes} nodes needs about {rows} rows per node per step "
                  f"(global batch {rows * nodes:,})")
            est.append(dict(nodes=nodes, node=label, rows_per_node_for_80_percent=rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(fits=summary, parts_1_thread=parts1, parts_2_threads=parts2, parts_mpi=parts_mpi,
                           estimate=est, load=[load_before, load_after]), f, indent=1)


if __name__ == "__main__":
    main()
