"""Checkpoints survive crashes: atomic writes, and resume after a real kill -9 ends bit-identical.

The crash tests run real subprocesses and SIGKILL them at a random moment: no Python cleanup
runs, exactly as with a power cut of the process (the OS still flushes its page cache).
"""
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastbp
from fastbp import io

ROOT = str(Path(fastbp.__file__).resolve().parent.parent)
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def spawn(tmp_path, source, *args):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=tmp_path, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(proc, prefix, timeout=300):
    """The first stdout line starting with prefix (fails if the child ends or times out first)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"child ended before printing {prefix!r}: {proc.stderr.read()[-3000:]}")
        if line.startswith(prefix):
            return line
    pytest.fail(f"no {prefix!r} from the child in {timeout} s")


def kill9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


# ---- atomic_write: the protocol ----------------------------------------------------------------
def test_write_goes_to_a_temp_file_in_the_same_folder_then_fsync_then_replace(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", fd)), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", a, b)), real_replace(a, b))[1])
    target = tmp_path / "m.fbp"
    fastbp.MLP([3, 2]).save(target)
    kinds = [e[0] for e in events]
    assert kinds[:2] == ["fsync", "replace"], kinds            # file data durable before the rename
    _, src, dst = events[1]
    assert os.path.dirname(src) == str(tmp_path) and dst == str(target) and src != dst
    assert kinds[2:] == ["fsync"]                               # then the folder entry
    assert sorted(os.listdir(tmp_path)) == ["m.fbp"]


@pytest.mark.parametrize("fail_at", ["write", "fsync", "replace"])
def test_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "m.fbp"
    old = fastbp.MLP([3, 4, 2], seed=1)
    old.save(target)
    before = target.read_bytes()
    new = fastbp.MLP([3, 4, 2], seed=2)

    def boom(*a, **k):
        raise OSError(28, "No space left on device (simulated)")

    if fail_at == "write":
        def chunks():
            yield b"\x89FASTBP\n partial"
            boom()
        with pytest.raises(OSError):
            io.atomic_write(target, chunks())
    else:
        monkeypatch.setattr(os, fail_at, boom)
        with pytest.raises(OSError, match="simulated"):
            new.save(target)
    assert target.read_bytes() == before
    assert np.array_equal(fastbp.load(target).params, old.params)
    assert sorted(os.listdir(tmp_path)) == ["m.fbp"], "temp file left behind"


def test_keyboard_interrupt_during_a_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "m.fbp"
    fastbp.MLP([2, 2], seed=1).save(target)
    before = target.read_bytes()

    def chunks():
        yield b"x" * 100
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.atomic_write(target, chunks())
    assert target.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.fbp"]


# ---- atomic_write: real crashes ------------------------------------------------------------------
SAVER = """
    import sys
    import numpy as np
    import fastbp
    from fastbp import io
    model = fastbp.MLP([1000, 1000, 500], seed=0)            # 1.5 M params: each file is ~18 MB
    opt = fastbp.Adam()
    s0, s1 = opt.state_for(model.params)
    opt.iterations = 1
    hist = fastbp.History()
    i = 0
    while True:
        i += 1
        model.params[:] = i
        s0[:] = i
        s1[:] = i
        io.save_checkpoint(sys.argv[1], model, opt, i, hist)
        print("saved", i, flush=True)
"""


@pytest.mark.slow
def test_kill9_during_checkpoint_writes_never_leaves_a_broken_file(tmp_path):
    rng = random.Random(0)
    target = tmp_path / "ck.fbp"
    for attempt in range(3):
        proc = spawn(tmp_path, SAVER, target)
        try:
            read_until(proc, "saved")
            t0 = time.monotonic()
            last = int(read_until(proc, "saved").split()[1])
            period = time.monotonic() - t0
            time.sleep(rng.uniform(0, 1.5 * period))           # anywhere inside the next write
        finally:
            kill9(proc)
        header, arrays = io.read_file(target)                   # intact: old or new, never torn
        i = header["meta"]["epoch"]
        assert i >= last
        for name in ("params", "opt_s0", "opt_s1"):
            assert (arrays[name] == i).all(), f"{name} mixes two saves"
        # leftovers of the interrupted write are hidden temp files beside it, never the target
        assert all(f == "ck.fbp" or (f.startswith(".ck.fbp.") and f.endswith(".tmp")) or f == "child.py"
                   for f in os.listdir(tmp_path))


# ---- resume after kill -9 ------------------------------------------------------------------------
SETUP = """
    import numpy as np
    import fastbp

    EPOCHS = 12

    def make():
        rng = np.random.default_rng(42)
        X = rng.standard_normal((4000, 32)).astype(np.float32)
        y = (X[:, :4] @ rng.standard_normal((4, 4))).argmax(1)
        return X, y

    def run(path, threads, resume=False, callbacks=()):
        fastbp.set_num_threads(threads)
        X, y = make()
        model = fastbp.MLP([32, 64, 64, 4], activation="tanh", seed=7)
        cbs = [fastbp.LearningRateScheduler(lambda e, lr: 0.01 * 0.8 ** e)]
        cbs += [fastbp.ModelCheckpoint(path, save_weights_only=False)] if path else []
        hist = model.fit(X, y, epochs=EPOCHS, batch_size=32, optimizer=fastbp.Adam(lr=0.01), shuffle=True,
                         validation_split=0.1, verbose=0, callbacks=cbs + list(callbacks),
                         resume_from=path if resume else None)
        return model, hist
"""

# A SETUP-like source's run() in a child with a checkpoint, reporting each epoch's end.
TRAINER = """
    import sys, time
    print("threads", fastbp.get_num_threads(), flush=True)

    class Report(fastbp.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print("epoch", epoch, time.monotonic(), flush=True)
            if epoch in (1, 4):
                sys.stdin.readline()      # gates, so the parent knows where we are (see below)

    run(sys.argv[1], fastbp.get_num_threads(), callbacks=[Report()])
    print("finished", flush=True)
"""


def killed_mid_run(tmp_path, setup):
    """Train ``setup``'s run() with a checkpoint in a child and kill -9 it at a random point of
    epochs 2 to 4; returns (setup's namespace here, the checkpoint's path, the child's threads)."""
    ns = {}
    exec(textwrap.dedent(setup), ns)
    path = tmp_path / "ck.fbp"
    proc = spawn(tmp_path, setup + TRAINER, path)
    try:
        threads = int(read_until(proc, "threads").split()[1])
        t0 = float(read_until(proc, "epoch 0").split()[2])
        epoch_time = float(read_until(proc, "epoch 1").split()[2]) - t0
        # The child waits after epoch 1 until told to go, and again after epoch 4 for good: the
        # kill lands at a random point of epochs 2 to 4 (training, or writing a checkpoint), or
        # while it waits, however slow this process is.
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(random.Random().uniform(0.0, 3.0) * epoch_time)
    finally:
        kill9(proc)
    assert "finished" not in proc.stdout.read()
    saved_epoch = io.read_file(path)[0]["meta"]["epoch"]
    assert 1 <= saved_epoch <= 4
    return ns, path, threads


@pytest.mark.slow
def test_resume_after_kill9_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    ns, path, threads = killed_mid_run(tmp_path, SETUP)
    saved = fastbp.get_num_threads()
    try:
        resumed, h_resumed = ns["run"](str(path), threads, resume=True)
        reference, h_ref = ns["run"](None, threads)
    finally:
        fastbp.set_num_threads(saved)
    assert np.array_equal(resumed.params, reference.params), "resumed params differ from the uninterrupted run"
    assert resumed.optimizer.iterations == reference.optimizer.iterations
    for a, b in zip(resumed.optimizer.state_arrays().values(), reference.optimizer.state_arrays().values()):
        assert np.array_equal(a, b)
    assert h_resumed.epoch == h_ref.epoch == list(range(ns["EPOCHS"]))
    assert h_resumed.history == h_ref.history
    # the resumed run wrote the later checkpoints
    assert io.read_file(path)[0]["meta"]["epoch"] == ns["EPOCHS"] - 1


def test_resume_from_the_final_checkpoint_trains_no_more(tmp_path):
    X = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = fastbp.MLP([3, 4, 2], seed=0)
    m.fit(X, y, epochs=3, verbose=0, callbacks=[fastbp.ModelCheckpoint(str(tmp_path / "c.fbp"))])
    again = fastbp.MLP([3, 4, 2], seed=0)
    opt = fastbp.Adam()
    h = again.fit(X, y, epochs=3, verbose=0, optimizer=opt, resume_from=tmp_path / "c.fbp")
    assert np.array_equal(again.params, m.params) and opt.iterations == m.optimizer.iterations
    assert h.epoch == [0, 1, 2] and h.history == m.history.history


def _header_rewriter(path):
    """(the file's JSON header, rewrite(mutate)): rewrite writes a copy of the file, next to it,
    with mutate(header) applied and the header's length and checksum made right again."""
    import json
    import struct
    import zlib
    raw = path.read_bytes()
    hlen = struct.unpack("<I", raw[12:16])[0]
    header = json.loads(raw[20:20 + hlen])
    data = raw[20 + hlen + (-(20 + hlen)) % 64:]

    def rewrite(mutate):
        h = json.loads(json.dumps(header))
        mutate(h)
        hb = json.dumps(h).encode()
        lead = 20 + len(hb)
        blob = raw[:8] + struct.pack("<III", 1, len(hb), zlib.crc32(hb)) + hb + b"\0" * ((-lead) % 64) + data
        out = path.with_name("t.fbp")
        out.write_bytes(blob)
        return out
    return header, rewrite


def test_tampered_checkpoint_metadata_is_rejected_without_changes(tmp_path):
    """A checkpoint's metadata is validated as strictly as its arrays before anything changes."""
    X = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = fastbp.MLP([3, 4, 2], seed=0)
    m.fit(X, y, epochs=2, verbose=0, optimizer=fastbp.Adam(), callbacks=[fastbp.ModelCheckpoint(str(tmp_path / "c.fbp"))])
    header, rewrite = _header_rewriter(tmp_path / "c.fbp")

    cases = [
        (lambda h: h["meta"]["optimizer"]["config"].update(lr=-1.0), "optimizer config"),
        (lambda h: h["meta"]["optimizer"]["config"].update(code=99), "optimizer config"),
        (lambda h: h["meta"]["optimizer"].update(iterations=-3), "step count"),
        (lambda h: h["meta"].update(epoch="2"), "epoch"),
        (lambda h: h["meta"]["rng"].update(bit_generator="MT19937"), "RNG state"),
        (lambda h: h["meta"]["rng"]["state"].update(state="x"), "RNG state"),
        (lambda h: h["meta"]["history"]["history"].update(loss="oops"), "history"),
        (lambda h: h["arrays"]["opt_s1"].update(dtype="<f8", shape=[13]), "opt_s1: expected shape"),
    ]
    for mutate, fragment in cases:
        path = rewrite(mutate)
        target = fastbp.MLP([3, 4, 2], seed=5)
        opt = fastbp.Adam(lr=0.5)
        p0, r0 = target.params.copy(), target.rng.bit_generator.state
        with pytest.raises(ValueError, match=fragment):
            target.fit(X, y, epochs=4, verbose=0, optimizer=opt, resume_from=path)
        assert np.array_equal(target.params, p0) and target.rng.bit_generator.state == r0
        assert opt.lr == 0.5 and opt.iterations == 0 and opt.state_arrays() == {}


def _plateau_run(tmp_path, epochs, resume_from=None, name="c.fbp"):
    """A fit whose callbacks act: min_delta is so large that val_loss never counts as improved
    after the first epoch, so ReduceLROnPlateau halves the lr every other epoch and
    EarlyStopping stops at epoch 6 and restores the first epoch's params."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    m = fastbp.MLP([5, 8, 2], dtype="float64", seed=1)
    opt = fastbp.Adam(lr=0.05)
    es = fastbp.EarlyStopping(patience=5, min_delta=10.0, restore_best_weights=True)
    rl = fastbp.ReduceLROnPlateau(patience=2, factor=0.5, min_delta=10.0)
    ck = fastbp.ModelCheckpoint(str(tmp_path / name))
    hist = m.fit(X, y, epochs=epochs, batch_size=32, optimizer=opt, validation_split=0.2, verbose=0,
                 callbacks=[es, rl, ck], resume_from=resume_from)
    return m, opt, es, hist


def test_resume_continues_the_callbacks_counters(tmp_path):
    """EarlyStopping's and ReduceLROnPlateau's counters (and the best params EarlyStopping will
    restore) are in the checkpoint, so a fit resumed after epoch 3 ends exactly like one that
    never stopped: same stopping epoch, learning rates, history and params."""
    m1, opt1, es1, h1 = _plateau_run(tmp_path, 20, name="straight.fbp")
    assert es1.stopped_epoch == 5 and len(h1.epoch) == 6 and opt1.lr == 0.05 * 0.5 ** 2
    _plateau_run(tmp_path, 3, name="part.fbp")
    m2, opt2, es2, h2 = _plateau_run(tmp_path, 20, resume_from=tmp_path / "part.fbp", name="rest.fbp")
    assert es2.stopped_epoch == es1.stopped_epoch and es2.best_epoch == es1.best_epoch == 0
    assert h2.epoch == h1.epoch and h2.history == h1.history
    assert opt2.lr == opt1.lr and opt2.iterations == opt1.iterations
    assert np.array_equal(m2.params, m1.params)


def test_callback_state_is_validated_and_goes_to_the_callback_of_its_class(tmp_path):
    """Callback states are checked before anything changes; each goes to the callback of its
    class, whatever the order of fit's callbacks; a state whose callback is absent is left out."""
    _plateau_run(tmp_path, 3)
    header, rewrite = _header_rewriter(tmp_path / "c.fbp")
    assert [e["class"] for e in header["meta"]["callbacks"]] == ["EarlyStopping", "ReduceLROnPlateau",
                                                                 "ModelCheckpoint"]
    assert "cb0_params" in header["arrays"]

    X = np.zeros((10, 5))
    y = np.zeros(10, np.int64)
    for mutate, fragment in [
        (lambda h: h["meta"]["callbacks"][0]["state"].update(wait=-1), r"callbacks\[0\] \(EarlyStopping\).*wait"),
        (lambda h: h["meta"]["callbacks"][1]["state"].update(best="low"), r"ReduceLROnPlateau.*best"),
        (lambda h: h["meta"].update(callbacks={"x": 1}), "callbacks record"),
        (lambda h: h["arrays"]["cb0_params"].update(shape=[6, 11]), r"EarlyStopping.*best params: expected shape"),
    ]:
        target = fastbp.MLP([5, 8, 2], dtype="float64", seed=7)
        opt = fastbp.Adam(lr=0.5)
        p0 = target.params.copy()
        es = fastbp.EarlyStopping(patience=5, restore_best_weights=True)
        with pytest.raises(ValueError, match=fragment):
            target.fit(X, y, epochs=5, verbose=0, optimizer=opt, resume_from=rewrite(mutate),
                       callbacks=[es, fastbp.ReduceLROnPlateau(), fastbp.ModelCheckpoint(str(tmp_path / "o.fbp"))])
        assert np.array_equal(target.params, p0) and opt.iterations == 0 and opt.lr == 0.5
    # states go to the callbacks of the same class, whatever the order; absent ones are left out
    es, rl = fastbp.EarlyStopping(patience=5, min_delta=10.0), fastbp.ReduceLROnPlateau(patience=2, min_delta=10.0)
    target = fastbp.MLP([5, 8, 2], dtype="float64", seed=7)
    target.fit(X, y, epochs=3, verbose=0, optimizer=fastbp.Adam(lr=0.05), resume_from=tmp_path / "c.fbp",
               callbacks=[rl, es])
    saved = {e["class"]: e["state"] for e in header["meta"]["callbacks"]}
    assert es._wait == saved["EarlyStopping"]["wait"] and es.best == saved["EarlyStopping"]["best"]
    assert (rl._wait, rl._cool) == (saved["ReduceLROnPlateau"]["wait"], saved["ReduceLROnPlateau"]["cool"])
