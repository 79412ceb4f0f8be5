#!/usr/bin/env python3
"""fastbp against its peers in float64: the same MLP, data and optimizer, measured side by side.

A benchmark script, not part of the asv suite (it defines no asv benchmarks; importing it runs
nothing). The float64 counterpart of the team's float32 peer comparison (docs/performance.rst), with
its own code. Run from the project root, with fastbp importable by the current python and the
peers (jax, optax, torch, scikit-learn) in a python of their own:

    python -m venv .peers && .peers/bin/pip install "jax[cpu]" optax scikit-learn torch   # once
    python benchmarks/peers_float64.py --peer-python .peers/bin/python     # all workloads, 2-3 min
    python benchmarks/peers_float64.py mnist odd --rounds 5 --peer-python .peers/bin/python
    python benchmarks/peers_float64.py tiny --systems fastbp,jax

Systems, every one of them in float64 (each child reports the dtype it actually trained in, and
a system that ran in another dtype is reported as an error):
  fastbp      fastbp.MLP(..., dtype="float64"), fed float64 X; model.fit one epoch per call
  jax         jax_enable_x64, float64 params and data, one jitted step (grad + optax update)
  torch       torch.float64 parameters and data, eager, torch.optim
  sklearn     MLPClassifier (float64 when fed float64), partial_fit once per epoch
  gemm_floor  numpy's BLAS doing only the three matrix products per layer per step (x@W, dA@W.T,
              x.T@dA, float64, the last batch at its real size): no activation, loss or optimizer
Workloads (softmax cross-entropy on Gaussian rows labelled by the argmax of a random linear map):
  tiny   4-16-3 relu, batch 32, Adam(lr 1e-2), 8192 samples
  mnist  784-256-128-10 relu, batch 256, Adam(lr 1e-3), 32768 samples
  odd    37-129-71-5 tanh, batch 100, Momentum(lr 1e-2, 0.9), 49999 samples (last batch: 99 rows)

Each system trains in a fresh process of its own (the current python for fastbp and the GEMM
floor, --peer-python for the peers), --epochs epochs per process, of which the first is warm-up
(compilation, jit tracing, cache load, buffers) and the fastest of the others counts; rounds
alternate the systems so that a drifting machine hits all of them alike, and the table shows
the median over rounds. Every system uses its own default thread count. OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are removed from every child's environment, so that each runs the BLAS kernels a
user's machine would pick. "fastbp ×" is a system's time over fastbp's (above 1: fastbp is
faster); on the gemm_floor row it is fastbp's share of that limit (fastbp can pass it where it
skips a product the floor counts: the first layer's input gradient).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# name: sizes, hidden activation, batch, samples, optimizer ("adam" | "momentum"), learning rate
WORKLOADS = {
    "tiny": ([4, 16, 3], "relu", 32, 8192, "adam", 1e-2),
    "mnist": ([784, 256, 128, 10], "relu", 256, 32768, "adam", 1e-3),
    "odd": ([37, 129, 71, 5], "tanh", 100, 49999, "momentum", 1e-2),
}
MOMENTUM = 0.9
SYSTEMS = ["fastbp", "jax", "torch", "sklearn", "gemm_floor"]
PEERS = {"jax", "torch", "sklearn"}
DROP_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def make_data(sizes, n):
    """(X float64 (n, in), y int64 (n,)): Gaussian rows labelled by the argmax of a random linear map."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0]))
    y = (X @ rng.standard_normal((sizes[0], sizes[-1]))).argmax(1).astype(np.int64)
    return X, y


def batches(n, batch):
    """Row ranges of one epoch's minibatches; the last one partial when batch does not divide n."""
    return [(s, min(s + batch, n)) for s in range(0, n, batch)]


def timed_epochs(run_epoch, epochs):
    """Seconds of each of ``epochs`` calls of run_epoch()."""
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - t0)
    return times


# ---- one system, one workload, in this process ------------------------------------------------
def runner_fastbp(w, epochs):
    import fastbp
    sizes, act, batch, n, opt, lr = w
    X, y = make_data(sizes, n)
    model = fastbp.MLP(sizes, activation=act, output="softmax", loss="cross_entropy", dtype=np.float64, seed=0)
    optim = fastbp.Adam(lr=lr) if opt == "adam" else fastbp.Momentum(lr=lr, momentum=MOMENTUM)
    times = timed_epochs(lambda: model.fit(X, y, epochs=1, batch_size=batch, optimizer=optim,
                                           shuffle=True, verbose=0), epochs)
    return times, model.evaluate(X, y)["loss"], model.params.dtype.name


def runner_torch(w, epochs):
    import torch
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    sizes, act, batch, n, opt, lr = w
    X, y = make_data(sizes, n)
    A = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[act]
    layers = []
    for i in range(len(sizes) - 1):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1])] + ([A()] if i < len(sizes) - 2 else [])
    model = torch.nn.Sequential(*layers)
    optim = (torch.optim.Adam(model.parameters(), lr=lr) if opt == "adam"
             else torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM))
    lossf = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    last = [float("nan")]

    def run_epoch():
        perm = torch.randperm(n)
        for s, e in batches(n, batch):
            idx = perm[s:e]
            optim.zero_grad(set_to_none=True)
            loss = lossf(model(Xt[idx]), yt[idx])
            loss.backward()
            optim.step()
        last[0] = loss.item()
    times = timed_epochs(run_epoch, epochs)
    return times, last[0], str(next(model.parameters()).dtype).replace("torch.", "")


def runner_jax(w, epochs):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax
    sizes, act, batch, n, opt, lr = w
    X, y = make_data(sizes, n)
    key = jax.random.PRNGKey(0)
    params = []
    for i in range(len(sizes) - 1):
        key, k = jax.random.split(key)
        params.append((jax.random.normal(k, (sizes[i], sizes[i + 1]), jnp.float64) * np.sqrt(2 / sizes[i]),
                       jnp.zeros(sizes[i + 1], jnp.float64)))
    A = {"relu": jax.nn.relu, "tanh": jnp.tanh}[act]

    def lossf(p, x, t):
        for W, b in p[:-1]:
            x = A(x @ W + b)
        z = x @ p[-1][0] + p[-1][1]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), t[:, None], 1))

    tx = optax.adam(lr) if opt == "adam" else optax.sgd(lr, momentum=MOMENTUM)

    @jax.jit
    def step(p, st, x, t):
        loss, g = jax.value_and_grad(lossf)(p, x, t)
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st, loss

    state = [params, tx.init(params), None]
    rng = np.random.default_rng(0)

    def run_epoch():
        p, st, loss = state
        perm = rng.permutation(n)
        for s, e in batches(n, batch):
            idx = perm[s:e]
            p, st, loss = step(p, st, X[idx], y[idx])
        loss.block_until_ready()
        state[:] = [p, st, loss]
    times = timed_epochs(run_epoch, epochs)
    return times, float(state[2]), str(state[0][0][0].dtype)


def runner_sklearn(w, epochs):
    import warnings
    from sklearn.neural_network import MLPClassifier
    warnings.filterwarnings("ignore")
    sizes, act, batch, n, opt, lr = w
    X, y = make_data(sizes, n)
    kw = dict(solver="adam") if opt == "adam" else dict(solver="sgd", momentum=MOMENTUM, nesterovs_momentum=False)
    model = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), activation=act, batch_size=batch,
                          learning_rate_init=lr, max_iter=1, shuffle=True, random_state=0, **kw)
    classes = np.arange(sizes[-1])
    times = timed_epochs(lambda: model.partial_fit(X, y, classes=classes), epochs)
    return times, float(model.loss_), model.coefs_[0].dtype.name


def runner_gemm_floor(w, epochs):
    """Per step and layer: x@W, dA@W.T, x.T@dA into preallocated float64 outputs; nothing else."""
    sizes, act, batch, n, opt, lr = w
    rng = np.random.default_rng(0)

    def operands(rows):
        mats = []
        for i in range(len(sizes) - 1):
            x = rng.standard_normal((rows, sizes[i]))
            W = rng.standard_normal((sizes[i], sizes[i + 1]))
            d = rng.standard_normal((rows, sizes[i + 1]))
            mats.append((x, W, d, np.empty((rows, sizes[i + 1])), np.empty((rows, sizes[i])), np.empty_like(W)))
        return mats
    by_rows = {}
    steps = [by_rows.setdefault(e - s, operands(e - s)) for s, e in batches(n, batch)]

    def run_epoch():
        for mats in steps:
            for x, W, d, o1, o2, o3 in mats:
                np.matmul(x, W, out=o1)
                np.matmul(d, W.T, out=o2)
                np.matmul(x.T, d, out=o3)
    times = timed_epochs(run_epoch, epochs)
    return times, float("nan"), steps[0][0][0].dtype.name


def child(system, name, epochs):
    times, loss, dtype = globals()["runner_" + system](WORKLOADS[name], epochs)
    print(json.dumps({"steady_s": min(times[1:]) if len(times) > 1 else times[0], "first_s": times[0],
                      "loss": loss, "dtype": dtype}))


# ---- parent: rounds of fresh processes, the table ---------------------------------------------
def measure(name, systems, args, env):
    """{system: [child result, one per round]} or {system: "error: ..."}."""
    res = {}
    for r in range(args.rounds):
        for s in systems:
            if isinstance(res.get(s), str):
                continue
            py = args.peer_python if s in PEERS else sys.executable
            cmd = [py, os.path.abspath(__file__), "--child", s, name, "--epochs", str(args.epochs)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                res[s] = "error: " + (p.stderr.strip().splitlines() or ["?"])[-1][:100]
                continue
            out = json.loads(p.stdout.strip().splitlines()[-1])
            if out["dtype"] != "float64":
                res[s] = f"error: trained in {out['dtype']}, not float64"
                continue
            res.setdefault(s, []).append(out)
            print(f"  {name} round {r + 1}/{args.rounds} {s}: {out['steady_s']:.4f} s", file=sys.stderr)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", help=f"some of {', '.join(WORKLOADS)} (default: all)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per process; the first is warm-up")
    ap.add_argument("--peer-python", default=sys.executable, help="a python that has jax, optax, torch, scikit-learn")
    ap.add_argument("--child", nargs=2, metavar=("SYSTEM", "WORKLOAD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], a.child[1], a.epochs)
    names = a.workloads or list(WORKLOADS)
    systems = a.systems.split(",")
    for what, given, known in (("workloads", names, WORKLOADS), ("systems", systems, SYSTEMS)):
        unknown = sorted(set(given) - set(known))
        if unknown:
            ap.error(f"unknown {what} {unknown}; expected some of {list(known)}")
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    t0 = time.time()
    print(f"# float64  {time.strftime('%Y-%m-%d %H:%M')}  cpus={os.cpu_count()}  rounds={a.rounds}  "
          f"epochs/process={a.epochs}  load average {os.getloadavg()[0]:.2f}")
    print(f"{'workload':8} {'system':10} {'samples/s':>11} {'first epoch s':>14} {'fastbp ×':>9}")
    for name in names:
        res = measure(name, systems, a, env)
        n = WORKLOADS[name][3]
        med = {s: statistics.median(r["steady_s"] for r in v) for s, v in res.items() if isinstance(v, list)}
        for s in systems:
            v = res.get(s)
            if not isinstance(v, list):
                print(f"{name:8} {s:10} {v or 'skipped'}")
                continue
            ratio = med[s] / med["fastbp"] if "fastbp" in med else float("nan")
            first = statistics.median(r["first_s"] for r in v)
            print(f"{name:8} {s:10} {n / med[s]:11.0f} {first:14.3f} {ratio:9.2f}", flush=True)
    print(f"# {time.time() - t0:.0f} s; load average {os.getloadavg()[0]:.2f} at the end")
    print("# 'fastbp ×': a system's time over fastbp's (above 1: fastbp is faster).")
    print("# gemm_floor row: fastbp's share of the matrix products' time (above 1 only where fastbp skips one).")


if __name__ == "__main__":
    main()
