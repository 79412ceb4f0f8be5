"""Model and checkpoint files: a format that cannot execute anything, written atomically.

Layout of a ``.fbp`` file, version 2 (all integers little-endian):

    offset  size  content
    0       8     magic b"\\x89FASTBP\\n"
    8       4     uint32 format version (2; version 1 files, without buffers, still load)
    12      4     uint32 header length H (at most MAX_HEADER = 16 MiB)
    16      4     uint32 CRC-32 of the H header bytes
    20      H     header: a UTF-8 JSON object (standard JSON: no NaN or Infinity)
    20+H    P     zero bytes up to D, the next multiple of 64
    D       ...   data section: raw little-endian arrays, C order, each padded with zero bytes
                  to a multiple of 64, back to back in offset order, up to the end of the file

The header holds ``kind`` ("model" or "checkpoint"), ``config`` (the MLP constructor
arguments), ``meta`` (the model's update count ``updates``; for checkpoints also epoch,
optimizer with its schedule, RNG state, history), ``data_crc32``
(CRC-32 of the whole data section) and ``arrays``:
``{name: {"dtype": "<f4" | "<f8", "shape": [...], "offset": bytes into the data section}}``:
``params``, ``buffers`` (batch norm's running statistics, when the model has any), and in
checkpoints ``opt_s0..opt_sK`` (the optimizer's states) and ``cbN_params``.
A model trained on a table adds ``preprocessing``: its ``TablePreprocessor.to_json()`` (column
names, kinds, categories, means, class names), checked by ``TablePreprocessor.from_json`` and
against the network's widths on reading.

A checkpoint written during a fit on a table (a DataFrame or pyarrow Table) also holds
``input_mean`` and ``input_scale`` (float64, one per encoded feature): its params, optimizer
state and callback params are those of the run, trained on the standardized features
(x - input_mean) / input_scale, so that a resumed fit continues bit for bit. ``load`` folds that
scaling into the first layer (as the fit does when it ends), so the loaded model takes the
encoded raw values, like every model file. Readers that predate these arrays refuse the file
(an unknown array name) rather than misread it.

The reader checks, in this order and before it allocates anything sized by the file's own
claims: the magic, the version, the header length against the limit and the file size, the
header's CRC, the JSON, every array's name, dtype, shape and offset, that the arrays tile the
data section exactly to the end of the file, and then, reading the data, the padding and the
data CRC. Any failure is a ValueError naming the file and the reason. Nothing is unpickled or
evaluated. Memory allocated while reading is at most the file's size plus the parsed header.
"""
import json
import os
import re
import secrets
import stat
import struct
import zlib

import numpy as np

from ._version import __version__
from ._layout import Layout, norm_codes
from ._scaling import fold_input_scaling
from .tables import TablePreprocessor

MAGIC = b"\x89FASTBP\n"
VERSION = 2
READS = (1, 2)
MAX_HEADER = 16 << 20          # room for a table model's categories and class names
ALIGN = 64
PREAMBLE = struct.Struct("<8sIII")          # magic, version, header length, header CRC-32
_DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}
_MAX_DIMS = 4
# The arrays each kind of file may hold: the flat params and the optimizer's flat states.
_NAMES = {"model": ("params", "buffers"),
          "checkpoint": ("params", "buffers", "opt_s0", "opt_s1", "input_mean", "input_scale")}
# A checkpoint holds as many optimizer states as its optimizer has (RMSprop: up to 3).
_OPT_STATE_ARRAY = re.compile(r"opt_s[0-9]{1,2}")
# A checkpoint may also hold one array per callback that keeps one (EarlyStopping's best params),
# named by the callback's place in fit's callbacks list.
_CALLBACK_ARRAY = re.compile(r"cb[0-9]{1,3}_params")
# MLP constructor arguments a model file may set.
_CONFIG_KEYS = ("sizes", "activation", "output", "loss", "bias", "init", "init_scale", "dtype", "seed",
                "deterministic", "dropout", "norm", "l1", "l2", "label_smoothing", "huber_delta")


def _name_problem(kind, name):
    """Why a ``kind`` file cannot hold an array called ``name``, or None if it can."""
    if name in _NAMES[kind] or (kind == "checkpoint" and isinstance(name, str)
                                and (_CALLBACK_ARRAY.fullmatch(name) or _OPT_STATE_ARRAY.fullmatch(name))):
        return None
    return (f"array name {name!r}: a {kind} file holds only {list(_NAMES[kind])}"
            + (", opt_sN and cbN_params" if kind == "checkpoint" else ""))


def _align(n):
    return n + (-n) % ALIGN


# ---- writing ---------------------------------------------------------------------------------
def atomic_write(path, chunks):
    """Write byte chunks to ``path`` so that a crash leaves either the old file or the new one.

    A temp file in the same folder (same file system, so the rename is atomic), flush, fsync,
    then os.replace; the folder is fsynced so the rename itself survives a power cut. The temp
    file is created with mode 0o666 minus the umask, like ``open(path, "wb")`` would.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
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


def _json(obj, what):
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} cannot be stored as standard JSON ({e})") from None


def write_file(path, kind, config, arrays, meta=None, preprocessing=None):
    """Write named float arrays plus a JSON header (see the module docstring for the layout);
    ``preprocessing``, a JSON-able dict, goes into the header when given."""
    if kind not in _NAMES:
        raise ValueError(f"kind: expected one of {sorted(_NAMES)}, got {kind!r}")
    entries, parts, offset, crc = {}, [], 0, 0
    for name, a in arrays.items():
        problem = _name_problem(kind, name)
        if problem:
            raise ValueError(problem)
        a = np.asarray(a)
        if a.dtype not in (np.float32, np.float64) or a.ndim > _MAX_DIMS:
            raise ValueError(f"array {name!r}: expected float32 or float64 with at most {_MAX_DIMS} dimensions, "
                             f"got dtype {a.dtype} and shape {a.shape}")
        dt = a.dtype.newbyteorder("<")
        a = np.ascontiguousarray(a, dtype=dt)          # no copy for a contiguous little-endian array
        data = memoryview(a.reshape(-1).view(np.uint8))
        pad = b"\0" * ((-len(data)) % ALIGN)
        entries[name] = {"dtype": dt.str, "shape": list(a.shape), "offset": offset}
        crc = zlib.crc32(pad, zlib.crc32(data, crc))
        parts += [data, pad]
        offset += len(data) + len(pad)
    fields = {"kind": kind, "config": config, "meta": meta or {}, "arrays": entries, "data_crc32": crc}
    if preprocessing is not None:
        fields["preprocessing"] = preprocessing
    header = _json(fields, "the header")
    if len(header) > MAX_HEADER:
        raise ValueError(f"header of {len(header)} bytes exceeds the {MAX_HEADER}-byte limit")
    pre = PREAMBLE.pack(MAGIC, VERSION, len(header), zlib.crc32(header))
    lead = len(pre) + len(header)
    atomic_write(path, [pre, header, b"\0" * (_align(lead) - lead)] + parts)


# ---- reading ---------------------------------------------------------------------------------
def _bad(path, why):
    return ValueError(f"{os.fspath(path)}: not a valid fastbp file: {why}")


def _read_exact(f, n, path, what):
    data = f.read(n)
    if len(data) != n:
        raise _bad(path, f"file ends inside the {what} (file truncated?)")
    return data


def _readinto_exact(f, buf, path, what):
    view, got = memoryview(buf), 0
    while got < len(view):
        k = f.readinto(view[got:])
        if not k:
            raise _bad(path, f"file ends inside {what} (file truncated?)")
        got += k


def _reject_constant(token):
    raise ValueError(f"non-standard JSON constant {token}")


def read_file(path):
    """(header dict, {name: array}) from a .fbp file, fully validated; ValueError otherwise.

    OSErrors (missing file, no permission, a folder) become ValueErrors naming the file too.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _bad(path, "not a regular file")
        with open(path, "rb") as f:
            return _read(f, path, os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise ValueError(f"{os.fspath(path)}: cannot read file ({e.strerror or e})") from None


def _read(f, path, size):
    """read_file's work on an open binary file of ``size`` bytes; ``path`` names it in errors."""
    if size < PREAMBLE.size:
        raise _bad(path, f"{size} bytes is shorter than the {PREAMBLE.size}-byte preamble")
    magic, version, hlen, hcrc = PREAMBLE.unpack(_read_exact(f, PREAMBLE.size, path, "preamble"))
    if magic != MAGIC:
        raise _bad(path, "wrong magic number (is this a .fbp file?)")
    if version not in READS:
        raise _bad(path, f"format version {version}; this fastbp reads versions {list(READS)}")
    if hlen > MAX_HEADER:
        raise _bad(path, f"header length {hlen} exceeds the {MAX_HEADER}-byte limit")
    start = _align(PREAMBLE.size + hlen)
    if start > size:
        raise _bad(path, f"header length {hlen} runs past the end of the {size}-byte file")
    raw = _read_exact(f, hlen, path, "header")
    if zlib.crc32(raw) != hcrc:
        raise _bad(path, "header checksum mismatch (the file is corrupted)")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"header is not valid JSON ({type(e).__name__}: {e})") from None
    specs, data_crc = _check_header(path, header, size - start)
    if any(_read_exact(f, start - PREAMBLE.size - hlen, path, "header padding")):
        raise _bad(path, "non-zero bytes in the padding after the header")
    arrays, crc = {}, 0
    for name, dt, shape, nbytes in specs:
        arr = np.empty(shape, dt)
        _readinto_exact(f, arr.reshape(-1).view(np.uint8), path, f"array {name!r}")
        pad = _read_exact(f, (-nbytes) % ALIGN, path, f"padding after array {name!r}")
        if any(pad):
            raise _bad(path, f"non-zero bytes in the padding after array {name!r}")
        crc = zlib.crc32(pad, zlib.crc32(arr.reshape(-1).view(np.uint8), crc))
        arrays[name] = arr if dt.isnative else arr.byteswap().view(dt.newbyteorder("="))
    if f.read(1):
        raise _bad(path, "data past the end of the last array (the file grew while being read?)")
    if crc != data_crc:
        raise _bad(path, "data checksum mismatch (the file is corrupted)")
    return header, arrays


def _check_header(path, header, data_size):
    """[(name, dtype, shape, nbytes)] in file order, after checking they tile the data section."""
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    for key, typ in (("kind", str), ("config", dict), ("meta", dict), ("arrays", dict), ("data_crc32", int)):
        if not isinstance(header.get(key), typ) or isinstance(header.get(key), bool):
            raise _bad(path, f"header field {key!r} missing or not a {typ.__name__}")
    kind = header["kind"]
    if kind not in _NAMES:
        raise _bad(path, f"kind {kind!r} is not one of {sorted(_NAMES)}")
    specs = []
    for name, spec in header["arrays"].items():
        problem = _name_problem(kind, name)
        if problem:
            raise _bad(path, problem)
        if not isinstance(spec, dict):
            raise _bad(path, f"array {name!r}: entry is not an object")
        dt = _DTYPES.get(spec.get("dtype")) if isinstance(spec.get("dtype"), str) else None
        if dt is None:
            raise _bad(path, f"array {name!r}: dtype {spec.get('dtype')!r} is not one of {sorted(_DTYPES)}")
        shape, off = spec.get("shape"), spec.get("offset")
        if (not isinstance(shape, list) or len(shape) > _MAX_DIMS
                or not all(type(s) is int and s >= 0 for s in shape)):
            raise _bad(path, f"array {name!r}: shape {shape!r} is not a list of at most {_MAX_DIMS} sizes")
        if type(off) is not int or off < 0:
            raise _bad(path, f"array {name!r}: offset {off!r} is not a non-negative int")
        nbytes = dt.itemsize
        for s in shape:
            nbytes *= s
            if nbytes > data_size:              # stop before the product grows without bound
                break
        if nbytes > data_size:
            raise _bad(path, f"array {name!r} of shape {shape} needs more bytes than the {data_size}-byte data "
                             "section holds (file truncated or header corrupted)")
        specs.append((off, name, dt, tuple(shape), nbytes))
    specs.sort(key=lambda s: s[0])
    expect = 0
    for off, name, dt, shape, nbytes in specs:
        if off != expect:
            raise _bad(path, f"array {name!r}: offset {off}, expected {expect} (arrays must follow each other)")
        expect = _align(off + nbytes)
    if expect != data_size:
        raise _bad(path, f"the arrays take {expect} bytes but the data section holds {data_size} "
                         f"(file {'truncated' if expect > data_size else 'has trailing bytes'})")
    return [(name, dt, shape, nbytes) for _, name, dt, shape, nbytes in specs], header["data_crc32"]


# ---- models and checkpoints ------------------------------------------------------------------
def _check_params(path, config, arrays):
    """The params array, checked against the architecture in config before anything is built."""
    sizes, bias, dtype = config.get("sizes"), config.get("bias", True), config.get("dtype", "float32")
    norm = config.get("norm")
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(type(s) is int and s >= 1 for s in sizes)):
        raise _bad(path, f"config 'sizes' {sizes!r} is not a list of at least two positive ints")
    if not isinstance(bias, bool):
        raise _bad(path, f"config 'bias' {bias!r} is not true or false")
    if dtype not in ("float32", "float64"):
        raise _bad(path, f"config 'dtype' {dtype!r} is not 'float32' or 'float64'")
    try:
        layout = Layout(sizes, bias, norm_codes(norm, len(sizes) - 2))
    except ValueError as e:
        raise _bad(path, f"config {e}") from None
    p = arrays.get("params")
    n = layout.size
    if p is None or p.shape != (n,) or p.dtype != np.dtype(dtype):
        raise _bad(path, f"params array: expected shape ({n},) and dtype {dtype} for sizes {sizes}"
                         + (f" and norm {norm!r}" if norm else "") + ", got "
                         + ("none" if p is None else f"shape {p.shape} and dtype {p.dtype}"))
    if not np.isfinite(p).all():
        raise _bad(path, "params hold NaN or inf")
    b = arrays.get("buffers")
    if layout.n_stats or b is not None:
        if b is None or b.shape != (layout.n_stats,) or b.dtype != np.dtype(dtype):
            raise _bad(path, f"buffers array: expected shape ({layout.n_stats},) and dtype {dtype} (the running "
                             "statistics of batch norm), got "
                             + ("none" if b is None else f"shape {b.shape} and dtype {b.dtype}"))
        if not np.isfinite(b).all() or (layout.n_stats and (_running_vars(layout, b) < 0).any()):
            raise _bad(path, "buffers hold NaN, inf or a negative running variance")
    return p, b


def _running_vars(layout, b):
    return np.concatenate([v for _, v in layout.stat_views(b) if v is not None])


def _check_updates(path, meta):
    """The model's update count from a file's meta (0 in files written before it was kept)."""
    v = meta.get("updates", 0)
    if type(v) is not int or v < 0:
        raise _bad(path, f"meta 'updates' {v!r} is not an int >= 0")
    return v


def _model_from(path, header, arrays, model_class):
    config = header["config"]
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise _bad(path, f"config has unknown keys {unknown}; expected a subset of {list(_CONFIG_KEYS)}")
    p, b = _check_params(path, config, arrays)
    updates = _check_updates(path, header["meta"])
    try:
        model = model_class(**config)
    except (TypeError, ValueError) as e:
        raise _bad(path, f"config does not describe a valid MLP ({e})") from None
    model.params[...] = p
    if b is not None:
        model.buffers[...] = b
    model.updates = updates
    if "preprocessing" in header:
        model.preprocessor = _preprocessor_from(path, header["preprocessing"], model)
    scaling = _input_scaling(path, header, arrays, model.sizes[0])
    if scaling is not None:                  # a checkpoint of a fit on a table: take raw values, as a model file
        fold_input_scaling(model, *scaling)
    return model


def _input_scaling(path, header, arrays, width):
    """(mean, scale) of a table fit's checkpoint (see the module docstring), checked; None if
    the file has none."""
    mu, sd = arrays.get("input_mean"), arrays.get("input_scale")
    if mu is None and sd is None:
        return None
    if mu is None or sd is None:
        raise _bad(path, "a checkpoint of a fit on a table holds input_mean and input_scale together")
    if "preprocessing" not in header:
        raise _bad(path, "input_mean and input_scale without the table preprocessing they scale")
    for name, a in (("input_mean", mu), ("input_scale", sd)):
        if a.shape != (width,) or a.dtype != np.float64:
            raise _bad(path, f"{name}: expected shape ({width},) and dtype float64, got shape {a.shape} and "
                             f"dtype {a.dtype}")
    if not (np.isfinite(mu).all() and np.isfinite(sd).all() and (sd > 0).all()):
        raise _bad(path, "input_mean or input_scale holds NaN or inf, or a scale <= 0")
    return mu, sd


class ReadCheckpoint(os.PathLike):
    """A checkpoint file as ``read_checkpoint`` read it: a path (``os.fspath`` gives the file's)
    that ``checkpoint_encoding`` and ``fit(resume_from=...)`` take without reading it again, so a
    fit resumes from the one version of the file it checked."""

    def __init__(self, path, header, arrays):
        self.path, self.header, self.arrays = os.fspath(path), header, arrays

    def __fspath__(self):
        return self.path

    def __str__(self):
        return self.path


def read_checkpoint(path):
    """The checkpoint ``path`` names, read and validated once (ReadCheckpoint)."""
    return ReadCheckpoint(path, *_read_checkpoint(path))


def _read_checkpoint(path):
    """(header, arrays) of the checkpoint ``resume_from`` names, validated; a file of another
    kind is a ValueError."""
    if isinstance(path, ReadCheckpoint):
        return path.header, path.arrays
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"resume_from: expected a file path (str or os.PathLike), got {type(path).__name__}")
    header, arrays = read_file(path)
    if header["kind"] != "checkpoint":
        raise ValueError(f"resume_from: {os.fspath(path)} is a {header['kind']!r} file; resuming needs a "
                         "checkpoint (ModelCheckpoint with save_weights_only=False)")
    return header, arrays


def checkpoint_encoding(path):
    """(TablePreprocessor, input_mean, input_scale) of a checkpoint written during a fit on a
    table, or None for a checkpoint of a fit on arrays; the file is validated fully first.

    Raises ValueError for a file that is not a valid checkpoint."""
    header, arrays = _read_checkpoint(path)
    sizes = header["config"].get("sizes")
    if not isinstance(sizes, list) or not sizes or type(sizes[0]) is not int:
        raise _bad(path, f"config 'sizes' {sizes!r} is not a list of at least two positive ints")
    scaling = _input_scaling(path, header, arrays, sizes[0])
    if scaling is None:
        return None
    try:
        prep = TablePreprocessor.from_json(header["preprocessing"])
    except ValueError as e:
        raise _bad(path, str(e)) from None
    return (prep,) + scaling


def _preprocessor_from(path, obj, model):
    """The TablePreprocessor a file's header describes, checked against the model it came with."""
    try:
        prep = TablePreprocessor.from_json(obj)
    except ValueError as e:
        raise _bad(path, str(e)) from None
    problem = prep.model_problem(model.sizes, model.output)
    if problem:
        raise _bad(path, problem)
    return prep


def _preprocessing_of(model):
    """model.preprocessor as JSON for the header, None without one; checked before anything is written."""
    prep = getattr(model, "preprocessor", None)
    if prep is None:
        return None
    if not isinstance(prep, TablePreprocessor):
        raise TypeError(f"model.preprocessor: expected None or a fastbp.TablePreprocessor, got {type(prep).__name__}")
    prep.check_model(model)
    return prep.to_json()


def save_model(path, model):
    """Write the model's config and params (and its table preprocessing, if any) to ``path`` atomically."""
    write_file(path, "model", model.config(), _model_arrays(model), {"updates": model.updates},
               preprocessing=_preprocessing_of(model))


def _model_arrays(model):
    arrays = {"params": model.params}
    if model.buffers.size:
        arrays["buffers"] = model.buffers
    return arrays


def load_model(path, model_class):
    """Read a model (or the model part of a checkpoint) written by ``save``, as a
    ``model_class(**config)`` with the saved params; never unpickles.

    Raises TypeError for a path that is not a str or os.PathLike, ValueError for a file that
    cannot be read or is not a valid fastbp file (see the documentation's "File format" page).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike), got {type(path).__name__}")
    header, arrays = read_file(path)
    return _model_from(path, header, arrays, model_class)


def _finite_or_none(v):
    v = float(v)
    return v if np.isfinite(v) else None


def save_checkpoint(path, model, optimizer, epoch, history, callbacks=(), scaling=None):
    """The whole training state after ``epoch`` (0-based, completed): params, optimizer state
    and step count, the model's RNG state (which shuffles the next epochs), the history, and
    the state of those ``callbacks`` (fit's list) that keep one.

    ``scaling``, for a fit on a table: an object with ``preprocessor`` (the fit's fitted
    TablePreprocessor), ``mean`` and ``scale`` (float64, the standardization the params are
    trained on), saved as the header's preprocessing and the arrays input_mean, input_scale."""
    arrays = _model_arrays(model)
    if scaling is None:
        preprocessing = _preprocessing_of(model)
    else:
        scaling.preprocessor.check_model(model)
        preprocessing = scaling.preprocessor.to_json()
        arrays["input_mean"] = np.asarray(scaling.mean, np.float64)
        arrays["input_scale"] = np.asarray(scaling.scale, np.float64)
    arrays.update({"opt_" + k: v for k, v in optimizer.state_arrays().items()})
    kept = []
    for i, cb in enumerate(callbacks):
        state = cb._checkpoint_state()
        if state is None:
            continue
        values, array = state
        kept.append({"index": i, "class": type(cb).__name__, "state": values})
        if array is not None:
            arrays[f"cb{i}_params"] = array
    meta = {
        "fastbp": __version__,
        "epoch": int(epoch),
        "updates": model.updates,
        "optimizer": {"class": type(optimizer).__name__, "config": optimizer.config(),
                      "iterations": int(optimizer.iterations)},
        "rng": model.rng.bit_generator.state,
        "history": None if history is None else {
            "history": {k: [_finite_or_none(v) for v in vals] for k, vals in history.history.items()},
            "epoch": [int(e) for e in history.epoch]},
        "callbacks": kept,
    }
    write_file(path, "checkpoint", model.config(), arrays, meta, preprocessing=preprocessing)


def _check_int(path, what, v, minimum=0):
    if type(v) is not int or v < minimum:
        raise _bad(path, f"checkpoint {what} {v!r} is not an int >= {minimum}")
    return v


def restore_checkpoint(path, model, optimizer, history, callbacks=(), scaling=None):
    """Load a checkpoint into model, optimizer and history; returns (the epoch to start from,
    [(callback, state)] for ``cb._restore_state`` once on_train_begin has run).

    Everything is checked first; model, optimizer and history change only if all checks pass.
    The optimizer takes the checkpoint's hyperparameters (a scheduled lr continues as saved).
    A callback's state goes to the callback of the same class and the same rank among those of
    its class in ``callbacks`` (fit's list): the second EarlyStopping's to the second
    EarlyStopping. A state whose callback fit was not given is left out.

    ``scaling`` (as for save_checkpoint): a fit on a table resumes only from a checkpoint of a
    fit on a table with the same preprocessing and standardization, and a fit on arrays only
    from a checkpoint of a fit on arrays (their params take different inputs).
    """
    header, arrays = _read_checkpoint(path)
    theirs, mine = header["config"], model.config()
    for key in ("sizes", "activation", "output", "loss", "bias", "dtype", "dropout", "norm", "l1", "l2",
                "label_smoothing", "huber_delta"):
        if theirs.get(key, mine[key] if key not in ("sizes", "activation", "output", "loss") else None) != mine[key]:
            raise ValueError(f"resume_from: the checkpoint has {key}={theirs.get(key)!r}, this model has "
                             f"{key}={mine[key]!r}")
    params, buffers = _check_params(path, theirs, arrays)
    saved = _input_scaling(path, header, arrays, mine["sizes"][0])
    if saved is None and scaling is not None:
        raise ValueError(f"resume_from: {os.fspath(path)} is a checkpoint of a fit on arrays; a fit on a DataFrame "
                         "or pyarrow Table resumes from a checkpoint written during a fit on a table")
    if saved is not None and scaling is None:
        raise ValueError(f"resume_from: {os.fspath(path)} is a checkpoint of a fit on a DataFrame or pyarrow Table "
                         "(its params take the standardized encoding); resume it with fit on the table")
    if saved is not None and not (header["preprocessing"] == scaling.preprocessor.to_json()
                                  and np.array_equal(saved[0], scaling.mean)
                                  and np.array_equal(saved[1], scaling.scale)):
        raise ValueError(f"resume_from: {os.fspath(path)} holds another table preprocessing or standardization "
                         "than this fit (the file changed while the fit started?)")
    meta = header["meta"]
    updates = _check_updates(path, meta)
    epoch = _check_int(path, "epoch", meta.get("epoch"))
    opt_meta = meta.get("optimizer")
    if not isinstance(opt_meta, dict) or not isinstance(opt_meta.get("config"), dict):
        raise _bad(path, "checkpoint has no optimizer record")
    if opt_meta.get("class") != type(optimizer).__name__:
        raise ValueError(f"resume_from: the checkpoint was trained with {opt_meta.get('class')!r}, fit got "
                         f"{type(optimizer).__name__!r}; pass the same optimizer class")
    try:
        fresh = type(optimizer)(**opt_meta["config"])        # validates every hyperparameter
    except (TypeError, ValueError) as e:
        raise _bad(path, f"optimizer config {opt_meta['config']!r} is not valid ({e})") from None
    iterations = _check_int(path, "optimizer step count", opt_meta.get("iterations"))
    states = []
    if iterations:
        for i in range(fresh.n_states):           # as many as the checkpoint's configuration has
            s = arrays.get(f"opt_s{i}")
            if s is None or s.shape != params.shape or s.dtype != params.dtype:
                raise _bad(path, f"optimizer state opt_s{i}: expected shape {params.shape} and dtype "
                                 f"{params.dtype}, got " + ("none" if s is None else f"{s.shape} {s.dtype}"))
            if not np.isfinite(s).all():
                raise _bad(path, f"optimizer state opt_s{i} holds NaN or inf")
            states.append(s)
    rng_state = meta.get("rng")
    bitgen = type(model.rng.bit_generator)
    if not isinstance(rng_state, dict) or rng_state.get("bit_generator") != bitgen.__name__:
        raise _bad(path, f"checkpoint RNG state is not a {bitgen.__name__} state")
    rng = np.random.Generator(bitgen())
    try:
        rng.bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise _bad(path, f"checkpoint RNG state is not valid ({type(e).__name__}: {e})") from None
    h = meta.get("history") or {"history": {}, "epoch": []}
    if (not isinstance(h, dict) or not isinstance(h.get("history"), dict) or not isinstance(h.get("epoch"), list)
            or not all(type(e) is int for e in h["epoch"])
            or not all(isinstance(v, list) and all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))
                                                   for x in v) for v in h["history"].values())):
        raise _bad(path, "checkpoint history is not {'history': {name: [numbers]}, 'epoch': [ints]}")
    pending = _checked_callback_states(path, meta.get("callbacks", []), arrays, callbacks)

    # All checks passed: now change state.
    model.params[...] = params
    if buffers is not None:
        model.buffers[...] = buffers
    # a checkpoint written before the model kept its own count (format version 1): every update
    # of that model was one of this optimizer's
    model.updates = updates if "updates" in meta else iterations
    model.rng = rng
    optimizer.reset()
    for k in opt_meta["config"]:
        if k != "lr":
            setattr(optimizer, k, getattr(fresh, k))
    # the checkpoint's rate, constant or scheduled, whichever the optimizer had
    optimizer.set_learning_rate(fresh.lr if fresh.schedule is None else fresh.schedule)
    if states:
        for dst, src in zip(optimizer.state_for(model.params), states):
            dst[...] = src
    optimizer.iterations = iterations
    history.history = {k: [float("nan") if x is None else float(x) for x in v] for k, v in h["history"].items()}
    history.epoch = list(h["epoch"])
    return epoch + 1, pending


def _checked_callback_states(path, entries, arrays, callbacks):
    if not isinstance(entries, list):
        raise _bad(path, "checkpoint callbacks record is not a list")
    pending = []
    by_class = {}
    for cb in callbacks:
        by_class.setdefault(type(cb).__name__, []).append(cb)
    seen = {}
    for e in entries:
        if (not isinstance(e, dict) or type(e.get("index")) is not int or not isinstance(e.get("class"), str)
                or not isinstance(e.get("state"), dict)):
            raise _bad(path, "checkpoint callbacks record is not [{'index': int, 'class': str, 'state': {...}}]")
        i, name = e["index"], e["class"]
        rank = seen[name] = seen.get(name, -1) + 1
        if rank >= len(by_class.get(name, ())):
            continue
        cb = by_class[name][rank]
        try:
            pending.append((cb, cb._checked_state(e["state"], arrays.get(f"cb{i}_params"))))
        except (TypeError, ValueError) as err:
            raise _bad(path, f"state of callbacks[{i}] ({name}) is not valid ({err})") from None
    return pending
