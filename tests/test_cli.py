"""The fastbp command: train / predict / evaluate / info, python -m fastbp, and every error path.

Most tests call ``fastbp.cli.main([...])`` in-process (the kernels stay loaded); a few run a
subprocess where the process boundary is the point (python -m fastbp, exit codes, MPI).
"""
import io
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import fastbp
from fastbp import cli
from fastbp.datasets import load_digits, load_iris


def run(*argv):
    """(exit code, stdout, stderr) of ``fastbp argv...`` run in-process."""
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def metric(text, section, name):
    m = re.search(rf"^{section}:\s.*?\b{name} (-?[\d.]+(?:e[-+]?\d+)?)", text, re.M)
    assert m, f"no {section} {name} in:\n{text}"
    return float(m.group(1))


def write_csv(path, X, y=None, names=None, target="target"):
    names = names or [f"f{i}" for i in range(X.shape[1])]
    with open(path, "w") as f:
        f.write(",".join(names + ([target] if y is not None else [])) + "\n")
        for i, row in enumerate(X):
            cells = [repr(float(v)) for v in row] + ([repr(float(y[i]))] if y is not None else [])
            f.write(",".join(cells) + "\n")
    return path


def subprocess_env(**extra):
    """Environment for a child python that imports this checkout's fastbp."""
    root = os.path.dirname(os.path.dirname(fastbp.__file__))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`fastbp train` on the embedded default as a new user runs it: defaults only, a fresh process,
    timed with a warm compile cache (a short in-process run first compiles and caches the kernels
    if this checkout has not yet)."""
    d = tmp_path_factory.mktemp("train")
    assert run("train", "--epochs", "1", "--quiet", "--out", d / "warmup.fbp")[0] == 0
    model_path = d / "model.fbp"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "fastbp", "train", "--out", str(model_path)], capture_output=True,
                       text=True, env=subprocess_env(), cwd=d, timeout=600)
    elapsed = time.perf_counter() - t0
    return dict(code=r.returncode, out=r.stdout, err=r.stderr, path=model_path, dir=d, elapsed=elapsed)


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory):
    X, y = load_digits(dtype="float64")
    return write_csv(tmp_path_factory.mktemp("data") / "digits.csv", X, y, target="digit")


# ---- train on the embedded default ----------------------------------------------------------------
def test_default_train_reaches_95_percent_validation_accuracy_in_under_10_s(trained):
    assert trained["code"] == 0, trained["err"]
    assert trained["err"] == ""                          # no progress bar when stderr is not a terminal
    out = trained["out"]
    assert "digits (embedded): 1797 samples x 64 features" in out
    assert metric(out, "validation", "accuracy") >= 0.95
    assert trained["elapsed"] < 10.0
    for line in ("trained 20 epochs in", "samples/s", f"model saved to {trained['path']}"):
        assert line in out
    # samples/s counts the training steps alone (no compilation, validation or saving)
    steps_s, rate = re.search(r"\(([\d.]+) s of training steps[^)]*\), ([\d,]+) samples/s", out).groups()
    steps_s, rate = float(steps_s), float(rate.replace(",", ""))    # steps_s is printed to 0.01 s
    assert 1617 * 20 / (steps_s + 0.005) <= rate <= 1617 * 20 / max(steps_s - 0.005, 1e-9)
    # the task's metrics: accuracy, auc, f1 for a classifier
    assert re.search(r"^train:\s+loss [\d.]+\s+accuracy [\d.]+\s+auc [\d.]+\s+f1 [\d.]+\s+\(1617 samples\)", out, re.M)
    assert re.search(r"^validation:\s+loss [\d.]+\s+accuracy [\d.]+\s+auc [\d.]+\s+f1 [\d.]+\s+\(180 samples\)",
                     out, re.M)
    assert trained["path"].exists()


def test_reported_metrics_are_those_of_the_saved_model_on_raw_data(trained):
    # The CLI standardizes inputs for training and folds that into the first layer: the saved
    # model takes raw pixels. Rebuild the split (seeded permutation, last 10% validation).
    model = fastbp.load(trained["path"])
    X, y = load_digits()
    perm = np.random.default_rng(0).permutation(len(X))
    tr, va = perm[:1617], perm[1617:]
    sk = pytest.importorskip("sklearn.metrics")
    for section, idx in (("train", tr), ("validation", va)):
        ev = model.evaluate(X[idx], y[idx])
        assert metric(trained["out"], section, "accuracy") == pytest.approx(ev["accuracy"], abs=5e-5)
        assert metric(trained["out"], section, "loss") == pytest.approx(ev["loss"], abs=5e-5)
        P = model.predict(X[idx]).astype(np.float64)
        P /= P.sum(1, keepdims=True)         # float32 probabilities sum to 1 only to rounding
        assert metric(trained["out"], section, "auc") == pytest.approx(
            sk.roc_auc_score(y[idx], P, multi_class="ovr", labels=range(10)), abs=5e-5)
        assert metric(trained["out"], section, "f1") == pytest.approx(
            sk.f1_score(y[idx], P.argmax(1), average="macro"), abs=5e-5)
    assert model.evaluate(X[va], y[va])["accuracy"] >= 0.95


def test_predict_writes_exactly_what_the_saved_model_predicts(trained, digits_csv, tmp_path):
    preds = tmp_path / "preds.csv"
    code, out, err = run("predict", trained["path"], digits_csv, "-o", preds)
    assert code == 0, err
    assert f"wrote 1797 predictions to {preds}" in err
    header = preds.read_text().splitlines()[0].split(",")
    assert header == ["class"] + [f"p{j}" for j in range(10)]
    table = np.loadtxt(preds, delimiter=",", skiprows=1)
    model = fastbp.load(trained["path"])
    X, _ = load_digits()
    P = model.predict(X)
    np.testing.assert_array_equal(table[:, 1:].astype(np.float32), P)        # bit-identical after the round trip
    np.testing.assert_array_equal(table[:, 0].astype(int), P.argmax(1))


def test_predict_to_stdout_from_features_only_npy(trained, tmp_path):
    X, _ = load_digits()
    np.save(tmp_path / "x.npy", X[:5])
    code, out, err = run("predict", trained["path"], tmp_path / "x.npy")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 6 and lines[0].startswith("class,p0")
    P = fastbp.load(trained["path"]).predict(X[:5])
    np.testing.assert_array_equal(np.array([l.split(",")[1:] for l in lines[1:]], float).astype(np.float32), P)


def test_train_into_a_closed_pipe_still_saves_its_model(tmp_path):
    """`fastbp train ... | head` closes the output early: the command drops what it would print
    after that and still trains and saves, with no traceback."""
    path = tmp_path / "piped.fbp"
    p = subprocess.Popen([sys.executable, "-m", "fastbp", "train", "iris", "--epochs", "2", "--out", str(path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(), cwd=tmp_path)
    p.stdout.close()                      # the reader is gone before the first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=600) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert fastbp.load(path).sizes[0] == 4


def test_evaluate_reports_the_models_metrics(trained, digits_csv):
    code, out, err = run("evaluate", trained["path"], digits_csv)
    assert code == 0, err
    X, y = load_digits()
    ev = fastbp.load(trained["path"]).evaluate(X, y)
    assert "1797 samples" in out
    assert float(re.search(r"loss (\S+)", out).group(1)) == pytest.approx(ev["loss"], abs=5e-5)
    assert float(re.search(r"accuracy (\S+)", out).group(1)) == pytest.approx(ev["accuracy"], abs=5e-5)


def test_same_seed_same_model_file(tmp_path):
    a, b = tmp_path / "a.fbp", tmp_path / "b.fbp"
    for p in (a, b):
        assert run("train", "iris", "--epochs", "3", "--quiet", "--out", p)[0] == 0
    np.testing.assert_array_equal(fastbp.load(a).params, fastbp.load(b).params)
    assert run("train", "iris", "--epochs", "3", "--quiet", "--seed", "1", "--out", b)[0] == 0
    assert not np.array_equal(fastbp.load(a).params, fastbp.load(b).params)


# ---- train on files ---------------------------------------------------------------------------------
@pytest.fixture
def restore_threads():
    n = fastbp.get_num_threads()
    yield
    fastbp.set_num_threads(n)


def test_train_on_a_csv_with_a_named_target_and_all_options(tmp_path, restore_threads):
    X, y = load_iris(dtype="float64")
    path = tmp_path / "iris.csv"
    with open(path, "w") as f:                       # the target in the middle, chosen by name
        f.write("sl,sw,species,pl,pw\n")
        for r, t in zip(X, y):
            f.write(f"{r[0]},{r[1]},{t},{r[2]},{r[3]}\n")
    code, out, err = run("train", path, "--target", "species", "--layers", "16", "--activation", "tanh",
                         "--optimizer", "nesterov", "--lr", "0.05", "--epochs", "60", "--batch-size", "16",
                         "--val-split", "0.2", "--seed", "3", "--threads", "1", "--dtype", "float64",
                         "--out", tmp_path / "m.fbp", "--plot", tmp_path / "c.png", "--quiet")
    assert code == 0, err
    assert "target 'species', classify (3 classes)" in out and "4 -> 16 -> 3, tanh/softmax" in out
    assert "nesterov lr 0.05, batch 16, 60 epochs, 1 threads" in out
    assert metric(out, "validation", "accuracy") >= 0.85 and "(30 samples)" in out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    m = fastbp.load(tmp_path / "m.fbp")
    assert m.sizes == [4, 16, 3] and m.activation == "tanh" and m.dtype == np.float64
    assert np.mean(m.predict_classes(X) == y) >= 0.85                 # raw features in


def test_train_regression_folds_target_scaling_into_the_model(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, (600, 3)) * [1, 10, 100] + [0, 50, -300]
    y = 1000 + 200 * np.sin(X[:, 0]) + 3 * X[:, 1] - 0.5 * X[:, 2]     # far from zero mean, unit variance
    path = write_csv(tmp_path / "r.csv", X, y, target="price")
    code, out, err = run("train", path, "--epochs", 60, "--layers", "32", "--out", tmp_path / "r.fbp", "--quiet")
    assert code == 0, err
    assert "regress" in out and "standardized targets" in out
    r2 = metric(out, "validation", "r2")
    assert r2 > 0.9
    # the regression metrics, each scikit-learn's on the saved model's predictions
    assert re.search(r"^validation:\s+loss [\d.]+\s+mae [\d.]+\s+rmse [\d.]+\s+r2 [\d.-]+\s+\(60 samples\)", out, re.M)
    m = fastbp.load(tmp_path / "r.fbp")
    p = m.predict(X)[:, 0]
    assert 1 - np.sum((p - y) ** 2) / np.sum((y - y.mean()) ** 2) > 0.9        # raw in, raw out
    code, out, err = run("evaluate", tmp_path / "r.fbp", path)
    assert code == 0 and "rmse" in out and "r2" in out
    sk = pytest.importorskip("sklearn.metrics")
    for name, want in (("mae", sk.mean_absolute_error(y, p)), ("rmse", np.sqrt(sk.mean_squared_error(y, p))),
                       ("r2", sk.r2_score(y, p))):
        assert float(re.search(rf"\b{name} ([\d.-]+)", out).group(1)) == pytest.approx(want, rel=1e-3, abs=1e-4)
    code, out, err = run("predict", tmp_path / "r.fbp", path)
    assert out.splitlines()[0] == "prediction"
    np.testing.assert_array_equal(np.array(out.split()[1:], float).astype(np.float32), m.predict(X)[:, 0])


def test_train_task_and_loss_choices(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    path = write_csv(tmp_path / "xor.csv", X, y)
    code, out, err = run("train", path, "--loss", "binary_cross_entropy", "--epochs", 40, "--quiet",
                         "--out", tmp_path / "b.fbp")
    assert code == 0, err
    m = fastbp.load(tmp_path / "b.fbp")
    assert m.output == "sigmoid" and m.sizes[-1] == 1
    code, out, err = run("predict", tmp_path / "b.fbp", path)
    assert out.splitlines()[0] == "class,p1"
    code, out, err = run("train", path, "--loss", "mse", "--epochs", 5, "--quiet", "--out", tmp_path / "s.fbp")
    assert code == 0, err
    m = fastbp.load(tmp_path / "s.fbp")
    assert m.output == "softmax" and m.loss == "mse" and m.sizes[-1] == 2
    code, out, err = run("evaluate", tmp_path / "s.fbp", path)
    assert code == 0 and "accuracy" in out, err
    code, out, err = run("train", path, "--task", "regress", "--epochs", 2, "--quiet", "--out", tmp_path / "g.fbp")
    assert code == 0 and "regress" in out and fastbp.load(tmp_path / "g.fbp").output == "linear"
    code, out, err = run("train", path, "--val-split", 0, "--epochs", 2, "--quiet", "--out", tmp_path / "g.fbp")
    assert code == 0 and "validation:" not in out and "train:" in out


def test_train_with_per_layer_activations_norms_dropout_and_penalties(tmp_path):
    X, y = load_iris(dtype="float64")
    path = write_csv(tmp_path / "iris.csv", X, y, target="species")
    code, out, err = run("train", path, "--layers", "16,8", "--activation", "gelu,mish", "--norm", "layer,batch",
                         "--dropout", "0.1,0", "--l1", "1e-5", "--l2", "1e-4", "--label-smoothing", "0.05",
                         "--epochs", "30", "--dtype", "float64", "--quiet", "--out", tmp_path / "m.fbp")
    assert code == 0, err
    assert ("model: 4 -> 16 -> 8 -> 3, gelu,mish/softmax, norm layer,batch, dropout 0.1,0, l1 1e-05, l2 0.0001, "
            "loss cross_entropy (label smoothing 0.05), ") in out
    assert "include the l1/l2 penalty; below, the data loss alone" in out
    m = fastbp.load(tmp_path / "m.fbp")
    assert [l.activation for l in m.layers] == ["gelu", "mish", "softmax"]
    assert [l.norm for l in m.layers] == ["layer", "batch", None] and [l.dropout for l in m.layers] == [0.1, 0, 0]
    assert (m.l1, m.l2, m.label_smoothing) == (1e-5, 1e-4, 0.05) and m.updates > 0
    assert not np.allclose(m.layers[1].running_var, 1)            # batch norm's statistics were saved
    assert metric(out, "validation", "accuracy") >= 0.8
    # the printed loss is the saved model's data loss on raw features (its penalty left out)
    code, out, err = run("evaluate", tmp_path / "m.fbp", path)
    assert code == 0, err
    assert metric(out, re.escape(str(path)), "loss") == pytest.approx(
        m.evaluate(X, y.astype(np.int64))["loss"] - m.penalty(), abs=1e-4)
    # one value for every hidden layer keeps the model's arguments single
    code, out, err = run("train", path, "--layers", "8,8", "--activation", "silu", "--norm", "layer", "--dropout",
                         "0.2", "--epochs", "1", "--quiet", "--out", tmp_path / "s.fbp")
    assert code == 0, err
    assert "8 -> 8 -> 3, silu/softmax, layer norm, dropout 0.2, loss cross_entropy, " in out
    s = fastbp.load(tmp_path / "s.fbp")
    assert (s.activation, s.norm, s.dropout, s.l2) == ("silu", "layer", 0.2, 0.0)


def test_train_regression_losses(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((500, 3))
    rate = np.exp(0.7 * X[:, 0] - 0.4 * X[:, 1] + 1.0)
    counts = rng.poisson(rate).astype(float)
    path = write_csv(tmp_path / "counts.csv", X, counts, target="n")
    # poisson: regression even on whole-number targets, an exp output on the raw counts
    code, out, err = run("train", path, "--loss", "poisson", "--layers", "16", "--epochs", "40", "--quiet",
                         "--dtype", "float64", "--out", tmp_path / "p.fbp")
    assert code == 0, err
    assert "regress" in out and "16 -> 1, relu/exp, loss poisson" in out and "standardized" not in out
    m = fastbp.load(tmp_path / "p.fbp")
    assert m.output == "exp" and m.loss == "poisson"
    assert metric(out, "validation", "r2") > 0.3                    # counts are noisy ...
    assert (m.predict(X) > 0).all() and np.corrcoef(m.predict(X)[:, 0], rate)[0, 1] > 0.95    # ... their rate less
    code, out, err = run("predict", tmp_path / "p.fbp", path)
    assert out.splitlines()[0] == "prediction"
    np.testing.assert_allclose(np.array(out.split()[1:], float), m.predict(X)[:, 0], rtol=1e-15)
    # huber: --huber-delta in the target's units (training on standardized targets divides it by
    # their standard deviation); the saved model holds it in those units
    y = 1000 + 300 * X[:, 0] + rng.standard_normal(500) * 30
    path = write_csv(tmp_path / "r.csv", X, y, target="price")
    code, out, err = run("train", path, "--loss", "huber", "--huber-delta", "50", "--epochs", "40", "--quiet",
                         "--dtype", "float64", "--seed", "1", "--out", tmp_path / "h.fbp")
    assert code == 0, err
    assert "loss huber (delta 50)" in out
    h = fastbp.load(tmp_path / "h.fbp")
    assert h.loss == "huber" and h.huber_delta == 50.0
    assert metric(out, "validation", "r2") > 0.9
    code, out, err = run("evaluate", tmp_path / "h.fbp", path)
    assert metric(out, re.escape(str(path)), "loss") == pytest.approx(h.evaluate(X, y)["loss"], rel=1e-4)
    # mae on whole-number targets regresses too
    code, out, err = run("train", tmp_path / "counts.csv", "--loss", "mae", "--epochs", "2", "--quiet",
                         "--out", tmp_path / "a.fbp")
    assert code == 0 and "regress" in out and fastbp.load(tmp_path / "a.fbp").loss == "mae"


def test_batch_norm_with_auto_batch_avoids_a_one_row_minibatch(tmp_path):
    X, y = load_iris(dtype="float64")
    path = write_csv(tmp_path / "small.csv", X[::4][:33], y[::4][:33], target="t")
    assert cli.auto_batch(33) == 16 and 33 % 16 == 1
    code, out, err = run("train", path, "--norm", "batch", "--val-split", "0", "--epochs", "2", "--quiet",
                         "--out", tmp_path / "b.fbp")
    assert code == 0, err
    assert ", batch 17, " in out


def test_train_help_lists_the_layer_options(capsys):
    code, _, _ = run("train", "--help")                  # argparse prints help to sys.stdout
    assert code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--activation NAME[,NAME...]", "--norm NORM[,NORM...]", "--dropout RATE[,RATE...]", "--l1", "--l2",
                 "--huber-delta DELTA", "--label-smoothing EPS", "gelu,relu", "layer,none", "0.1,0.2"):
        assert flag in text, flag


def test_train_on_npz_and_npy(tmp_path):
    X, y = load_iris()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.save(tmp_path / "d.npy", np.c_[y, X])                       # target first: --target 0
    code, out, err = run("train", tmp_path / "d.npz", "--epochs", 2, "--quiet", "--out", tmp_path / "a.fbp")
    assert code == 0 and "150 samples x 4 features" in out, err
    code, out, err = run("train", tmp_path / "d.npy", "--target", 0, "--epochs", 2, "--quiet", "--out", tmp_path / "b.fbp")
    assert code == 0 and "150 samples x 4 features" in out and "3 classes" in out, err


def test_auto_batch_and_task_rules():
    assert cli.auto_batch(100_000) == 256 and cli.auto_batch(1617) == 32 and cli.auto_batch(100) == 16
    assert cli.decide_task("auto", np.array([0.0, 2.0, 1.0]), "t") == ("classify", 3)
    assert cli.decide_task("auto", np.array([0.5, 2.0]), "t") == ("regress", 1)
    assert cli.decide_task("auto", np.array([-1.0, 2.0]), "t") == ("regress", 1)
    assert cli.decide_task("auto", np.array([0.0, 150.0]), "t") == ("regress", 1)
    assert cli.decide_task("classify", np.array([0.0, 150.0]), "t") == ("classify", 151)
    assert cli._layers_type("") == [] and cli._layers_type(" 64, 32 ") == [64, 32]


def test_no_hidden_layer(tmp_path):
    code, out, err = run("train", "iris", "--layers", "", "--epochs", 2, "--quiet", "--out", tmp_path / "m.fbp")
    assert code == 0 and "4 -> 3, relu/softmax" in out and fastbp.load(tmp_path / "m.fbp").sizes == [4, 3]


def test_progress_bar_on_a_terminal_and_quiet(monkeypatch, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    code, out, _ = run("train", "iris", "--epochs", 2, "--out", tmp_path / "m.fbp")
    assert code == 0
    bar = term.getvalue()
    assert "epoch 1/2" in bar and "epoch 2/2" in bar and "sample/s" in bar and "accuracy:" in bar
    term.seek(0)
    term.truncate()
    assert run("train", "iris", "--epochs", 2, "--quiet", "--out", tmp_path / "m.fbp")[0] == 0
    assert term.getvalue() == ""


# ---- info and entry points ------------------------------------------------------------------------
def test_info_lists_version_threads_layer_blas_cache():
    code, out, err = run("info")
    assert code == 0, err
    assert out.startswith(f"fastbp {fastbp.__version__}\n")
    assert f"threads: {fastbp.get_num_threads()} " in out
    layer = re.search(r"^threading layer: (\w+)", out, re.M).group(1)
    assert layer in ("omp", "tbb", "workqueue")
    assert re.search(r"^BLAS: \w+", out, re.M)
    cache = re.search(r"^compile cache: (.+) \((not )?writable\)$", out, re.M).group(1)
    assert os.path.isabs(cache)


def test_python_dash_m_fastbp_and_exit_codes(tmp_path):
    env = subprocess_env()
    r = subprocess.run([sys.executable, "-m", "fastbp", "info"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith(f"fastbp {fastbp.__version__}"), r.stderr
    r = subprocess.run([sys.executable, "-m", "fastbp", "train", "missing.csv"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip() == "fastbp: error: DATA: no such file: 'missing.csv'"
    r = subprocess.run([sys.executable, "-m", "fastbp", "--version"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == f"fastbp {fastbp.__version__}"


def test_console_script_points_at_main():
    import tomllib
    root = os.path.dirname(os.path.dirname(fastbp.__file__))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    module, _, func = scripts["fastbp"].partition(":")
    assert module == "fastbp.cli" and getattr(cli, func) is cli.main


def test_no_command_prints_help_and_help_exits_zero():
    code, out, err = run()
    assert code == 2 and "train" in out and "predict" in out
    code, out, err = run("train", "--help")
    assert code == 0


# ---- MPI ----------------------------------------------------------------------------------------
class FakeComm:
    def __init__(self, rank, size=2):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


@pytest.mark.parametrize("rank", [0, 1])
def test_under_mpi_fit_gets_the_comm_and_only_rank_0_speaks(monkeypatch, tmp_path, rank):
    comm = FakeComm(rank)
    seen = {}
    real_fit = fastbp.MLP.fit

    def fit(self, X, y, comm=None, **kw):
        seen["comm"], seen["verbose"] = comm, kw["verbose"]
        return real_fit(self, X, y, **kw)

    monkeypatch.setattr(cli, "_launched_comm", lambda: comm)
    monkeypatch.setattr(fastbp.MLP, "fit", fit)
    code, out, err = run("train", "iris", "--epochs", 1, "--out", tmp_path / "m.fbp")
    assert code == 0, err
    assert seen["comm"] is comm
    if rank == 0:
        assert "2 MPI ranks" in out and (tmp_path / "m.fbp").exists()
    else:
        assert out == "" and seen["verbose"] == 0 and not (tmp_path / "m.fbp").exists()


def test_launched_comm_without_distributed_support_means_single_process(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastbp.distributed", None)          # import raises ImportError
    assert cli._launched_comm() is None


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs an MPI launcher")
@pytest.mark.parametrize("layers", [[], ["--norm", "batch,layer", "--dropout", "0.1"]], ids=["plain", "norm"])
def test_mpiexec_two_ranks_end_to_end(tmp_path, layers):
    pytest.importorskip("mpi4py")
    env = subprocess_env(NUMBA_NUM_THREADS="1")
    r = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "fastbp", "train", "iris", "--epochs", "2",
                        *layers, "--quiet", "--out", str(tmp_path / "m.fbp")], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("model saved to") == 1 and "2 MPI ranks" in r.stdout
    m = fastbp.load(tmp_path / "m.fbp")
    assert m.sizes == [4, 64, 32, 3]
    if layers:
        assert m.layers[0].running_var is not None and not np.allclose(m.layers[0].running_var, 1)


# ---- tables: mixed columns, gaps, class names ----------------------------------------------------------
MIXED_COLUMNS = ["age", "city", "member", "income", "plan", "label"]
TRAIN_MIXED = ["--target", "label", "--layers", "16", "--epochs", "4", "--seed", "5", "--quiet"]


def mixed_rows(n, seed):
    """Rows as a user's export holds them: blanks and NA spellings, booleans, quoted commas, a text target."""
    rng = np.random.default_rng(seed)
    cities = ["paris", "lyon", "nice, old town", "Zurich", "", "NA"]
    rows = []
    for _ in range(n):
        age = int(rng.integers(18, 80))
        city = cities[int(rng.integers(0, len(cities)))]
        high = (age > 45) != (city == "paris")
        rows.append([str(age) if rng.random() > 0.1 else "",
                     city,
                     str(rng.choice(["true", "false", ""])),
                     f"{rng.normal(3000, 800):.2f}" if rng.random() > 0.07 else str(rng.choice(["", "n/a"])),
                     str(rng.choice(["basic", "pro"])),
                     ("high" if high else "low") if rng.random() > 0.03 else ""])
    return rows


def write_rows(path, names, rows):
    import csv
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """`fastbp train FILE --target label` on a mixed CSV; the model, its output, the rows."""
    d = tmp_path_factory.mktemp("mixed")
    rows = mixed_rows(300, 0)
    path = write_rows(d / "mixed.csv", MIXED_COLUMNS, rows)
    code, out, err = run("train", path, *TRAIN_MIXED, "--out", d / "m.fbp")
    return dict(dir=d, csv=path, rows=rows, model=d / "m.fbp", code=code, out=out, err=err)


def test_train_on_a_mixed_csv_reports_what_it_did_with_the_columns(mixed):
    assert mixed["code"] == 0, mixed["err"]
    out = mixed["out"]
    # the report, recomputed here from the rows: the split is the seeded permutation of the rows that
    # have a target, the counts are those of its training part
    kept = [r for r in mixed["rows"] if r[5] != ""]
    n = len(kept)
    perm = np.random.default_rng(5).permutation(n)
    train = [kept[i] for i in sorted(perm[: n - int(round(n * 0.1))])]
    blank = lambda v: v in ("", "NA", "n/a")                 # noqa: E731
    gaps = [sum(blank(r[j]) for r in train) for j in (0, 2, 3)]
    cats = len({r[1] for r in train if not blank(r[1])}) + len({r[4] for r in train})
    assert f"data: {mixed['csv']}: {n} samples x " in out and "target 'label', classify (2 classes)" in out
    assert (f"columns: 3 numeric ({sum(g > 0 for g in gaps)} with gaps, {sum(gaps)} cells filled), 2 categorical "
            f"({cats} categories); {len(mixed['rows']) - n} rows with a missing target dropped") in out.splitlines()
    assert "takes raw columns, by name" in out
    model = fastbp.load(mixed["model"])
    prep = model.preprocessor
    assert prep.classes_ == ["high", "low"] and prep.target_ == "label"
    assert prep.feature_names_in_ == MIXED_COLUMNS[:5]
    assert model.sizes[0] == prep.n_features_out == 3 + sum(g > 0 for g in gaps) + cats


def test_the_same_data_as_parquet_or_gzip_gives_the_same_model_bits(mixed, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pd = pytest.importorskip("pandas")
    import gzip
    from fastbp import tables
    pq.write_table(tables.read_table(mixed["csv"]), tmp_path / "arrow.parquet")
    pd.read_csv(mixed["csv"]).to_parquet(tmp_path / "pandas.parquet")      # other column types, same values
    with gzip.open(tmp_path / "m.csv.gz", "wb") as f:
        f.write(mixed["csv"].read_bytes())
    ref = fastbp.load(mixed["model"])
    for name in ("arrow.parquet", "pandas.parquet", "m.csv.gz"):
        code, out, err = run("train", tmp_path / name, *TRAIN_MIXED, "--out", tmp_path / "p.fbp")
        assert code == 0, err
        m = fastbp.load(tmp_path / "p.fbp")
        assert m.params.tobytes() == ref.params.tobytes(), name
        assert m.preprocessor.to_json() == ref.preprocessor.to_json(), name


def test_predict_takes_columns_in_any_order_extra_ones_and_unseen_categories(mixed, tmp_path):
    pd = pytest.importorskip("pandas")
    from fastbp import tables
    df = pd.read_csv(mixed["csv"])
    df = df[list(reversed(df.columns))]
    df["extra"] = "ignored"
    df.loc[:9, "city"] = "atlantis"                      # never seen in training
    df.loc[10:14, "age"] = np.nan
    new = tmp_path / "new.csv"
    df.to_csv(new, index=False)
    code, out, err = run("predict", mixed["model"], new, "-o", tmp_path / "preds.csv")
    assert code == 0, err
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert list(preds.columns) == ["class", "p_high", "p_low"]
    model = fastbp.load(mixed["model"])
    for frame in (pd.read_csv(new), tables.read_table(new)):
        P = model.predict(frame)
        np.testing.assert_array_equal(preds[["p_high", "p_low"]].to_numpy().astype(np.float32), P)
        np.testing.assert_array_equal(preds["class"].to_numpy(), model.predict_labels(frame))
        np.testing.assert_array_equal(P, tables.predict_frame(model, frame))
    code, out2, err = run("predict", mixed["model"], new)
    assert code == 0 and out2 == (tmp_path / "preds.csv").read_text()


def test_evaluate_a_raw_table(mixed):
    from fastbp import tables
    code, out, err = run("evaluate", mixed["model"], mixed["csv"])
    assert code == 0, err
    model = fastbp.load(mixed["model"])
    X, y, dropped = model.preprocessor.transform_xy(tables.read_table(mixed["csv"]))
    ev = model.evaluate(X, y)
    assert f"{len(y)} samples: loss " in out and f"({dropped.sum()} rows with a missing target skipped)" in out
    assert float(re.search(r"loss (\S+)", out).group(1)) == pytest.approx(ev["loss"], abs=5e-5)
    assert float(re.search(r"accuracy (\S+)", out).group(1)) == pytest.approx(ev["accuracy"], abs=5e-5)
    # the task's metrics, as model.evaluate on the raw table gives them
    on_frame = model.evaluate(tables.read_table(mixed["csv"]), metrics=["accuracy", "auc", "f1"])
    assert on_frame == pytest.approx(model.evaluate(X, y, metrics=["accuracy", "auc", "f1"]), abs=0)
    for name in ("auc", "f1"):
        assert float(re.search(rf"\b{name} (\S+)", out).group(1)) == pytest.approx(on_frame[name], abs=5e-5)


def test_a_numeric_csv_trains_exactly_as_the_same_arrays(tmp_path):
    X, y = load_iris(dtype="float64")
    write_csv(tmp_path / "iris.csv", X, y, target="species")
    np.savez(tmp_path / "iris.npz", X=X, y=y)
    args = ["--epochs", "3", "--quiet", "--seed", "2"]
    assert run("train", tmp_path / "iris.csv", *args, "--out", tmp_path / "c.fbp")[0] == 0
    assert run("train", tmp_path / "iris.npz", *args, "--out", tmp_path / "n.fbp")[0] == 0
    c, n = fastbp.load(tmp_path / "c.fbp"), fastbp.load(tmp_path / "n.fbp")
    assert c.params.tobytes() == n.params.tobytes()
    assert c.preprocessor.feature_names_out == [f"f{i}" for i in range(4)]
    code, out, err = run("predict", tmp_path / "n.fbp", tmp_path / "iris.csv")     # an array model: by position
    assert code == 0 and out.splitlines()[0] == "class,p0,p1,p2"


def test_sparse_npz_with_targets_beside_it_and_svmlight(tmp_path, monkeypatch):
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    X = sp.random(200, 30, density=0.1, format="csr", random_state=1)
    y = (np.asarray(X.sum(1)).ravel() > np.median(np.asarray(X.sum(1)))).astype(np.int64)
    sp.save_npz(tmp_path / "s.npz", X)
    np.save(tmp_path / "s.y.npy", y)
    np.save(tmp_path / "other.npy", rng.integers(0, 3, 200))
    args = ["--epochs", "3", "--quiet"]
    code, out, err = run("train", tmp_path / "s.npz", *args, "--out", tmp_path / "s.fbp")
    assert code == 0 and "200 samples x 30 features" in out and "2 classes" in out, err
    model = fastbp.load(tmp_path / "s.fbp")
    code, out, err = run("train", tmp_path / "s.npz", "--target", tmp_path / "other.npy", *args, "--out",
                         tmp_path / "o.fbp")
    assert code == 0 and "3 classes" in out, err
    code, out, err = run("predict", tmp_path / "s.fbp", tmp_path / "s.npz")          # no targets needed
    assert code == 0, err
    P = np.array([line.split(",")[1:] for line in out.splitlines()[1:]], float).astype(np.float32)
    np.testing.assert_array_equal(P, model.predict(X))
    code, out, err = run("evaluate", tmp_path / "s.fbp", tmp_path / "s.npz")
    assert code == 0 and "200 samples" in out, err

    pytest.importorskip("sklearn")
    from sklearn.datasets import dump_svmlight_file, load_svmlight_file
    dump_svmlight_file(X, y, str(tmp_path / "s.svm"))
    code, out, err = run("train", tmp_path / "s.svm", *args, "--out", tmp_path / "v.fbp")
    assert code == 0 and "200 samples x 30 features" in out, err
    assert fastbp.load(tmp_path / "v.fbp").params.tobytes() == model.params.tobytes()    # the same data
    Xv, _ = load_svmlight_file(str(tmp_path / "s.svm"), n_features=30)
    code, out, err = run("predict", tmp_path / "v.fbp", tmp_path / "s.svm")
    P = np.array([line.split(",")[1:] for line in out.splitlines()[1:]], float).astype(np.float32)
    np.testing.assert_array_equal(P, fastbp.load(tmp_path / "v.fbp").predict(Xv))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    code, out, err = run("train", tmp_path / "s.svm", *args, "--out", tmp_path / "v.fbp")
    assert code == 1 and err.strip() == ('fastbp: error: DATA: reading svmlight/libsvm files needs scikit-learn: '
                                         'pip install "fastbp[sklearn]"')


def test_sparse_files_train_predict_and_evaluate_without_densifying(tmp_path, monkeypatch):
    """X stays CSR from the file to the model (scaled by each column's largest magnitude, which
    the saved model folds in), and the model file predicts the raw file."""
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(100, 4000, density=0.01, format="csr", random_state=0) * 7.0
    y = np.arange(100) % 2
    sp.save_npz(tmp_path / "s.npz", X)
    np.save(tmp_path / "s.y.npy", y)
    for name in ("toarray", "todense"):
        def refuse(self, *a, _f=getattr(sp.csr_matrix, name), **k):
            assert self.shape[1] != 4000, "X densified"
            return _f(self, *a, **k)
        monkeypatch.setattr(sp.csr_matrix, name, refuse)
    code, out, err = run("train", tmp_path / "s.npz", "--quiet", "--epochs", "2", "--out", tmp_path / "s.fbp")
    assert code == 0, err
    code, out, err = run("predict", tmp_path / "s.fbp", tmp_path / "s.npz")
    assert code == 0, err
    P = np.array([line.split(",")[1:] for line in out.splitlines()[1:]], float)
    np.testing.assert_allclose(P, fastbp.load(tmp_path / "s.fbp").predict(X), rtol=1e-6)
    assert run("evaluate", tmp_path / "s.fbp", tmp_path / "s.npz")[0] == 0
    X.data[5] = np.nan
    sp.save_npz(tmp_path / "nan.npz", X)
    np.save(tmp_path / "nan.y.npy", y)
    code, out, err = run("train", tmp_path / "nan.npz", "--quiet")
    row = int(np.searchsorted(X.indptr, 5, side="right"))
    assert code == 1 and err.strip() == (f"fastbp: error: DATA: {str(tmp_path / 'nan.npz')!r} row {row}, column "
                                         f"{X.indices[5]}: expected a finite number, got nan")


# ---- errors: one line, non-zero exit, no traceback ------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, trained, mixed):
    d = tmp_path_factory.mktemp("bad")
    X, y = load_iris(dtype="float64")
    f = {"model": trained["path"], "dir": d, "table_model": mixed["model"]}
    f["iris"] = write_csv(d / "iris.csv", X, y, target="species")
    (d / "bad.csv").write_text("a,b,c\n1,2,3\n4,heavy,6\n")
    (d / "blank.csv").write_text("a,b,c\n1,2,3\n4,,6\n")
    (d / "ragged.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    (d / "nan.csv").write_text("a,b,c\n1,2,3\n4,nan,6\n")
    (d / "empty.csv").write_text("")
    (d / "header.csv").write_text("a,b,c\n")
    (d / "one.csv").write_text("a\n1\n2\n")
    (d / "ten.csv").write_text("a,b\n" + "".join(f"{i},{i % 2}\n" for i in range(10)))
    (d / "wide.csv").write_text(",".join(f"c{i}" for i in range(70)) + "\n" + ",".join(["1"] * 70) + "\n")
    (d / "data.xlsx").write_text("not really")
    (d / "notmodel.fbp").write_bytes(b"hello, this is not a model file at all")
    (d / "float.csv").write_text("a,t\n1,0.5\n2,1.5\n3,2.5\n4,0.25\n")
    (d / "negative.csv").write_text("a,t\n" + "".join(f"{i},{i % 4 - 1}\n" for i in range(20)))
    np.savez(d / "noX.npz", features=X)
    np.savez(d / "shorty.npz", X=X, y=y[:10])
    np.savez(d / "strings.npz", X=np.array([["a", "b"]] * 3), y=np.zeros(3))
    np.save(d / "flat.npy", np.arange(5.0))
    (d / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    # tables
    rows = "".join(f"{i},{i % 3},{'x' if i % 2 else 'y'}\n" for i in range(40))
    (d / "allempty.csv").write_text("a,b,t\n" + "".join(f"{i},,{i % 2}\n" for i in range(40)))
    (d / "oneclass.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},x\n" for i in range(40)))
    (d / "oneclass_num.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},0\n" for i in range(40)))
    (d / "text_target.csv").write_text("a,b,y\n" + rows)
    (d / "cats.csv").write_text("a,c,y\n" + "".join(f"{i},c{i % 5},{i % 2}\n" for i in range(40)))
    (d / "dates.csv").write_text("a,d,y\n" + "".join(f"{i},2020-01-{i % 28 + 1:02d},{i % 2}\n" for i in range(40)))
    (d / "inf.csv").write_text("a,b,y\n" + "".join(f"{i},{'inf' if i == 7 else i},{i % 2}\n" for i in range(40)))
    (d / "junk.csv").write_bytes(bytes(range(256)) * 4)
    (d / "junk.parquet").write_bytes(b"PAR1" + bytes(range(256)))
    (d / "missingcol.csv").write_text("age,member,income,plan\n30,true,100,pro\n")
    (d / "badcell.csv").write_text("a,b,y\n" + "".join(f"{i},{'12,5' if i == 6 else i / 4},{i % 2}\n"
                                                     for i in range(40)).replace("12,5", '"12,5"'))
    mixed_text = mixed["csv"].read_text()
    (d / "unknown_class.csv").write_text(mixed_text.replace(",high\n", ",medium\n", 1))
    sp = pytest.importorskip("scipy.sparse")
    sp.save_npz(d / "sp.npz", sp.csr_matrix(X))
    (d / "bad.svm").write_text("1 1:0.5 2:x\n")
    return f


def P(name):
    return lambda f: str(f["dir"] / name)


M = lambda f: str(f["model"])          # noqa: E731
TM = lambda f: str(f["table_model"])   # noqa: E731
IRIS = lambda f: str(f["iris"])        # noqa: E731

ERRORS = [
    # (argv builder, code, expected fragment of the single stderr line)
    (lambda f: ["train", P("nope.csv")(f)], 1, "DATA: no such file: "),
    (lambda f: ["train", str(f["dir"])], 1, "DATA: expected a file, got the directory"),
    (lambda f: ["train", P("data.xlsx")(f)], 1, "DATA: expected a .csv, .csv.gz, .tsv, .tsv.gz, .parquet, .npz, .npy "
                                                 "or .svm/.svmlight/.libsvm file, got 'data.xlsx'"),
    (lambda f: ["train", IRIS(f), "--target", "colour"], 1,
     "--target: no column 'colour' in"),
    # a model trained on arrays takes tables of numbers only, by position
    (lambda f: ["predict", M(f), P("bad.csv")(f)], 1,
     "column 'b' holds text such as 'heavy'; this model takes numbers only"),
    (lambda f: ["predict", M(f), P("blank.csv")(f)], 1, "column 'b' row 2 is empty; this model takes numbers only"),
    (lambda f: ["predict", M(f), P("nan.csv")(f)], 1, "column 'b' row 2 is empty"),
    (lambda f: ["train", P("ragged.csv")(f)], 1, "not a CSV table (CSV parse error: Expected 3 columns, got 2"),
    (lambda f: ["train", P("inf.csv")(f)], 1, "column 'b' row 8: expected a finite number or a blank, got inf"),
    (lambda f: ["train", P("empty.csv")(f)], 1, "is empty; expected a header row of column names"),
    (lambda f: ["train", P("header.csv")(f)], 1, "has a header but no data rows"),
    (lambda f: ["train", P("one.csv")(f)], 1, "has 1 column; expected feature columns plus a target column"),
    (lambda f: ["train", P("noX.npz")(f)], 1, "holds arrays ['features']; expected one named 'X'"),
    (lambda f: ["train", P("shorty.npz")(f)], 1, "array 'y' has shape (10,); expected (150,) to match X"),
    (lambda f: ["train", P("strings.npz")(f)], 1, "array 'X' has dtype <U1; expected numbers"),
    (lambda f: ["train", P("flat.npy")(f)], 1, "holds shape (5,); expected a 2-D array"),
    (lambda f: ["train", P("broken.npy")(f)], 1, "cannot read"),
    (lambda f: ["train", IRIS(f), "--task", "regress", "--loss", "cross_entropy"], 1, "--loss: cross_entropy needs class labels, but the task is regress"),
    (lambda f: ["train", P("float.csv")(f), "--task", "classify"], 1,
     "--task classify: target 't' must hold class labels 0, 1, 2, ...; got 0.5"),
    (lambda f: ["train", IRIS(f), "--loss", "binary_cross_entropy"], 1,
     "--loss: binary_cross_entropy takes 2 classes, target 'species' has 3"),
    (lambda f: ["train", "iris", "--target", "x"], 1, "--target: the embedded dataset 'iris' has its own target"),
    (lambda f: ["train", "--threads", "999"], 1, "--threads: expected at most"),
    (lambda f: ["train", P("ten.csv")(f), "--val-split", "0.01"], 1,
     "--val-split: 0.01 of 10 samples leaves no training or no validation data"),
    (lambda f: ["train", "iris", "--epochs", "1", "--out", P("no/such/dir/m.fbp")(f)], 1, "--out: cannot write"),
    (lambda f: ["train", "parts", "--task", "regress", "--optimizer", "sgd", "--lr", "1e30", "--out",
                P("div.fbp")(f), "--epochs", "3"], 1, "training diverged"),
    (lambda f: ["predict", M(f), P("nope.csv")(f)], 1, "DATA: no such file"),
    (lambda f: ["predict", P("nope.fbp")(f), IRIS(f)], 1, "MODEL: no such file: "),
    (lambda f: ["predict", P("notmodel.fbp")(f), IRIS(f)], 1, "MODEL: "),
    (lambda f: ["predict", IRIS(f), IRIS(f)], 1, "not a valid fastbp file"),
    (lambda f: ["predict", M(f), IRIS(f)], 1,
     "has 5 columns; expected the model's 64 feature columns (or 65 with a target column)"),
    (lambda f: ["predict", M(f), P("wide.csv")(f)], 1, "has 70 columns; expected the model's 64"),
    (lambda f: ["evaluate", M(f), IRIS(f)], 1, "expected the model's 64 feature columns plus one target column"),
    (lambda f: ["evaluate", M(f), P("bad.csv")(f)], 1, "column 'b' holds text such as 'heavy'"),
    # tables
    (lambda f: ["predict", TM(f), P("missingcol.csv")(f)], 1, "missingcol.csv': no column 'city'; the preprocessing "
                                                               "reads ['age', 'city', 'member', 'income', 'plan']"),
    (lambda f: ["evaluate", TM(f), P("missingcol.csv")(f)], 1, "no column 'label'"),
    (lambda f: ["evaluate", TM(f), P("unknown_class.csv")(f)], 1,
     "holds class 'medium', which is not among the model's classes ['high', 'low']"),
    (lambda f: ["train", P("allempty.csv")(f)], 1, "allempty.csv' column 'b' is empty (no value in any row); --drop it"),
    (lambda f: ["train", P("badcell.csv")(f)], 1, "badcell.csv': column 'b' row 7 holds '12,5', not a number, while 39 "
                                                   "of its 40 filled cells are numbers (1 is not); fix that cell"),
    (lambda f: ["train", P("oneclass.csv")(f)], 1,
     "target column 'y' has one class ('x'); classification needs at least two"),
    (lambda f: ["train", P("oneclass_num.csv")(f)], 1,
     "target 'y' has one class (0) in all 40 samples; classification needs at least two"),
    (lambda f: ["train", P("text_target.csv")(f), "--task", "regress"], 1,
     "--task regress: target 'y' holds class names such as 'x'"),
    (lambda f: ["train", P("junk.csv")(f)], 1, "junk.csv: holds binary data (NUL bytes), not CSV text"),
    (lambda f: ["train", P("junk.parquet")(f)], 1, "junk.parquet: not a Parquet table"),
    (lambda f: ["train", P("cats.csv")(f), "--max-categories", "3"], 1,
     "column 'c' has 5 categories, more than --max-categories 3; raise the limit, or --drop the column"),
    (lambda f: ["train", P("dates.csv")(f)], 1, "column 'd' has type date32[day]; expected numbers, booleans or text"),
    (lambda f: ["train", IRIS(f), "--drop", "colour"], 1, "--drop: no column 'colour' in"),
    (lambda f: ["train", IRIS(f), "--drop", "species"], 1, "--drop: 'species' is the target column"),
    (lambda f: ["train", "iris", "--drop", "x"], 1, "--drop: leaves out columns of a table file"),
    (lambda f: ["train", P("sp.npz")(f)], 1, "is a sparse matrix; its targets go in a 1-D .npy beside it, 'sp.y.npy'"),
    (lambda f: ["train", P("sp.npz")(f), "--target", "y.txt"], 1,
     "--target: for a sparse .npz, expected the .npy file of its targets, got 'y.txt'"),
    (lambda f: ["train", P("bad.svm")(f)], 1, "is not a readable svmlight/libsvm file"),
    # usage errors (argparse), exit code 2
    (lambda f: ["train", "--epochs", "x"], 2, "argument --epochs: expected an integer, got 'x'"),
    (lambda f: ["train", "--epochs", "0"], 2, "argument --epochs: expected an integer >= 1, got 0"),
    (lambda f: ["train", "--lr", "-1"], 2, "argument --lr: expected a number > 0, got -1"),
    (lambda f: ["train", "--lr", "nan"], 2, "argument --lr: expected a finite number, got 'nan'"),
    (lambda f: ["train", "--layers", "64,x"], 2, "argument --layers: expected comma-separated widths >= 1"),
    (lambda f: ["train", "--val-split", "1"], 2, "argument --val-split: expected a number < 1, got 1"),
    (lambda f: ["train", "--batch-size", "0"], 2, "argument --batch-size: expected an integer >= 1, got 0"),
    (lambda f: ["train", "--max-categories", "0"], 2, "argument --max-categories: expected an integer >= 1, got 0"),
    (lambda f: ["train", "--drop", "a,,b"], 2, "argument --drop: expected comma-separated column names"),
    (lambda f: ["train", "--activation", "swish"], 2, "argument --activation: invalid choice: 'swish'"),
    (lambda f: ["train", "--optimizer", "lbfgs"], 2, "argument --optimizer: invalid choice: 'lbfgs'"),
    # per hidden layer: one value or one per hidden layer of --layers; names listed
    (lambda f: ["train", "--activation", "gelu,relu,tanh"], 2,
     "argument --activation: expected one value or 2 (one per hidden layer of --layers 64,32), got 3: gelu,relu,tanh"),
    (lambda f: ["train", "--activation", "gelu,swish"], 2,
     "argument --activation: invalid choice: 'swish' (choose from elu, gelu, gelu_tanh, leaky_relu, linear, mish, "
     "relu, selu, sigmoid, silu, softplus, tanh;"),
    (lambda f: ["train", "--norm", "layer,group"], 2,
     "argument --norm: invalid choice: 'group' (choose from none, layer, batch;"),
    (lambda f: ["train", "--layers", "8", "--norm", "layer,none"], 2,
     "argument --norm: expected one value or 1 (one per hidden layer of --layers 8), got 2"),
    (lambda f: ["train", "--dropout", "1"], 2,
     "argument --dropout: expected a rate in [0, 1), or comma-separated rates"),
    (lambda f: ["train", "--dropout", "0.1,-0.1"], 2, "argument --dropout: expected a rate in [0, 1)"),
    (lambda f: ["train", "--dropout", "0.1,0.2,0.3"], 2, "argument --dropout: expected one value or 2"),
    (lambda f: ["train", "--layers", "", "--norm", "batch"], 2,
     "argument --norm: the network has no hidden layer (--layers ''), so nothing to apply it to"),
    (lambda f: ["train", "--l2", "-1"], 2, "argument --l2: expected a number >= 0, got -1"),
    (lambda f: ["train", "--l1", "x"], 2, "argument --l1: expected a number, got 'x'"),
    (lambda f: ["train", "--huber-delta", "0"], 2, "argument --huber-delta: expected a number > 0, got 0"),
    (lambda f: ["train", "--label-smoothing", "1"], 2, "argument --label-smoothing: expected a number < 1, got 1"),
    (lambda f: ["train", "--loss", "quantile"], 2, "argument --loss: invalid choice: 'quantile'"),
    # settings that do not fit the loss or the data
    (lambda f: ["train", "iris", "--label-smoothing", "0.1", "--loss", "mse"], 1,
     "--label-smoothing: applies to --loss cross_entropy only, got --loss mse"),
    (lambda f: ["train", "iris", "--huber-delta", "2"], 1,
     "--huber-delta: applies to --loss huber only, got --loss cross_entropy"),
    (lambda f: ["train", IRIS(f), "--loss", "poisson", "--task", "classify"], 1,
     "--loss poisson: a regression loss, but --task classify"),
    (lambda f: ["train", P("text_target.csv")(f), "--loss", "mae"], 1,
     "--loss mae: a regression loss, but target 'y' holds class names such as 'x'"),
    (lambda f: ["train", P("negative.csv")(f), "--loss", "poisson"], 1,
     "--loss poisson: target 't' must hold counts or rates >= 0; got -1"),
    (lambda f: ["train", P("ten.csv")(f), "--norm", "batch", "--batch-size", "4", "--val-split", "0.1"], 1,
     "--norm batch: minibatches of 4 over the 9 training rows leave one of a single row"),
    (lambda f: ["predict", M(f)], 2, "the following arguments are required: DATA"),
    (lambda f: ["fit"], 2, "argument COMMAND: invalid choice: 'fit'"),
]


@pytest.mark.parametrize("i", range(len(ERRORS)))
def test_error_is_one_clear_line_and_a_nonzero_exit(files, i):
    build, expected_code, fragment = ERRORS[i]
    code, out, err = run(*build(files))
    assert code == expected_code, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastbp"), err
    assert fragment in lines[0], err
    assert "Traceback" not in err


def test_predict_output_path_that_cannot_be_written(files):
    X, _ = load_digits()
    np.save(files["dir"] / "feat.npy", X[:3])
    code, out, err = run("predict", M(files), files["dir"] / "feat.npy", "-o", files["dir"] / "no" / "p.csv")
    assert code == 1 and err.strip().startswith("fastbp: error: -o/--output: cannot write")


def test_plot_draws_the_loss_and_the_tasks_metrics(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    drawn = {}
    plot = fastbp.History.plot

    def spy(self, path=None, metrics=None):
        drawn["metrics"] = metrics
        drawn["keys"] = sorted(self.history)
        return plot(self, path, metrics)

    monkeypatch.setattr(fastbp.History, "plot", spy)
    code, out, err = run("train", "iris", "--epochs", 2, "--quiet", "--out", tmp_path / "m.fbp",
                         "--plot", tmp_path / "c.png")
    assert code == 0, err
    assert drawn["metrics"] == ["loss", "accuracy", "auc", "f1"]
    assert {"auc", "val_auc", "f1", "val_f1"} <= set(drawn["keys"])
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_plot_without_matplotlib_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run("train", "iris", "--epochs", 1, "--quiet", "--out", tmp_path / "m.fbp",
                         "--plot", tmp_path / "c.png")
    assert code == 1 and err.strip() == "fastbp: error: --plot: History.plot needs matplotlib: pip install 'fastbp[plot]'"
    assert (tmp_path / "m.fbp").exists()           # the model was saved before the plot failed


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(args, out, err):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "info", interrupted)
    code, out, err = run("info")
    assert code == 130 and err.strip() == "fastbp: interrupted"
