"""The .fbp format: documented layout, strict loader, no code execution, fuzzed.

Files here are built two ways: by fastbp (save, ModelCheckpoint) and by `craft`, an independent
writer of the layout documented in docs/file_format.rst, so the tests check the documented format and
not only that fastbp agrees with itself. Every damaged file must raise ValueError, quickly,
allocating no more than the file's size (plus a small constant for the parsed header).
"""
import json
import os
import pickle
import struct
import time
import tracemalloc
import zlib
from io import BytesIO

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fastbp
from fastbp import io

MAGIC = b"\x89FASTBP\n"
SLACK = 256 * 1024           # bytes a failing load may allocate beyond the file size (parsing, messages)


def craft(header, data=b"", *, version=1, magic=MAGIC, hcrc=None, data_crc=None, pad_byte=b"\0"):
    """A file laid out as docs/file_format.rst says; header is a dict (data_crc32 filled in) or raw bytes."""
    if isinstance(header, dict):
        header = dict(header)
        header.setdefault("data_crc32", zlib.crc32(data) if data_crc is None else data_crc)
        header = json.dumps(header).encode()
    pre = magic + struct.pack("<III", version, len(header), zlib.crc32(header) if hcrc is None else hcrc)
    lead = len(pre) + len(header)
    return pre + header + pad_byte * ((-lead) % 64) + data


def model_header(sizes=(2, 3, 1), n=None, dtype="<f4", **over):
    bias = over.pop("bias", True)
    n = n if n is not None else sum(a * b + b * bias for a, b in zip(sizes[:-1], sizes[1:]))
    h = {"kind": "model",
         "config": {"sizes": list(sizes), "activation": "tanh", "output": "sigmoid", "loss": "binary_cross_entropy",
                    "bias": bias, "dtype": "float32" if dtype == "<f4" else "float64"},
         "meta": {}, "arrays": {"params": {"dtype": dtype, "shape": [n], "offset": 0}}}
    h.update(over)
    return h, n


def padded(b):
    return b + b"\0" * ((-len(b)) % 64)


def load_bytes(tmp_path, blob, name="f.fbp"):
    path = tmp_path / name
    path.write_bytes(blob)
    return fastbp.load(path)


def assert_rejected(path, size=None):
    """load(path) raises ValueError naming the file, fast, within the allocation bound."""
    size = os.path.getsize(path) if size is None else size
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            fastbp.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert str(path) in str(info.value)
    assert peak <= size + SLACK, f"allocated {peak} bytes for a {size}-byte file"
    return str(info.value)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small model file and a small checkpoint file (with Adam state, RNG, history), as bytes."""
    d = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = fastbp.MLP([3, 4, 2], seed=0)
    model.fit(X, y, epochs=2, batch_size=8, verbose=0, callbacks=[fastbp.ModelCheckpoint(str(d / "ck.fbp"))])
    model.save(d / "m.fbp")
    return {"model": (d / "m.fbp").read_bytes(), "checkpoint": (d / "ck.fbp").read_bytes(), "trained": model}


# ---- round trip and layout ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_is_exact(tmp_path, dtype, bias):
    m = fastbp.MLP([5, 7, 3, 2], activation="tanh", output="linear", loss="half_mse", bias=bias, init="normal",
                   init_scale=0.3, dtype=dtype, seed=4)
    m.params[:] = np.random.default_rng(1).standard_normal(m.n_params) * 1e30    # extreme but finite
    m.save(tmp_path / "m.fbp")
    back = fastbp.load(str(tmp_path / "m.fbp"))
    assert back.params.dtype == m.params.dtype and np.array_equal(back.params, m.params)
    assert back.config() == m.config()


def test_file_follows_the_documented_layout(tmp_path):
    m = fastbp.MLP([3, 5, 2], seed=0)
    m.save(tmp_path / "m.fbp")
    raw = (tmp_path / "m.fbp").read_bytes()
    assert raw[:8] == MAGIC
    version, hlen, hcrc = struct.unpack("<III", raw[8:20])
    assert version == 2 and hlen <= 16 << 20
    header = raw[20:20 + hlen]
    assert zlib.crc32(header) == hcrc
    h = json.loads(header)
    start = 20 + hlen + (-(20 + hlen)) % 64
    assert start % 64 == 0 and not any(raw[20 + hlen:start])
    assert h["kind"] == "model" and h["config"] == m.config()
    spec = h["arrays"]["params"]
    assert spec == {"dtype": "<f4", "shape": [m.n_params], "offset": 0}
    data = raw[start:]
    assert len(data) == m.n_params * 4 + (-(m.n_params * 4)) % 64
    assert zlib.crc32(data) == h["data_crc32"]
    assert np.array_equal(np.frombuffer(data, "<f4", count=m.n_params), m.params)


def test_independently_crafted_file_loads(tmp_path):
    h, n = model_header((2, 3, 1))
    params = np.arange(n, dtype="<f4") / 10
    m = load_bytes(tmp_path, craft(h, padded(params.tobytes())))
    assert np.array_equal(m.params, params) and m.sizes == [2, 3, 1] and m.activation == "tanh"


def test_checkpoint_holds_the_training_state(files, tmp_path):
    (tmp_path / "ck.fbp").write_bytes(files["checkpoint"])
    header, arrays = io.read_file(tmp_path / "ck.fbp")
    model = files["trained"]
    assert header["kind"] == "checkpoint"
    assert set(arrays) == {"params", "opt_s0", "opt_s1"}              # Adam: m and v
    assert np.array_equal(arrays["params"], model.params)
    assert np.array_equal(arrays["opt_s0"], model.optimizer.state_arrays()["s0"])
    meta = header["meta"]
    assert meta["epoch"] == 1 and meta["optimizer"]["class"] == "Adam"
    assert meta["optimizer"]["iterations"] == model.optimizer.iterations == 2 * 4
    assert meta["rng"] == model.rng.bit_generator.state
    assert meta["history"]["epoch"] == [0, 1]
    assert meta["history"]["history"]["loss"] == model.history.history["loss"]
    # a checkpoint also loads as a plain model
    assert np.array_equal(fastbp.load(tmp_path / "ck.fbp").params, model.params)


def test_nonfinite_history_is_stored_as_standard_json(tmp_path):
    m = fastbp.MLP([2, 2], seed=0)
    opt = fastbp.SGD()
    hist = fastbp.History()
    hist.history = {"loss": [1.0, float("nan"), float("inf")]}
    hist.epoch = [0, 1, 2]
    io.save_checkpoint(tmp_path / "c.fbp", m, opt, 2, hist)
    raw = (tmp_path / "c.fbp").read_bytes()
    hlen = struct.unpack("<I", raw[12:16])[0]
    text = raw[20:20 + hlen].decode()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    back = fastbp.History()
    io.restore_checkpoint(tmp_path / "c.fbp", fastbp.MLP([2, 2], seed=0), fastbp.SGD(), back)
    assert back.history["loss"][0] == 1.0 and np.isnan(back.history["loss"][1]) and np.isnan(back.history["loss"][2])


def test_save_is_atomic_and_keeps_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        fastbp.MLP([2, 2]).save(tmp_path / "m.fbp")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "m.fbp").st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path) == ["m.fbp"]                      # no temp file left behind


def test_header_size_limit_on_write(tmp_path):
    assert io.MAX_HEADER == 16 << 20                   # the documented limit (DESIGN: 16 MiB)
    with pytest.raises(ValueError, match="header of .* bytes exceeds the 16777216-byte limit"):
        io.write_file(tmp_path / "h.fbp", "model", {"x": "a" * (16 << 20)}, {})
    assert not (tmp_path / "h.fbp").exists()


# ---- specific malformed files ------------------------------------------------------------------
def _malformed():
    h, n = model_header((2, 3, 1))
    good = padded(np.zeros(n, "<f4").tobytes())
    nan = np.zeros(n, "<f4")
    nan[2] = np.nan
    huge_h, _ = model_header((100000, 100000, 10), n=n)        # config claims 1e10 params
    cases = {
        "empty": (b"", "shorter than the 20-byte preamble"),
        "magic": (craft(h, good, magic=b"PK\x03\x04\0\0\0\0"), "wrong magic"),
        "version": (craft(h, good, version=3), "format version 3"),
        "header over limit": (MAGIC + struct.pack("<III", 1, (16 << 20) + 1, 0) + b"{}",
                              "exceeds the 16777216-byte limit"),
        "header past end": (MAGIC + struct.pack("<III", 1, 5000, 0) + b"{}", "runs past the end"),
        "header crc": (craft(h, good, hcrc=12345), "header checksum"),
        "not json": (craft(b"{not json", good), "not valid JSON"),
        "json NaN": (craft(b'{"kind":"model","x":NaN}'), "not valid JSON"),
        "json list": (craft(b"[1,2]"), "not a JSON object"),
        "deep json": (craft(b"[" * 100000 + b"]" * 100000), "not valid JSON"),
        "bad utf8": (craft(b'{"kind":"\xff"}'), "not valid JSON"),
        "unknown kind": (craft(model_header(kind="script")[0], good), "kind 'script'"),
        "pickle dtype": (craft(model_header(dtype="|O")[0], good), "dtype '|O'"),
        "big-endian dtype": (craft(model_header(dtype=">f4")[0], good), "dtype '>f4'"),
        "negative offset": (craft({**h, "arrays": {"params": {"dtype": "<f4", "shape": [n], "offset": -64}}}, good),
                            "offset -64"),
        "gap offset": (craft({**h, "arrays": {"params": {"dtype": "<f4", "shape": [n], "offset": 64}}}, good),
                       "offset 64, expected 0"),
        "huge shape": (craft({**h, "arrays": {"params": {"dtype": "<f4", "shape": [1 << 40, 1 << 40], "offset": 0}}},
                             good), "needs more bytes"),
        "float shape": (craft({**h, "arrays": {"params": {"dtype": "<f4", "shape": [4.0], "offset": 0}}}, good),
                        "shape [4.0]"),
        "too many dims": (craft({**h, "arrays": {"params": {"dtype": "<f4", "shape": [1] * 5 + [n],
                                                            "offset": 0}}}, good), "at most 4"),
        "overlap": (craft({**h, "kind": "checkpoint",
                           "arrays": {"params": {"dtype": "<f4", "shape": [n], "offset": 0},
                                      "opt_s0": {"dtype": "<f4", "shape": [n], "offset": 0}}}, good), "expected 64"),
        "unknown array": (craft({**h, "arrays": {"evil": {"dtype": "<f4", "shape": [n], "offset": 0}}}, good),
                          "array name 'evil'"),
        "trailing bytes": (craft(h, good + b"\0" * 64), "trailing bytes"),
        "truncated data": (craft(h, good[:-64]), "truncated"),
        "data crc": (craft(h, good, data_crc=1), "data checksum"),
        "dirty padding": (craft(h, good[:-4] + b"\x01\0\0\0"), "padding"),
        "dirty header padding": (craft(h, good, pad_byte=b"x"), "padding after the header"),
        "NaN params": (craft(h, padded(nan.tobytes())), "NaN or inf"),
        "wrong param count": (craft(model_header((2, 3, 1), n=n - 1)[0], padded(np.zeros(n - 1, "<f4").tobytes())),
                              f"expected shape ({n},)"),
        "config claims huge model": (craft(huge_h, good),
                                     f"expected shape ({100000 * 100000 + 100000 + 100000 * 10 + 10},)"),
        "config unknown key": (craft({**h, "config": {**h["config"], "__class__": "os.system"}}, good),
                               "unknown keys ['__class__']"),
        "config bad activation": (craft({**h, "config": {**h["config"], "activation": "eval"}}, good),
                                  "config does not describe a valid MLP"),
        "config sizes string": (craft({**h, "config": {**h["config"], "sizes": "2,3,1"}}, good), "'sizes'"),
        "dtype mismatch": (craft({**h, "config": {**h["config"], "dtype": "float64"}}, good), "dtype float64"),
        "missing params": (craft({**h, "arrays": {}}, b""), "params array"),
        "crc is bool": (craft({**h, "data_crc32": True}, good), "'data_crc32'"),
    }
    return cases


MALFORMED = _malformed()


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_is_rejected_clearly(tmp_path, case):
    blob, fragment = MALFORMED[case]
    path = tmp_path / "bad.fbp"
    path.write_bytes(blob)
    msg = assert_rejected(path)
    assert fragment in msg, msg


def test_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "p.fbp").write_bytes(pickle.dumps(Evil()))
    assert_rejected(tmp_path / "p.fbp")
    np.save(tmp_path / "o.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    assert_rejected(tmp_path / "o.npy")
    assert not marker.exists()


def test_non_files_and_bad_paths(tmp_path):
    with pytest.raises(TypeError, match="path: expected a file path"):
        fastbp.load(b"m.fbp")
    with pytest.raises(TypeError, match="path: expected a file path"):
        fastbp.load(None)
    with pytest.raises(ValueError, match="cannot read file"):
        fastbp.load(tmp_path / "missing.fbp")
    with pytest.raises(ValueError, match="not a regular file"):
        fastbp.load(tmp_path)
    if hasattr(os, "mkfifo"):                   # opening a FIFO would block: must be refused first
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(ValueError, match="not a regular file"):
            fastbp.load(tmp_path / "fifo")


# ---- exhaustive damage to real files -----------------------------------------------------------
# Thousands of cases: parsed from memory (the loader's own code path after open()), since
# writing each to disk would cost more than parsing it; the fuzz tests below use real files.
def load_blob(blob):
    header, arrays = io._read(BytesIO(blob), "<blob>", len(blob))
    return io._model_from("<blob>", header, arrays, fastbp.MLP)


def test_load_blob_is_load(files, tmp_path):
    (tmp_path / "m.fbp").write_bytes(files["model"])
    assert np.array_equal(load_blob(files["model"]).params, fastbp.load(tmp_path / "m.fbp").params)


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_every_truncation_is_rejected(files, kind):
    blob = files[kind]
    for n in range(len(blob)):
        with pytest.raises(ValueError, match="not a valid fastbp file"):
            load_blob(blob[:n])


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_every_single_bit_flip_is_rejected(files, kind):
    blob = files[kind]
    for bit in range(len(blob) * 8):
        damaged = bytearray(blob)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ValueError, match="not a valid fastbp file"):
            load_blob(bytes(damaged))


# ---- hypothesis fuzzing ------------------------------------------------------------------------
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(blob=st.binary(max_size=2048))
@example(blob=b"")
@example(blob=MAGIC)
def test_random_bytes_are_rejected(tmp_path, blob):
    path = tmp_path / "r.fbp"
    path.write_bytes(blob)
    assert_rejected(path)


@FUZZ
@given(tail=st.binary(max_size=2048), version=st.sampled_from([1, 1, 0, 2, 2**32 - 1]),
       hlen=st.one_of(st.integers(0, 4096), st.integers(0, 2**32 - 1)))
def test_random_bodies_behind_a_valid_magic_are_rejected(tmp_path, tail, version, hlen):
    path = tmp_path / "r.fbp"
    path.write_bytes(MAGIC + struct.pack("<III", version, hlen, zlib.crc32(tail[:hlen])) + tail)
    assert_rejected(path)


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["model", "checkpoint"]))
def test_random_damage_to_real_files_is_rejected(files, tmp_path, data, kind):
    blob = bytearray(files[kind])
    ops = data.draw(st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]),
                                       st.integers(0, len(blob) - 1), st.binary(min_size=1, max_size=16)),
                             min_size=1, max_size=4))
    for op, pos, payload in ops:
        pos = min(pos, max(len(blob) - 1, 0))
        if op == "flip" and blob:
            blob[pos] ^= payload[0] or 1
        elif op == "set" and blob:
            old = blob[pos:pos + len(payload)]
            blob[pos:pos + len(payload)] = payload[:len(old)]
            if blob == bytearray(files[kind]):
                blob[pos] ^= 0x40                      # make sure something changed
        elif op == "cut":
            del blob[pos:]
        elif op == "insert":
            blob[pos:pos] = payload
        else:
            del blob[pos:pos + len(payload)]
    if blob == bytearray(files[kind]):
        return                                          # e.g. insert then delete of the same bytes
    path = tmp_path / "d.fbp"
    path.write_bytes(bytes(blob))
    assert_rejected(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@FUZZ
@given(data=st.data())
def test_crafted_headers_with_valid_checksums_never_misbehave(tmp_path, data):
    """Checksums stop accidents, not a crafted file: with correct CRCs, any header values must
    still be rejected cleanly (or describe a valid model), without large allocations."""
    h, n = model_header((2, 3, 1))
    body = padded(np.zeros(n, "<f4").tobytes())
    field = data.draw(st.sampled_from([("kind",), ("config",), ("meta",), ("arrays",),
                                       ("arrays", "params"), ("arrays", "params", "shape"),
                                       ("arrays", "params", "offset"), ("arrays", "params", "dtype"),
                                       ("config", "sizes"), ("config", "bias"), ("config", "dtype"),
                                       ("config", "activation"), ("config", "seed"), ("config", "init_scale")]))
    value = data.draw(json_values)
    target = h
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    path = tmp_path / "c.fbp"
    path.write_bytes(craft(h, body))
    try:
        tracemalloc.start()
        try:
            model = fastbp.load(path)
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    except ValueError as e:
        assert str(path) in str(e)
        assert peak <= path.stat().st_size + SLACK
    else:
        assert model.n_params == n and np.array_equal(model.params, np.zeros(n, np.float32))


@FUZZ
@given(shape=st.lists(st.integers(0, 2**62) | st.integers(0, 8), min_size=0, max_size=4),
       offset=st.integers(-2**40, 2**40) | st.sampled_from([0, 64, 128]), extra=st.integers(0, 4096))
def test_crafted_array_specs_never_allocate_beyond_the_file(tmp_path, shape, offset, extra):
    h, n = model_header((2, 3, 1))
    h["kind"] = "checkpoint"
    h["arrays"]["opt_s0"] = {"dtype": "<f8", "shape": shape, "offset": offset}
    path = tmp_path / "s.fbp"
    params = padded(np.zeros(n, "<f4").tobytes())
    path.write_bytes(craft(h, params + b"\0" * extra))
    nbytes = 8 * int(np.prod(shape, dtype=object))
    if offset == len(params) and extra == nbytes + (-nbytes) % 64:     # the spec happens to be right
        header, arrays = io.read_file(path)
        assert arrays["opt_s0"].shape == tuple(shape) and not arrays["opt_s0"].any()
    else:
        assert_rejected(path)
