"""Every script in examples/ runs (as __main__, small settings) and prints what the seeds compute.

Expected numbers come from plain-python transcriptions of the seeds' programs written here,
not from fastbp.
"""
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = sorted(p.name for p in EXAMPLES.glob("*.py"))


def run(name, *args, monkeypatch, capsys):
    """Run examples/<name> as a script with argv; returns (module globals, stdout)."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *map(str, args)])
    monkeypatch.setenv("MPLBACKEND", "Agg")
    g = runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return g, capsys.readouterr().out


def script_env(**extra):
    """The environment of an example run as a plain script: this checkout's fastbp first on
    PYTHONPATH, so the script runs the code under test (and shares its kernel cache)."""
    return dict(os.environ, PYTHONPATH=str(EXAMPLES.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)


def numbers(text):
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text)]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # examples write their pictures to the working directory


# ---- seed 000: forward pass ---------------------------------------------------------------------
def test_forward_pass(monkeypatch, capsys):
    g, out = run("forward_pass.py", monkeypatch=monkeypatch, capsys=capsys)
    W1, W2 = g["W1"], g["W2"]
    batch = np.array([[0.7, 0.5], [0.2, 0.3], [0.3, 0.4], [0.4, 0.5]])
    expected = (batch @ W1 @ W2).ravel()                    # the seed: a = x W1, y = a W2
    printed = numbers(out.split("one part")[1])
    np.testing.assert_allclose(printed[-5:], np.concatenate([expected[:1], expected]), rtol=1e-6)
    assert abs(printed[-4] - 3.0904665) < 1e-6              # the value the course's program prints


# ---- seed 002: backprop by hand -----------------------------------------------------------------
def seed_002():
    """Seed 002's program, transcribed (with its dropped d_loss_w_1_23 line restored)."""
    x_1, x_2, expected_output = 40.0, 80.0, 60.0
    w1 = {(i, j): 0.5 for i in (1, 2) for j in (1, 2, 3)}
    w2 = {j: 1.0 for j in (1, 2, 3)}
    z = {j: x_1 * w1[1, j] + x_2 * w1[2, j] for j in (1, 2, 3)}
    y_pred = sum(z[j] * w2[j] for j in (1, 2, 3))
    loss = 0.5 * (expected_output - y_pred) ** 2
    d = -(expected_output - y_pred)
    grads = {f"d_loss_w_2_{j}1": d * z[j] for j in (1, 2, 3)}
    grads.update({f"d_loss_w_1_{i}{j}": d * w2[j] * (x_1 if i == 1 else x_2) for i in (1, 2) for j in (1, 2, 3)})
    lr = 1e-5
    for j in (1, 2, 3):
        w2[j] -= lr * grads[f"d_loss_w_2_{j}1"]
        for i in (1, 2):
            w1[i, j] -= lr * grads[f"d_loss_w_1_{i}{j}"]
    z = {j: x_1 * w1[1, j] + x_2 * w1[2, j] for j in (1, 2, 3)}
    final = sum(z[j] * w2[j] for j in (1, 2, 3))
    return y_pred, loss, grads, final, 0.5 * (expected_output - final) ** 2


def test_backprop_by_hand(monkeypatch, capsys):
    g, out = run("backprop_by_hand.py", monkeypatch=monkeypatch, capsys=capsys)
    y_pred, loss, grads, final, final_loss = seed_002()
    assert f"forward pass prediction: {y_pred}" in out
    for name, value in grads.items():                       # every gradient, under the seed's name
        m = re.search(rf"^{name} = (\S+)$", out, re.M)
        assert m, name
        assert float(m.group(1)) == pytest.approx(value, rel=1e-12)
    assert f"Final: {final:.4f}" in out and f"{final:.4f}" == "140.3136"
    assert float(re.findall(r"^loss: (\S+)$", out, re.M)[-1]) == pytest.approx(final_loss, rel=1e-12)
    assert float(re.findall(r"^loss: (\S+)$", out, re.M)[0]) == pytest.approx(loss, rel=1e-12)


# ---- seed 000: the course's parts classifier -----------------------------------------------------
def course_parts(steps, every=500):
    """The course's TensorFlow loop in float64 numpy: X = RandomState(23455).rand(32, 2), MSE, GD 0.001."""
    X = np.random.RandomState(23455).rand(32, 2)
    Y = (X.sum(1) < 1).astype(float).reshape(-1, 1)
    mod = runpy.run_path(str(EXAMPLES / "parts_classifier.py"))
    w1, w2 = mod["W1"].astype(float), mod["W2"].astype(float)
    log = []
    for i in range(steps):
        s = (i * 8) % 32
        x, y = X[s:s + 8], Y[s:s + 8]
        a = x @ w1
        d = 2 * (a @ w2 - y) / y.size                     # d mean((y - y_)^2) / d prediction
        gw2, gw1 = a.T @ d, x.T @ (d @ w2.T)
        w1, w2 = w1 - 0.001 * gw1, w2 - 0.001 * gw2
        if i % every == 0:
            log.append((i, float(np.mean((X @ w1 @ w2 - Y) ** 2))))
    return log, w1, w2


def test_parts_classifier_prints_the_course_losses(monkeypatch, capsys):
    g, out = run("parts_classifier.py", "--steps", 3000, monkeypatch=monkeypatch, capsys=capsys)
    expected, _, _ = course_parts(3000)
    printed = [(int(s), float(v)) for s, v in re.findall(r"After (\d+) training step\(s\), loss on all data is (\S+)", out)]
    assert [s for s, _ in printed] == [0, 500, 1000, 1500, 2000, 2500]
    np.testing.assert_allclose([v for _, v in printed], [v for _, v in expected], rtol=1e-4)   # float32 run


def test_parts_classifier_matches_the_course_loop_in_float64():
    mod = runpy.run_path(str(EXAMPLES / "parts_classifier.py"))
    model, log = mod["train"](steps=1500, every=100, dtype="float64", verbose=False)
    expected, w1, w2 = course_parts(1500, every=100)
    np.testing.assert_allclose([v for _, v in log], [v for _, v in expected], rtol=1e-10)
    np.testing.assert_allclose(model.layers[0].W, w1, rtol=1e-10)
    np.testing.assert_allclose(model.layers[1].W, w2, rtol=1e-10)


# ---- seed 004: iris --------------------------------------------------------------------------------
def test_iris_learns_and_saves_curves(monkeypatch, capsys, tmp_path):
    g, out = run("iris.py", "--epochs", 300, "--out", tmp_path / "c.png", monkeypatch=monkeypatch, capsys=capsys)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    model, hist, accuracy = g["main"](["--epochs", "300", "--out", str(tmp_path / "d.png")])
    _, _, Xte, yte = g["split"]()
    assert len(accuracy) == 300 and len(hist.history["loss"]) == 300
    assert accuracy[-1] == np.mean(model.predict_classes(Xte) == yte)     # the callback saw the final model
    assert accuracy[-1] >= 0.9 > accuracy[0]
    assert hist.history["loss"][-1] < hist.history["loss"][0] / 3
    assert f"final: test accuracy {accuracy[-1]:.4f}" in out


# ---- seeds 002/004: gradient descent --------------------------------------------------------------
def test_gradient_descent_paths_and_pictures(monkeypatch, capsys, tmp_path):
    g, out = run("gradient_descent.py", "--out", tmp_path / "p.png", "--animate", tmp_path / "a.gif",
                 monkeypatch=monkeypatch, capsys=capsys)
    # (w + 1)^2 with lr 0.2: w_t + 1 = (1 - 2*0.2)^t (w_0 + 1), loss printed before each step.
    rows = re.findall(r"After (\d+) epoch, w is (\S+), loss is (\S+)", out)
    assert len(rows) == 40
    for e, w, loss in rows:
        e = int(e)
        assert float(w) == pytest.approx(-1 + 6 * 0.6 ** (e + 1), abs=1e-6)
        assert float(loss) == pytest.approx((6 * 0.6 ** e) ** 2, abs=1e-6)
    paths = g["seed_002_paths"]()
    np.testing.assert_allclose(paths["SGD lr 0.1"], 5.0 * 0.8 ** np.arange(51), rtol=1e-12)
    assert all(abs(p[-1]) < 0.5 for p in paths.values())
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "a.gif").read_bytes()[:4] == b"GIF8"


# ---- layers, schedules, losses ------------------------------------------------------------------
def test_dropout_norm_compares_the_variants(monkeypatch, capsys):
    g, out = run("dropout_norm.py", "--epochs", 3, monkeypatch=monkeypatch, capsys=capsys)
    rows = dict(re.findall(r"^(.+?)\s*: train loss .* test accuracy (\d\.\d+)", out, re.M))
    assert set(rows) == {"relu", "gelu + layer norm + dropout", "gelu + batch norm + dropout"}
    assert all(float(acc) > 0.8 for acc in rows.values())          # 10 classes: chance is 0.1
    assert "same seed, same bits: True" in out
    assert "predict twice, same output (no dropout outside training): True" in out
    results, same_bits, stable = g["main"](["--epochs", "1", "--train", "300"])
    bn = results["gelu + batch norm + dropout"]["model"]
    assert bn.buffers.size == 2 * (256 + 256) and bn.updates == -(-300 // 32)
    assert results["relu"]["model"].buffers.size == 0


def test_schedules_rates_are_keras_cosine_decay_with_warmup(monkeypatch, capsys):
    g, out = run("schedules.py", "--epochs", 3, "--samples", 1000, "--lr", 0.01, monkeypatch=monkeypatch,
                 capsys=capsys)
    per_epoch, total, warm = 8, 24, 8                                 # 1000 rows in batches of 128

    def keras(t):   # Keras' CosineDecay(0, total - warm, warmup_target=0.01, warmup_steps=warm)
        if t < warm:
            return 0.01 * t / warm
        return 0.01 * 0.5 * (1 + np.cos(np.pi * min(t - warm, total - warm) / (total - warm)))

    printed = re.findall(r"^\s*(\d+)\s+(\d\.\d+)\s+(\d\.\d+)$", out, re.M)
    assert [int(t) for t, _, _ in printed] == [0, 4, 8, 16, 23]
    for t, ours, formula in printed:
        assert float(ours) == pytest.approx(keras(int(t)), abs=1e-8)
        assert float(formula) == pytest.approx(keras(int(t)), abs=1e-8)
    sched, hists, runs = g["main"](["--epochs", "3", "--samples", "1000", "--lr", "0.01"])
    assert hists["constant"].history["lr"] == [0.01] * 3
    # History's lr: the rate of the next update at the end of each epoch
    np.testing.assert_allclose(hists["cosine"].history["lr"], [keras(per_epoch * (e + 1)) for e in range(3)],
                               rtol=1e-12, atol=1e-15)
    assert runs["cosine"].iterations == total and runs["cosine"].schedule == sched


def test_regression_losses_fit_the_data_that_calls_for_them(monkeypatch, capsys):
    g, out = run("regression_losses.py", "--epochs", 3, "--samples", 1000, monkeypatch=monkeypatch, capsys=capsys)
    res = g["main"](["--epochs", "3", "--samples", "1000"])
    o = res["outliers"]
    assert o["mae"]["mae"] < o["mse"]["mae"] / 2 and o["huber"]["mae"] < o["mse"]["mae"] / 2
    assert o["mse"]["bias"] > 1.0                                    # the gross errors pull squared error up
    c = res["counts"]
    assert c["poisson"]["deviance"] < c["mse"]["deviance"] and c["poisson"]["negative"] == 0
    assert "test Poisson deviance" in out and "mean residual" in out
    y = np.array([0.0, 1.0, 4.0])
    mu = np.array([0.5, 1.0, 2.0])
    expected = np.mean(2 * (np.array([0.0, 0.0, 4 * np.log(2.0)]) - y + mu))
    assert g["poisson_deviance"](y, mu) == pytest.approx(expected, rel=1e-12)


# ---- speed examples -----------------------------------------------------------------------------
@pytest.mark.slow
def test_mnist_like_reports_samples_per_second():
    # A fresh process, as a user runs it: worker pools other tests start in this process (BLAS,
    # OpenMP) would otherwise count in its "cores busy".
    out = subprocess.run([sys.executable, str(EXAMPLES / "mnist_like.py"), "--samples", "3000", "--epochs", "1"],
                         capture_output=True, text=True, check=True, timeout=600, env=script_env()).stdout
    import fastbp
    rates = re.findall(r"(\d+) threads?\s*:\s+([\d,]+) samples/s, ([\d.]+) cores busy", out)
    assert {int(n) for n, _, _ in rates} == {1, fastbp.get_num_threads()}
    assert all(float(r.replace(",", "")) > 0 for _, r, _ in rates)
    busy = {int(n): float(b) for n, _, b in rates}
    # one thread keeps one core busy; the margin is for worker pools (OpenMP, BLAS) of the
    # process spinning down, which the example's best-of-two epochs mostly leaves out
    assert 0 < busy[1] < 1.5
    acc = float(re.search(r"held-out accuracy after \d+ epochs: (\S+)", out).group(1))
    assert acc > 0.3                                          # 10 classes: chance is 0.1


def test_digits_benchmark_runs_both(monkeypatch, capsys):
    pytest.importorskip("sklearn")
    g, out = run("digits_benchmark.py", "--epochs", 3, "--repeats", 1, monkeypatch=monkeypatch, capsys=capsys)
    rows = dict(re.findall(r"(fastbp \d+ threads?|scikit-learn): fit\s+\S+ s .*test accuracy mean (\d\.\d+)", out))
    import fastbp
    n = fastbp.get_num_threads()
    assert set(rows) == {"fastbp 1 thread", "scikit-learn"} | ({f"fastbp {n} threads"} if n > 1 else set())
    assert all(float(acc) > 0.8 for acc in rows.values())


# Small settings per example; an example not listed runs with its defaults.
SMALL_ARGS = {"digits_benchmark.py": ["--epochs", "2", "--repeats", "1"], "iris.py": ["--epochs", "20"],
              "mnist_like.py": ["--samples", "2000", "--epochs", "1"], "parts_classifier.py": ["--steps", "100"],
              "dropout_norm.py": ["--epochs", "2"], "schedules.py": ["--epochs", "2", "--samples", "1000"],
              "regression_losses.py": ["--epochs", "2", "--samples", "1000"]}


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_every_example_runs_as_a_plain_script(name, tmp_path):
    """Every script in examples/, as a user runs it: a fresh process in an empty folder."""
    r = subprocess.run([sys.executable, str(EXAMPLES / name), *SMALL_ARGS.get(name, [])], cwd=tmp_path,
                       env=script_env(MPLBACKEND="Agg"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), f"{name} printed nothing"
