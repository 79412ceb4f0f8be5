"""Model and checkpoint files: a format that cannot execute anything, written atomically.

Layout of a ``.fbp`` file (all integers little-endian):

    offset  size  content
    0       8     magic b"\\x89FASTBP\\n"
    8       4     uint32 format version (1)
    12      4     uint32 header length H (at most 1 MiB)
    16      H     header: UTF-8 JSON object
    16+H    ...   zero padding to a multiple of 64, then the data section

The header holds ``kind`` ("model" or "checkpoint"), ``config`` (the MLP constructor
arguments), ``meta`` (for checkpoints: optimizer, epoch, RNG state, history) and ``arrays``:
``{name: {"dtype": "<f4" | "<f8", "shape": [...], "offset": bytes into the data section}}``.
The reader checks magic, version, header size, JSON, every dtype, shape and offset, and the
total length against the file size before it reads any array; it never unpickles.
"""
import json
import os
import struct
import tempfile

import numpy as np

MAGIC = b"\x89FASTBP\n"
VERSION = 1
MAX_HEADER = 1 << 20
ALIGN = 64
_DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}
_MAX_DIMS = 4


# ---- writing ---------------------------------------------------------------------------------
def atomic_write(path, chunks):
    """Write byte chunks to ``path`` so that a crash leaves either the old file or the new one.

    Temp file in the same folder, flush, fsync, then os.replace (atomic on POSIX and Windows).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                     # make the rename itself durable where the OS allows it
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_file(path, kind, config, arrays, meta=None):
    """Write named arrays plus a JSON header; arrays are stored little-endian, C order."""
    entries, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder not in "<|=" else a.dtype
        key = dt.str if dt.str in _DTYPES else None
        if key is None:
            raise ValueError(f"array {name!r}: dtype {a.dtype} cannot be saved (expected float32 or float64)")
        data = a.astype(_DTYPES[key], copy=False).tobytes()
        entries[name] = {"dtype": key, "shape": list(a.shape), "offset": offset}
        pad = (-len(data)) % ALIGN
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    header = json.dumps({"kind": kind, "config": config, "meta": meta or {}, "arrays": entries},
                        separators=(",", ":")).encode()
    if len(header) > MAX_HEADER:
        raise ValueError(f"header of {len(header)} bytes exceeds the {MAX_HEADER}-byte limit")
    pre = MAGIC + struct.pack("<II", VERSION, len(header)) + header
    pre += b"\0" * ((-len(pre)) % ALIGN)
    atomic_write(path, [pre] + blobs)


# ---- reading ---------------------------------------------------------------------------------
def _bad(path, why):
    return ValueError(f"{os.fspath(path)}: not a valid fastbp file: {why}")


def read_file(path):
    """(header dict, {name: array}) from a .fbp file, fully validated; ValueError otherwise."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pre = f.read(16)
            if len(pre) < 16:
                raise _bad(path, f"{size} bytes is shorter than the 16-byte preamble")
            if pre[:8] != MAGIC:
                raise _bad(path, "wrong magic number (is this a .fbp file?)")
            version, hlen = struct.unpack("<II", pre[8:])
            if version != VERSION:
                raise _bad(path, f"format version {version}; this fastbp reads version {VERSION}")
            if hlen > MAX_HEADER:
                raise _bad(path, f"header length {hlen} exceeds the {MAX_HEADER}-byte limit")
            if 16 + hlen > size:
                raise _bad(path, f"header length {hlen} runs past the end of the {size}-byte file")
            raw = f.read(hlen)
            try:
                header = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                raise _bad(path, f"header is not valid JSON ({type(e).__name__})") from None
            start = 16 + hlen + ((-(16 + hlen)) % ALIGN)
            specs = _check_header(path, header, size - start)
            arrays = {}
            for name, (dt, shape, off, nbytes) in specs.items():
                f.seek(start + off)
                buf = f.read(nbytes)
                if len(buf) != nbytes:
                    raise _bad(path, f"array {name!r} is truncated")
                arrays[name] = np.frombuffer(buf, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    except OSError as e:
        raise ValueError(f"{os.fspath(path)}: cannot read file ({e.strerror or e})") from None
    return header, arrays


def _check_header(path, header, data_size):
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    for key, typ in (("kind", str), ("config", dict), ("meta", dict), ("arrays", dict)):
        if not isinstance(header.get(key), typ):
            raise _bad(path, f"header field {key!r} missing or not a {typ.__name__}")
    specs = {}
    for name, spec in header["arrays"].items():
        if not isinstance(spec, dict):
            raise _bad(path, f"array {name!r}: entry is not an object")
        dt = _DTYPES.get(spec.get("dtype")) if isinstance(spec.get("dtype"), str) else None
        if dt is None:
            raise _bad(path, f"array {name!r}: dtype {spec.get('dtype')!r} is not one of {sorted(_DTYPES)}")
        shape, off = spec.get("shape"), spec.get("offset")
        if (not isinstance(shape, list) or len(shape) > _MAX_DIMS
                or not all(type(s) is int and s >= 0 for s in shape)):
            raise _bad(path, f"array {name!r}: shape {shape!r} is not a list of at most {_MAX_DIMS} sizes")
        if type(off) is not int or off < 0 or off % ALIGN:
            raise _bad(path, f"array {name!r}: offset {off!r} is not a non-negative multiple of {ALIGN}")
        nbytes = dt.itemsize
        for s in shape:
            nbytes *= s
            if nbytes > data_size:
                break
        if off + nbytes > data_size:
            raise _bad(path, f"array {name!r}: {nbytes} bytes at offset {off} run past the data section "
                             f"({data_size} bytes)")
        specs[name] = (dt, tuple(shape), off, nbytes)
    return specs


# ---- models and checkpoints ------------------------------------------------------------------
def save_model(path, model):
    write_file(path, "model", model.config(), {"params": model.params})


def _model_from(path, header, arrays):
    from .model import MLP
    try:
        model = MLP(**header["config"])
    except (TypeError, ValueError) as e:
        raise _bad(path, f"config does not describe a valid MLP ({e})") from None
    p = arrays.get("params")
    if p is None or p.shape != model.params.shape or p.dtype != model.params.dtype:
        raise _bad(path, f"params array: expected shape {model.params.shape} and dtype {model.params.dtype}, got "
                         + ("none" if p is None else f"{p.shape} {p.dtype}"))
    if not np.isfinite(p).all():
        raise _bad(path, "params hold NaN or inf")
    model.params[...] = p
    return model


def load(path):
    """Read a model (or the model part of a checkpoint) written by ``save``; never unpickles."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path, got {type(path).__name__}")
    header, arrays = read_file(path)
    return _model_from(path, header, arrays)


def save_checkpoint(path, model, optimizer, epoch, history):
    """The whole training state after ``epoch``: params, optimizer state, RNG, history."""
    arrays = {"params": model.params}
    arrays.update({"opt_" + k: v for k, v in optimizer.state_arrays().items()})
    meta = {
        "epoch": int(epoch),
        "optimizer": {"class": type(optimizer).__name__, "config": optimizer.config(),
                      "iterations": int(optimizer.iterations)},
        "rng": model._rng.bit_generator.state,
        "history": {"history": history.history, "epoch": history.epoch} if history is not None else None,
    }
    write_file(path, "checkpoint", model.config(), arrays, meta)


def restore_checkpoint(path, model, optimizer, history):
    """Load a checkpoint into model, optimizer and history; returns the epoch to start from."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"resume_from: expected a file path, got {type(path).__name__}")
    header, arrays = read_file(path)
    if header["kind"] != "checkpoint":
        raise _bad(path, f"resume_from needs a checkpoint (ModelCheckpoint with save_weights_only=False), "
                         f"got a {header['kind']!r} file")
    saved = _model_from(path, header, arrays)
    mine, theirs = model.config(), saved.config()
    for key in ("sizes", "activation", "output", "loss", "bias", "dtype"):
        if mine[key] != theirs[key]:
            raise ValueError(f"resume_from: checkpoint has {key}={theirs[key]!r}, this model has {mine[key]!r}")
    meta = header["meta"]
    try:
        opt_meta = meta["optimizer"]
        epoch = int(meta["epoch"])
        rng_state = meta["rng"]
        if opt_meta["class"] != type(optimizer).__name__:
            raise ValueError(f"resume_from: checkpoint was trained with {opt_meta['class']}, "
                             f"fit got {type(optimizer).__name__}")
        rng = np.random.default_rng()
        rng.bit_generator.state = rng_state
        states = [arrays[f"opt_s{i}"] for i in range(optimizer.n_states)] if opt_meta["iterations"] else []
    except (KeyError, TypeError) as e:
        raise _bad(path, f"checkpoint metadata is incomplete ({e})") from None
    # All checks passed: now change state.
    model.params[...] = saved.params
    model._rng = rng
    optimizer.reset()
    for k, v in opt_meta["config"].items():
        if hasattr(optimizer, k):
            setattr(optimizer, k, v)
    if states:
        optimizer._buffers(model.params)
        for dst, src in zip(optimizer._states, states):
            dst[...] = src
    optimizer.iterations = int(opt_meta["iterations"])
    h = meta.get("history") or {}
    history.history = {k: list(v) for k, v in (h.get("history") or {}).items()}
    history.epoch = list(h.get("epoch") or [])
    return epoch + 1
