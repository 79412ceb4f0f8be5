"""The ``fastbp`` command: train on a data file (or an embedded dataset), predict, evaluate, info.

    fastbp train [DATA] [--target COL] [--drop COL,...] [--max-categories 256] [--layers 64,32]
                 [--activation relu | gelu,relu] [--norm none | layer,batch] [--dropout 0 | 0.1,0.2]
                 [--l1 0] [--l2 0] [--task auto] [--loss auto] [--huber-delta 1]
                 [--label-smoothing 0] [--optimizer adam] [--lr 1e-3]
                 [--schedule none|cosine|onecycle] [--warmup-steps 0] [--epochs 20]
                 [--batch-size auto] [--val-split 0.1] [--seed 0] [--threads N]
                 [--out model.fbp] [--plot curves.png]
    fastbp predict MODEL DATA [-o preds.csv]
    fastbp evaluate MODEL DATA
    fastbp info

DATA is a table (``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz`` with a header row, or ``.parquet``;
``--target`` names the target column, default the last), a ``.npz`` holding arrays ``X`` and
``y``, a ``.npy`` 2-D array (``--target`` is a column index, default the last), a scipy sparse
matrix saved by ``scipy.sparse.save_npz`` (targets: a 1-D ``.npy`` named by ``--target``, default
the file beside it named ``<stem>.y.npy``), or an svmlight/libsvm file (``.svm``, ``.svmlight``,
``.libsvm``; needs scikit-learn). With no DATA, ``train`` uses the embedded digits dataset.
Sparse files stay sparse from the file to the model (never densified): their features are scaled
by each column's largest magnitude instead of standardized, since centring would fill every entry.

A table's columns go through ``fastbp.TablePreprocessor`` (text columns one-hot encoded, numeric
gaps filled with the mean plus a "was missing" column, rows without a target dropped, text
targets classified by name), fitted on the training split and saved in the model file, so
``predict`` and ``evaluate`` take raw tables with the columns in any order. ``train`` on a table
is ``model.fit`` on the training rows of the table (fastbp.frames), as in Python: it
standardizes the numeric features with the training split's statistics and folds that scaling
into the first layer. For other data, ``train`` does the same itself. Regression targets are
standardized too (except for ``--loss poisson``, which trains an exp output on the raw counts)
and that scaling is folded into the last layer before saving, so a saved model takes raw data.
``--activation``, ``--norm`` and ``--dropout`` take one value for every hidden layer or a
comma-separated list with one per hidden layer of ``--layers``.

Every error a user can cause (missing file, bad column, non-numeric data, wrong widths, bad
option) prints one line ``fastbp: error: ...`` and exits non-zero; no tracebacks.
"""
import argparse
import io
import math
import os
import sys
import time

import numpy as np

from . import frames, tables
from ._version import __version__
from .data import is_sparse

DEFAULT_DATASET = "digits"
# task "auto" classifies when every target is a whole number in [0, MAX_AUTO_CLASSES).
MAX_AUTO_CLASSES = 100
# batch size "auto": 256, lowered on small data so an epoch has at least this many updates.
MIN_STEPS_PER_EPOCH = 50
MIN_AUTO_BATCH = 16
# Sparse inputs (scipy .npz, svmlight) are densified until fit and predict take CSR end to end;
# past this many bytes of float64 the command refuses rather than exhaust memory.
SVMLIGHT_SUFFIXES = (".svm", ".svmlight", ".libsvm")
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line instead of usage text plus exit."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


# ---- argument types: each names what it expected and what came -----------------------------------
def _int_type(name, lo=None, hi=None):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if lo is not None and v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"expected an integer <= {hi}, got {v}")
        return v
    parse.__name__ = name
    return parse


def _float_type(name, lo=None, hi=None, lo_open=False, hi_open=False):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise argparse.ArgumentTypeError(f"expected a number {'>' if lo_open else '>='} {lo:g}, got {v:g}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise argparse.ArgumentTypeError(f"expected a number {'<' if hi_open else '<='} {hi:g}, got {v:g}")
        return v
    parse.__name__ = name
    return parse


def _layers_type(text):
    text = text.strip()
    if not text:
        return []                                   # --layers "": no hidden layer
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(f"expected comma-separated widths >= 1 like 64,32, got {text!r}")
        out.append(int(part))
    return out


def _names_type(text):
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names like id,date, got {text!r}")
    return names


def _batch_type(text):
    if text == "auto":
        return "auto"
    return _int_type("batch size", 1)(text)


def _choices_list_type(name, choices):
    """Comma-separated names, each one of ``choices`` (one for every hidden layer, or one per
    hidden layer: the count is checked against --layers after parsing)."""
    def parse(text):
        names = [part.strip() for part in text.split(",")]
        for n in names:
            if n not in choices:
                raise argparse.ArgumentTypeError(
                    f"invalid choice: {n!r} (choose from {', '.join(choices)}; one for every hidden layer, or "
                    "a comma-separated list with one per hidden layer)")
        return names
    parse.__name__ = name
    return parse


def _rates_type(text):
    rates = []
    for part in text.split(","):
        try:
            r = float(part)
        except ValueError:
            r = None
        if r is None or not 0.0 <= r < 1.0:
            raise argparse.ArgumentTypeError(f"expected a rate in [0, 1), or comma-separated rates like 0.1,0.2 (one "
                                             f"per hidden layer), got {text!r}")
        rates.append(r)
    return rates


# options that take one value for every hidden layer or one per hidden layer
PER_LAYER = (("activation", "--activation"), ("norm", "--norm"), ("dropout", "--dropout"))
NORM_CHOICES = ("none", "layer", "batch")


def check_per_layer(args):
    """The per-hidden-layer options against --layers: one value, or exactly one per hidden layer.
    Returns a usage message, or None when they fit."""
    n_hidden = len(args.layers)
    layers = ",".join(map(str, args.layers)) or "''"
    for dest, flag in PER_LAYER:
        values = getattr(args, dest)
        if len(values) not in (1, n_hidden):
            return (f"argument {flag}: expected one value or {n_hidden} (one per hidden layer of --layers "
                    f"{layers}), got {len(values)}: {','.join(map(str, values))}")
    if n_hidden == 0 and (any(args.dropout) or any(n != "none" for n in args.norm)):
        flag = "--dropout" if any(args.dropout) else "--norm"
        return f"argument {flag}: the network has no hidden layer (--layers ''), so nothing to apply it to"
    return None


def _per_layer_value(values):
    """The MLP argument for a per-layer option: one value for all, else the list."""
    return values[0] if len(values) == 1 else list(values)


# ---- parser --------------------------------------------------------------------------------------
def build_parser():
    from .datasets import DATASETS
    from .kernels.activations import HIDDEN
    from .kernels.losses import LOSSES
    from .optim import OPTIMIZERS

    p = _Parser(prog="fastbp", description="Train fully-connected neural networks fast on multicore CPUs.")
    p.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on a data file or an embedded dataset",
                       description="Train an MLP. DATA: a table (.csv, .csv.gz, .tsv, .tsv.gz with a header "
                                   "row, or .parquet; text columns are one-hot encoded, numeric gaps filled, "
                                   "and that preprocessing is saved with the model), a .npz (arrays X and y), "
                                   "a .npy (2-D), a scipy sparse .npz (scipy.sparse.save_npz; targets in a "
                                   ".npy beside it, NAME.y.npy, or named by --target), an svmlight/libsvm file "
                                   "(.svm, .svmlight, .libsvm; needs scikit-learn), or an embedded dataset "
                                   f"({', '.join(sorted(DATASETS))}); default: {DEFAULT_DATASET}.")
    t.add_argument("data", nargs="?", metavar="DATA", help=f"data file or dataset name (default: {DEFAULT_DATASET})")
    t.add_argument("--target", metavar="COL",
                   help="target: a table's column name, a column index for .npy (default: the last column), "
                        "or for a sparse .npz the .npy file of targets (default: NAME.y.npy beside NAME.npz)")
    t.add_argument("--drop", type=_names_type, default=[], metavar="COL,...",
                   help="table columns to leave out (identifiers, dates, empty columns)")
    t.add_argument("--max-categories", type=_int_type("max categories", 1), default=tables.MAX_CATEGORIES,
                   metavar="N", help="the most distinct values a text column may have; more is an error "
                                     f"(default: {tables.MAX_CATEGORIES})")
    t.add_argument("--layers", type=_layers_type, default=[64, 32], metavar="W1,W2,...",
                   help="hidden layer widths (default: 64,32; '' for none)")
    t.add_argument("--activation", type=_choices_list_type("activation", HIDDEN.names()), default=["relu"],
                   metavar="NAME[,NAME...]",
                   help=f"hidden activation ({', '.join(HIDDEN.names())}; PyTorch's formulas): one for every "
                        "hidden layer, or one per hidden layer like gelu,relu (default: relu)")
    t.add_argument("--norm", type=_choices_list_type("norm", NORM_CHOICES), default=["none"],
                   metavar="NORM[,NORM...]",
                   help="normalization after each hidden layer's dense product, before its activation: none, layer "
                        "(PyTorch's LayerNorm) or batch (BatchNorm1d; needs minibatches of at least 2 rows): one for "
                        "every hidden layer, or one per hidden layer like layer,none (default: none)")
    t.add_argument("--dropout", type=_rates_type, default=[0.0], metavar="RATE[,RATE...]",
                   help="dropout rate in [0, 1) after each hidden layer's activation, in training only: one for "
                        "every hidden layer, or one per hidden layer like 0.1,0.2 (default: 0)")
    t.add_argument("--l1", type=_float_type("l1", 0), default=0.0,
                   help="penalty l1 * sum |W| over every weight matrix (not biases or norm parameters) in the "
                        "training loss (default: 0)")
    t.add_argument("--l2", type=_float_type("l2", 0), default=0.0,
                   help="penalty l2 * sum W**2 over every weight matrix (default: 0). Training runs on "
                        "standardized features, so the penalties apply to those weights; the losses printed after "
                        "training (and by 'fastbp evaluate') are the data loss, without them")
    t.add_argument("--task", default="auto", choices=["auto", "classify", "regress"],
                   help=f"auto: classify when every target is a whole number in 0..{MAX_AUTO_CLASSES - 1}, "
                        "else regress; --loss mae, huber or poisson regress (default: auto)")
    t.add_argument("--loss", default="auto", choices=["auto"] + sorted(LOSSES),
                   help="default: cross_entropy to classify, mse to regress. mae and huber regress with a linear "
                        "output; poisson regresses counts (targets >= 0) with an exp output, on the raw targets")
    t.add_argument("--huber-delta", type=_float_type("huber delta", 0, lo_open=True), default=None, metavar="DELTA",
                   help="--loss huber's delta, in the target's own units (default: 1)")
    t.add_argument("--label-smoothing", type=_float_type("label smoothing", 0, 1, hi_open=True), default=0.0,
                   metavar="EPS", help="--loss cross_entropy only: train on targets y*(1-EPS) + EPS/classes "
                                       "(default: 0)")
    t.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="default: adam")
    t.add_argument("--lr", type=_float_type("learning rate", 0, lo_open=True), default=1e-3,
                   help="learning rate (default: 1e-3)")
    t.add_argument("--schedule", default="none", choices=["cosine", "onecycle", "none"],
                   help="learning rate per update: cosine (warm-up from 0 to --lr over --warmup-steps updates, "
                        "then a cosine decay to 0 over the rest of the run), onecycle (torch's OneCycleLR with "
                        "max_lr --lr over the whole run), or none: --lr throughout (default: none)")
    t.add_argument("--warmup-steps", type=_int_type("warmup steps", 0), default=0, metavar="N",
                   help="updates of --schedule cosine's warm-up (default: 0)")
    t.add_argument("--epochs", type=_int_type("epochs", 1), default=20, help="default: 20")
    t.add_argument("--batch-size", type=_batch_type, default="auto", metavar="N",
                   help=f"minibatch size (default: auto = 256, lowered on small data to give at least "
                        f"{MIN_STEPS_PER_EPOCH} updates per epoch, never below {MIN_AUTO_BATCH})")
    t.add_argument("--val-split", type=_float_type("validation split", 0, 1, hi_open=True), default=0.1,
                   metavar="FRAC", help="fraction held out (after a seeded shuffle) for validation (default: 0.1)")
    t.add_argument("--seed", type=_int_type("seed", 0), default=0, help="seeds the split, init and shuffling")
    t.add_argument("--threads", type=_int_type("threads", 1), default=None, metavar="N",
                   help="threads for fastbp's kernels (default: all)")
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default: float32")
    t.add_argument("--out", default="model.fbp", metavar="PATH", help="where to save the model (default: model.fbp)")
    t.add_argument("--plot", default=None, metavar="PNG",
                   help="save the curves of the loss and the task's metrics per epoch (needs matplotlib)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    pr = sub.add_parser("predict", help="write a model's predictions for a data file",
                        description="Predict with a saved model. For a model trained on a table, DATA is a "
                                    "table holding its columns by name, in any order (other columns are "
                                    "ignored); for other models, DATA holds the model's input columns in "
                                    "order (plus, optionally, one target column, which is dropped).")
    pr.add_argument("model", metavar="MODEL", help="a .fbp file written by 'fastbp train' or MLP.save")
    pr.add_argument("data", metavar="DATA", help="a table (.csv, .csv.gz, .tsv, .tsv.gz, .parquet), .npz, .npy, "
                                                 "sparse .npz or svmlight file")
    pr.add_argument("--target", metavar="COL", help="for a model without table preprocessing: the column to drop "
                                                    "if DATA has one (default: the last)")
    pr.add_argument("-o", "--output", metavar="CSV", help="write predictions here (default: standard output)")

    ev = sub.add_parser("evaluate", help="loss and accuracy of a saved model on a data file")
    ev.add_argument("model", metavar="MODEL")
    ev.add_argument("data", metavar="DATA")
    ev.add_argument("--target", metavar="COL",
                    help="target column (default: the one the model was trained on, else the last), or for a "
                         "sparse .npz the .npy file of targets (default: NAME.y.npy)")

    sub.add_parser("info", help="version, threads, threading layer, BLAS, compile cache")
    co = sub.add_parser("compile", help="compile every kernel into numba's cache now (for an image or a shared "
                                         "install), so that no first run pays for it")
    co.add_argument("--dtype", choices=["float32", "float64", "both"], default="both",
                    help="the dtypes to compile for (default: both)")
    return p


# ---- reading data --------------------------------------------------------------------------------
class Table:
    """Numeric data read from a file: ``data`` (n, c) float64 and column ``names``; or X and y
    (``sparse``: X came from a sparse file, whose targets are not named by a column)."""

    def __init__(self, source, names=None, data=None, X=None, y=None, sparse=False):
        self.source = source
        self.names = names
        self.data = data
        self.X = X
        self.y = y
        self.sparse = sparse


def _check_path(path, what="DATA"):
    if not os.path.exists(path):
        raise CLIError(f"{what}: no such file: {path!r}")
    if os.path.isdir(path):
        raise CLIError(f"{what}: expected a file, got the directory {path!r}")


def read_data(path, target=None, need_target=True, n_features=None):
    """The data in ``path``: a pyarrow Table for table files, else a Table of arrays.

    ``target`` and ``need_target`` matter for a sparse .npz only, whose targets live in a
    separate .npy; ``n_features`` (predict, evaluate) fixes an svmlight file's width.
    """
    _check_path(path)
    low = path.lower()
    if tables.table_kind(path) is not None:
        return _read_frame(path)
    if low.endswith(".npz"):
        if _is_sparse_npz(path):
            return _read_sparse_npz(path, target, need_target)
        return _read_npz(path)
    if low.endswith(".npy"):
        return _read_npy(path)
    if low.endswith(tuple(s + z for s in SVMLIGHT_SUFFIXES for z in ("", ".gz", ".bz2"))):
        return _read_svmlight(path, n_features)
    raise CLIError(f"DATA: expected a .csv, .csv.gz, .tsv, .tsv.gz, .parquet, .npz, .npy or "
                   f"{'/'.join(SVMLIGHT_SUFFIXES)} file, got {os.path.basename(path)!r}")


def _is_frame(data):
    return not isinstance(data, Table)


def _read_frame(path):
    try:
        return tables.read_table(path)
    except ValueError as e:
        raise CLIError(f"DATA: {e}") from None
    except OSError as e:
        raise CLIError(f"DATA: cannot read {path!r} ({e.strerror or e})") from None


def _data_error(path, e):
    """A CLIError for a ValueError from fastbp.tables about the data in ``path``."""
    if isinstance(e, tables.TooManyCategories):
        return CLIError(f"DATA: {path!r} column {e.column!r} has {e.count} categories, more than --max-categories "
                        f"{e.limit}; raise the limit, or --drop the column if it holds identifiers")
    msg = str(e)
    return CLIError(f"DATA: {path!r}: {msg[len('frame: '):] if msg.startswith('frame: ') else msg}")


def _frame_target(frame, target, source):
    """The target column's name: ``target`` if the table has it, else the last column's."""
    names = frame.column_names
    if target is None:
        return names[-1]
    if target not in names:
        shown = names if len(names) <= 12 else names[:6] + ["..."] + names[-5:]
        raise CLIError(f"--target: no column {target!r} in {source!r}; columns are {shown}")
    return target


def _is_sparse_npz(path):
    """Whether a .npz was written by scipy.sparse.save_npz (it stores 'format' and 'shape')."""
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.keys())
    except (OSError, ValueError, EOFError) as e:
        raise CLIError(f"DATA: cannot read {path!r} as .npz ({e})") from None
    return {"format", "shape", "data"} <= keys


def _sparse_checked(path, X):
    """A scipy sparse X as a float64 CSR matrix with finite values (never densified: the model's
    first layer reads the stored entries)."""
    X = X.tocsr().astype(np.float64)
    bad = ~np.isfinite(X.data)
    if bad.any():
        e = int(np.flatnonzero(bad)[0])
        r = int(np.searchsorted(X.indptr, e, side="right")) - 1
        raise CLIError(f"DATA: {path!r} row {r + 1}, column {int(X.indices[e])}: expected a finite number, "
                       f"got {X.data[e]}")
    return X


def _read_sparse_npz(path, target, need_target):
    import scipy.sparse as sp
    if target is not None and not target.lower().endswith(".npy"):
        raise CLIError(f"--target: for a sparse .npz, expected the .npy file of its targets, got {target!r}")
    try:
        X = sp.load_npz(path)
    except (OSError, ValueError, EOFError, KeyError) as e:
        raise CLIError(f"DATA: cannot read {path!r} as a scipy sparse .npz ({e})") from None
    if X.ndim != 2 or X.shape[0] == 0:
        raise CLIError(f"DATA: {path!r} holds a sparse matrix of shape {X.shape}; expected (n_samples, n_features)")
    _numeric(path, "data", X.data)
    X = _sparse_checked(path, X)
    y_path = target if target is not None else (path[:-len(".npz")] + ".y.npy")
    if not need_target and target is None:
        return Table(path, X=X, sparse=True)
    if not os.path.exists(y_path):
        raise CLIError(f"DATA: {path!r} is a sparse matrix; its targets go in a 1-D .npy beside it, "
                       f"{os.path.basename(y_path)!r}, or named by --target; no such file: {y_path!r}")
    try:
        y = np.load(y_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise CLIError(f"--target: cannot read {y_path!r} as .npy ({e})") from None
    y = _numeric(y_path, "targets", y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise CLIError(f"--target: {y_path!r} holds shape {y.shape}; expected ({X.shape[0]},) to match {path!r}")
    _check_finite(y_path, y.astype(np.float64).reshape(-1, 1), ["y"])
    return Table(path, X=X, y=y, sparse=True)


def _read_svmlight(path, n_features=None):
    try:
        from sklearn.datasets import load_svmlight_file
    except ImportError:
        raise CLIError('DATA: reading svmlight/libsvm files needs scikit-learn: pip install "fastbp[sklearn]"') from None
    try:
        X, y = load_svmlight_file(path, n_features=n_features, dtype=np.float64)
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"DATA: {path!r} is not a readable svmlight/libsvm file ({first})") from None
    if X.shape[0] == 0:
        raise CLIError(f"DATA: {path!r} has no rows")
    return Table(path, X=_sparse_checked(path, X), y=y, sparse=True)


def _check_finite(source, data, names=None):
    bad = ~np.isfinite(data)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        col = repr(names[c]) if names else str(c)
        raise CLIError(f"DATA: {source!r} row {r + 1}, column {col}: expected a finite number, got {data[r, c]}")


def _numeric(source, key, a):
    if a.dtype.kind not in "biuf":
        raise CLIError(f"DATA: {source!r} array {key!r} has dtype {a.dtype}; expected numbers")
    return a


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if "X" not in keys:
                raise CLIError(f"DATA: {path!r} holds arrays {keys}; expected one named 'X' (and 'y' for training)")
            X = _numeric(path, "X", z["X"])
            y = _numeric(path, "y", z["y"]) if "y" in keys else None
    except CLIError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise CLIError(f"DATA: cannot read {path!r} as .npz ({e})") from None
    if X.ndim != 2 or X.shape[0] == 0:
        raise CLIError(f"DATA: {path!r} array 'X' has shape {X.shape}; expected (n_samples, n_features)")
    if y is not None:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise CLIError(f"DATA: {path!r} array 'y' has shape {y.shape}; expected ({X.shape[0]},) to match X")
    X = X.astype(np.float64)
    _check_finite(path, X)
    if y is not None:
        _check_finite(path, y.astype(np.float64).reshape(-1, 1), ["y"])
    return Table(path, X=X, y=y)


def _read_npy(path):
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise CLIError(f"DATA: cannot read {path!r} as .npy ({e})") from None
    if not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape[0] == 0:
        raise CLIError(f"DATA: {path!r} holds shape {getattr(a, 'shape', None)}; expected a 2-D array (rows, columns)")
    a = _numeric(path, "array", a).astype(np.float64)
    _check_finite(path, a)
    return Table(path, data=a)


def _target_index(table, target):
    """Column index of the target in table.data (CSV: header name; .npy: integer index)."""
    ncol = table.data.shape[1]
    if target is None:
        return ncol - 1
    if table.names is not None:
        if target in table.names:
            return table.names.index(target)
        shown = table.names if len(table.names) <= 12 else table.names[:6] + ["..."] + table.names[-5:]
        raise CLIError(f"--target: no column {target!r} in {table.source!r}; columns are {shown}")
    try:
        i = int(target)
    except ValueError:
        raise CLIError(f"--target: {table.source!r} has no header, so expected a column index in "
                       f"[-{ncol}, {ncol - 1}], got {target!r}") from None
    if not -ncol <= i < ncol:
        raise CLIError(f"--target: expected a column index in [-{ncol}, {ncol - 1}] for {ncol} columns, got {i}")
    return i % ncol


def split_xy(table, target, need_target=True, n_features=None):
    """(X, y or None, feature names, target name) from a Table.

    n_features (predict): if the table has exactly that many columns, all are features and y
    is None; if it has one more, the target column is dropped.
    """
    if table.X is not None:                      # .npz
        X, y = table.X, table.y
        if target is not None and target not in ("y", "-1") and not table.sparse:
            raise CLIError(f"--target: a .npz file names its target array 'y'; got --target {target!r}")
        if n_features is not None and X.shape[1] != n_features:
            raise CLIError(f"DATA: {table.source!r} has {X.shape[1]} features; the model expects {n_features}")
        if need_target and y is None:
            raise CLIError(f"DATA: {table.source!r} has no array 'y'; expected targets for this command")
        return X, y, [f"x{i}" for i in range(X.shape[1])], "y"
    data, names = table.data, table.names
    ncol = data.shape[1]
    names = names or [str(i) for i in range(ncol)]
    if n_features is not None:
        if need_target and ncol != n_features + 1:
            raise CLIError(f"DATA: {table.source!r} has {ncol} columns; expected the model's {n_features} "
                           f"feature columns plus one target column")
        if not need_target and ncol not in (n_features, n_features + 1):
            raise CLIError(f"DATA: {table.source!r} has {ncol} columns; expected the model's {n_features} "
                           f"feature columns (or {n_features + 1} with a target column)")
        if ncol == n_features:
            return data, None, names, None
    if ncol < 2:
        raise CLIError(f"DATA: {table.source!r} has {ncol} column; expected feature columns plus a target column")
    ti = _target_index(table, target)
    keep = [j for j in range(ncol) if j != ti]
    return np.ascontiguousarray(data[:, keep]), data[:, ti], [names[j] for j in keep], names[ti]


# ---- helpers -------------------------------------------------------------------------------------
def _is_labels(y):
    return bool(np.all(y == np.round(y)) and y.min() >= 0)


def decide_task(task, y, target_name):
    """("classify", k) or ("regress", 1) for targets y; CLIError if task classify cannot apply."""
    if task == "regress":
        return "regress", 1
    if task == "classify":
        if not _is_labels(y):
            bad = y[(y != np.round(y)) | (y < 0)][0]
            raise CLIError(f"--task classify: target {target_name!r} must hold class labels 0, 1, 2, ...; got {bad:g}")
        return "classify", max(2, int(y.max()) + 1)
    if _is_labels(y) and y.max() < MAX_AUTO_CLASSES:
        return "classify", max(2, int(y.max()) + 1)
    return "regress", 1


REGRESSION_LOSSES = ("mae", "huber", "poisson")


def describe_model(args, sizes, output, loss, huber_delta):
    """The model line's description: sizes, activations/output, then norm, dropout, penalties and
    the loss with its settings, each only when used."""
    def listed(values, fmt=str):
        return ",".join(fmt(v) for v in values)

    parts = [f"{listed(args.activation)}/{output}"]
    if any(n != "none" for n in args.norm):
        parts.append(f"{args.norm[0]} norm" if len(args.norm) == 1 else f"norm {listed(args.norm)}")
    if any(args.dropout):
        parts.append(f"dropout {listed(args.dropout, lambda r: f'{r:g}')}")
    parts += [f"{name} {v:g}" for name, v in (("l1", args.l1), ("l2", args.l2)) if v]
    settings = {"huber": f" (delta {huber_delta:g})",
                "cross_entropy": f" (label smoothing {args.label_smoothing:g})" if args.label_smoothing else ""}
    parts.append(f"loss {loss}{settings.get(loss, '')}")
    return " -> ".join(map(str, sizes)) + ", " + ", ".join(parts)


def _rebuilt(model, **changes):
    """A copy of ``model`` with some constructor arguments changed (same params, statistics and
    update count)."""
    from .model import MLP
    new = MLP(**{**model.config(), **changes})
    new.params[...] = model.params
    new.buffers[...] = model.buffers
    new.updates = model.updates
    return new


def auto_batch(n):
    """256, or less on small data: at least MIN_STEPS_PER_EPOCH updates per epoch, never below MIN_AUTO_BATCH."""
    return int(max(MIN_AUTO_BATCH, min(256, n // MIN_STEPS_PER_EPOCH)))


def _scaled_features(X, mu, sd, dtype):
    """(X - mu) / sd in ``dtype``; a sparse X stays sparse (mu is 0 for it, see _standardizer)."""
    if is_sparse(X):
        X = X.tocsr(copy=True)
        X.data /= sd[X.indices]
        return X.astype(dtype)
    return ((X - mu) / sd).astype(dtype)


def fold_output_scaling(model, mu, sd):
    """Make the (linear) last layer output raw y where it was trained on (y - mu) / sd."""
    W, b = model.layers[-1].W, model.layers[-1].b
    W[...] = W.astype(np.float64) * sd
    b[...] = b.astype(np.float64) * sd + mu


def model_targets(model, y):
    """Targets in the form the model's loss takes: labels, one-hot (squared losses on softmax), or values."""
    k = model.sizes[-1]
    if model.output == "softmax" and model.loss != "cross_entropy":
        if not _is_labels(y) or y.max() >= k:
            raise CLIError(f"DATA: targets must be class labels 0..{k - 1} for this model; got {y[:3].tolist()}...")
        return np.eye(k, dtype=model.dtype)[y.astype(np.int64)]
    if model.loss == "cross_entropy":
        if not _is_labels(y) or y.max() >= k:
            bad = y[(y != np.round(y)) | (y < 0) | (y >= k)][0]
            raise CLIError(f"DATA: targets must be class labels 0..{k - 1} for this {k}-class model; got {bad:g}")
        return y.astype(np.int64)
    return y


# the metrics the command line reports (and --plot draws) for each kind of task
CLASSIFY_METRICS = ("accuracy", "auc", "f1")
REGRESS_METRICS = ("mae", "rmse", "r2")


def task_metrics(model):
    """The metric names for ``model``'s task: classification for softmax/sigmoid outputs."""
    return CLASSIFY_METRICS if model.output in ("softmax", "sigmoid") else REGRESS_METRICS


def metrics(model, X, y):
    """loss (the model's data loss: without an l1/l2 penalty, which depends on the input scaling
    folded into the first layer), plus the task's metrics (task_metrics) from fastbp.metrics."""
    import warnings
    from .metrics import UndefinedMetricWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)      # printed as nan
        out = dict(model.evaluate(X, model_targets(model, y), metrics=list(task_metrics(model))))
    out["loss"] -= model.penalty()
    return out


def _fmt_metrics(m):
    return "  ".join(f"{k} {v:.4f}" for k, v in m.items())


def _launched_comm():
    """The mpi4py communicator when started by mpiexec with several ranks, else None."""
    try:
        from .distributed import launched_comm
        return launched_comm()
    except (ImportError, AttributeError):
        return None


def _load_model(path):
    from .model import load
    _check_path(path, "MODEL")
    try:
        return load(path)
    except ValueError as e:
        raise CLIError(f"MODEL: {e}") from None


def _table_target(frame, path, args):
    """(frame without the dropped columns and target-less rows, y, target name, class names or None,
    rows dropped) for ``train`` on a table file."""
    for col in args.drop:
        if col not in frame.column_names:
            raise CLIError(f"--drop: no column {col!r} in {path!r}")
    target = _frame_target(frame, args.target, path)
    if target in args.drop:
        raise CLIError(f"--drop: {target!r} is the target column")
    frame = frame.drop_columns(args.drop) if args.drop else frame
    if frame.num_columns < 2:
        raise CLIError(f"DATA: {path!r} has {frame.num_columns} column; expected feature columns plus a target column")
    for col, column in zip(frame.column_names, frame.columns):
        if col != target and column.null_count == len(column):
            raise CLIError(f"DATA: {path!r} column {col!r} is empty (no value in any row); --drop it")
        if col != target:
            try:                         # row numbers of the whole file, before any row is dropped
                tables.check_numeric_text(column, col)
                tables.check_no_inf(column, col)
            except ValueError as e:
                raise _data_error(path, e) from None
    try:
        y, dropped, classes = tables.encode_target(frame, target)
    except ValueError as e:
        raise _data_error(path, e) from None
    n_dropped = int(dropped.sum())
    if n_dropped:
        frame = tables.rows_where(frame, ~dropped)
    return frame, y.astype(np.float64), target, classes, n_dropped


# ---- commands ------------------------------------------------------------------------------------
def lr_schedule(args, updates):
    """The ``lr`` of the optimizer for ``--lr``, ``--schedule`` and ``--warmup-steps`` over a run of
    ``updates`` updates: a number, or a schedule (fastbp.schedules)."""
    from . import schedules

    if args.schedule != "cosine" and args.warmup_steps:
        raise CLIError(f"--warmup-steps: only --schedule cosine has a warm-up, got --schedule {args.schedule}")
    if args.schedule == "cosine":
        if args.warmup_steps >= updates:
            raise CLIError(f"--warmup-steps: expected fewer than the run's {updates} updates (--epochs times "
                           f"the minibatches per epoch), got {args.warmup_steps}")
        # Keras' CosineDecay: a linear warm-up from initial_learning_rate (0) to warmup_target, then
        # the decay from warmup_target over the remaining updates
        return schedules.CosineDecay(0.0, updates - args.warmup_steps, warmup_target=args.lr,
                                     warmup_steps=args.warmup_steps)
    if args.schedule == "onecycle":
        return schedules.OneCycle(args.lr, updates)
    return args.lr


def cmd_train(args, out, err):
    import fastbp
    from . import datasets
    from .optim import OPTIMIZERS

    comm = _launched_comm()
    root = comm is None or comm.Get_rank() == 0

    def say(*a):
        if root:
            print(*a, file=out)

    if args.threads is not None:
        import numba
        limit = numba.config.NUMBA_NUM_THREADS
        if args.threads > limit:
            raise CLIError(f"--threads: expected at most {limit} (the cores numba started with), got {args.threads}")
        fastbp.set_num_threads(args.threads)

    # -- data --
    name = args.data or DEFAULT_DATASET
    frame = classes = None               # a table file: its columns, and a text target's class names
    n_dropped = 0
    if args.data is None or (not os.path.exists(name) and name in datasets.DATASETS):
        ds = datasets.load(name)
        X, y = ds.X.astype(np.float64), ds.y.astype(np.float64)
        feature_names, target_name, source = ds.feature_names, "label", f"{name} (embedded)"
        if args.target is not None:
            raise CLIError(f"--target: the embedded dataset {name!r} has its own target; --target is for data files")
    else:
        data = read_data(name, args.target)
        source = name
        if _is_frame(data):
            frame, y, target_name, classes, n_dropped = _table_target(data, name, args)
            X = None
        else:
            X, y, feature_names, target_name = split_xy(data, None if data.sparse else args.target)
    if args.drop and frame is None:
        raise CLIError(f"--drop: leaves out columns of a table file (.csv, .tsv, .parquet); {source!r} is not one")
    n = len(y)
    regress_only = args.loss in REGRESSION_LOSSES
    if classes is not None:
        if args.task == "regress":
            raise CLIError(f"--task regress: target {target_name!r} holds class names such as {classes[0]!r}; "
                           "use --task classify or auto")
        if regress_only:
            raise CLIError(f"--loss {args.loss}: a regression loss, but target {target_name!r} holds class names "
                           f"such as {classes[0]!r}; use --loss cross_entropy")
        task, k = "classify", len(classes)
    elif regress_only:
        if args.task == "classify":
            raise CLIError(f"--loss {args.loss}: a regression loss, but --task classify; use --task regress or auto, "
                           "or --loss cross_entropy")
        task, k = "regress", 1
    else:
        task, k = decide_task(args.task, y, target_name)
        if task == "classify" and np.unique(y).size < 2:
            raise CLIError(f"target {target_name!r} has one class ({y[0]:g}) in all {n} samples; classification "
                           "needs at least two")

    # -- model choices --
    loss = args.loss
    if loss == "auto":
        loss = "cross_entropy" if task == "classify" else "mse"
    if task == "regress" and loss in ("cross_entropy", "binary_cross_entropy"):
        raise CLIError(f"--loss: {loss} needs class labels, but the task is regress "
                       f"(target {target_name!r}); use --loss mse or --task classify")
    if loss == "binary_cross_entropy":
        if k > 2:
            raise CLIError(f"--loss: binary_cross_entropy takes 2 classes, target {target_name!r} has {k}; "
                           "use --loss cross_entropy")
        output, k_out = "sigmoid", 1
    elif task == "classify":
        output, k_out = "softmax", k
    elif loss == "poisson":
        output, k_out = "exp", 1
        if y.min() < 0:
            raise CLIError(f"--loss poisson: target {target_name!r} must hold counts or rates >= 0; got {y.min():g}")
    else:
        output, k_out = "linear", 1
    if args.label_smoothing and loss != "cross_entropy":
        raise CLIError(f"--label-smoothing: applies to --loss cross_entropy only, got --loss {loss}")
    if args.huber_delta is not None and loss != "huber":
        raise CLIError(f"--huber-delta: applies to --loss huber only, got --loss {loss}")
    norms = [None if name == "none" else name for name in args.norm]

    # -- split (seeded shuffle, so a file sorted by class still gets a fair validation set) --
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(n)
    n_val = int(round(n * args.val_split))
    if args.val_split > 0 and (n_val < 1 or n_val >= n):
        raise CLIError(f"--val-split: {args.val_split:g} of {n} samples leaves no training or no validation data")
    tr, va = perm[: n - n_val], perm[n - n_val:]
    ytr, yva = y[tr], y[va]
    encoder = None
    if frame is not None:
        # A table goes the way of model.fit on a frame, which encodes and standardizes it and folds
        # the scaling in: the preprocessor is learned here from the training rows (in file order)
        # only because the model's input width must be known to build it; set on the new model,
        # fit applies it as it is (fastbp.frames).
        encoder = tables.TablePreprocessor(max_categories=args.max_categories)
        try:
            train_rows = np.zeros(n, bool)
            train_rows[tr] = True
            encoder.fit(tables.rows_where(frame, train_rows), target_name, classes=classes)
        except ValueError as e:
            raise _data_error(name, e) from None
        d = encoder.n_features_out
        Xtr, Xva = frame.take(tr), frame.take(va)
    else:
        d = X.shape[1]
        Xtr, Xva = X[tr], X[va]
        # standardized features; a sparse X is only scaled (and stays sparse)
        mu, sd = frames.standardizer(Xtr)
    ymu, ysd = (0.0, 1.0)
    if task == "regress" and loss != "poisson":      # poisson: an exp output on the raw counts
        ymu, ysd = float(ytr.mean()), float(ytr.std()) or 1.0
    huber_delta = 1.0 if args.huber_delta is None else args.huber_delta

    # huber's delta is in the target's units: ysd of them on the standardized targets
    model = fastbp.MLP([d] + args.layers + [k_out], activation=_per_layer_value(args.activation), output=output,
                       loss=loss, seed=args.seed, dtype=args.dtype, norm=_per_layer_value(norms),
                       dropout=_per_layer_value(args.dropout), l1=args.l1, l2=args.l2,
                       label_smoothing=args.label_smoothing, huber_delta=huber_delta / ysd)

    if encoder is not None:
        model.preprocessor = encoder

    def scaled(Xp, yp):
        # the rows of a table as they are: fit encodes and standardizes them
        Xs = Xp if encoder is not None else _scaled_features(Xp, mu, sd, model.dtype)
        if task == "regress":
            return Xs, ((yp - ymu) / ysd).astype(model.dtype)
        return Xs, model_targets(model, yp)

    Xs, ys = scaled(Xtr, ytr)
    val = scaled(Xva, yva) if n_val else None
    batch = auto_batch(len(tr)) if args.batch_size == "auto" else args.batch_size
    if "batch" in norms:                 # batch norm cannot normalize a minibatch of one row
        if args.batch_size == "auto":
            while len(tr) % batch == 1:
                batch += 1
        elif min(batch, len(tr)) == 1 or len(tr) % batch == 1:
            raise CLIError(f"--norm batch: minibatches of {batch} over the {len(tr)} training rows leave one of a "
                           "single row, which batch norm cannot normalize; change --batch-size")
    opt = OPTIMIZERS.get(args.optimizer).cls(lr=lr_schedule(args, args.epochs * -(-len(tr) // batch)))

    say(f"data: {source}: {n} samples x {d} features, target {target_name!r}, "
        + (f"classify ({k} classes)" if task == "classify" else "regress"))
    if encoder is not None:
        say(encoder.report() + (f"; {n_dropped} row{'s' if n_dropped != 1 else ''} with a missing target dropped"
                             if n_dropped else ""))
    say(f"model: {describe_model(args, model.sizes, output, loss, huber_delta)}, {model.n_params:,} params; "
        f"{args.optimizer} lr {args.lr:g}"
        + ("" if args.schedule == "none" else f" ({args.schedule}"
           + (f", {args.warmup_steps} warm-up updates)" if args.schedule == "cosine" else ")"))
        + f", batch {batch}, {args.epochs} epochs, "
        f"{fastbp.get_num_threads()} threads" + (f", {comm.Get_size()} MPI ranks" if comm is not None else ""))
    verbose = 1 if (root and not args.quiet) else 0
    fit_kw = dict(epochs=args.epochs, batch_size=batch, optimizer=opt, validation_data=val, verbose=verbose,
                  metrics=list(task_metrics(model)))
    if comm is not None:
        fit_kw["comm"] = comm
    t0 = time.perf_counter()
    hist = model.fit(Xs, ys, **fit_kw)
    dt = time.perf_counter() - t0
    epochs_run = len(hist.epoch)

    # -- fold the scaling in (fit did it for a table): the saved model takes raw data; report
    # metrics of that model --
    if encoder is None:
        frames.fold_input_scaling(model, mu, sd)
    if task == "regress" and loss != "poisson":
        fold_output_scaling(model, ymu, ysd)
    if loss == "huber" and ysd != 1.0:   # the saved model's delta in the target's own units
        model = _rebuilt(model, huber_delta=huber_delta)
    if encoder is not None:
        model.preprocessor = encoder     # saved in the model file; predict and evaluate apply it
    # samples/s of the training steps alone: not compilation, validation or callbacks
    steps_s = hist.timing["train"]
    rate = len(tr) * epochs_run / steps_s if steps_s > 0 else float("inf")
    if task == "regress" and loss != "poisson":
        say("(training losses above are on standardized targets; below, on the data's own scale)")
    if args.l1 or args.l2:
        say("(training losses above include the l1/l2 penalty; below, the data loss alone)")
    compiled = hist.timing["compile"]
    say(f"trained {epochs_run} epochs in {dt:.2f} s ({steps_s:.2f} s of training steps"
        + (f", {compiled:.1f} s compiling kernels" if compiled >= 0.05 else "") + f"), {rate:,.0f} samples/s"
        + (" (interrupted)" if hist.interrupted else ""))
    say(f"train:      {_fmt_metrics(metrics(model, Xtr, ytr))}  ({len(tr)} samples)")
    if n_val:
        say(f"validation: {_fmt_metrics(metrics(model, Xva, yva))}  ({n_val} samples)")
    if root:
        try:
            model.save(args.out)
        except OSError as e:
            raise CLIError(f"--out: cannot write {args.out!r} ({e.strerror or e})") from None
        say(f"model saved to {args.out} (takes raw {'columns, by name' if encoder is not None else 'features'}; "
            f"'fastbp predict {args.out} DATA')")
        if args.plot:
            try:
                hist.plot(args.plot, metrics=["loss"] + [k for k in task_metrics(model) if k in hist.history])
            except ImportError as e:
                raise CLIError(f"--plot: {e}") from None
            except (OSError, ValueError) as e:
                raise CLIError(f"--plot: cannot write {args.plot!r} ({e})") from None
            say(f"curves saved to {args.plot}")
    return 0


def _model_inputs(model, data, path, target, need_target):
    """(X, y or None, rows dropped for a missing target) for ``model`` from what read_data(path) returned."""
    prep = getattr(model, "preprocessor", None)
    if _is_frame(data) and prep is not None:        # a table model: columns by name
        try:     # encoded straight into the model's dtype (a float32 model: no float64 copy)
            if not need_target:
                return prep._encode(data, model.dtype), None, 0
            X, y, dropped = prep._encode_xy(data, target, model.dtype)
        except ValueError as e:
            raise _data_error(path, e) from None
        if y.size == 0:
            raise CLIError(f"DATA: {path!r}: every row's target is missing")
        return X, y.astype(np.float64), int(dropped.sum())
    if _is_frame(data):                              # an array model: every column a number, in order
        try:
            M = tables.numeric_matrix(data)
        except ValueError as e:
            raise _data_error(path, e) from None
        data = Table(path, names=data.column_names, data=M)
    X, y, _, _ = split_xy(data, None if data.sparse else target, need_target=need_target,
                          n_features=model.sizes[0])
    return X, y, 0


def _csv_cell(text):
    """``text`` as one CSV cell (quoted when it holds a comma, quote, line break or edge spaces)."""
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def cmd_predict(args, out, err):
    model = _load_model(args.model)
    data = read_data(args.data, args.target, need_target=False, n_features=model.sizes[0])
    X, _, _ = _model_inputs(model, data, args.data, args.target, need_target=False)
    P = model.predict(X.astype(model.dtype, copy=False))
    prep = getattr(model, "preprocessor", None)
    names = prep.classes_ if prep is not None else None
    classes = model.output in ("softmax", "sigmoid")
    k = P.shape[1]
    labels = None                        # class names, one per row, when the model has them
    if classes and model.output == "softmax":
        idx = P.argmax(1)
        if names is not None:
            header, labels, cols = ["class"] + [f"p_{c}" for c in names], [names[i] for i in idx], [P]
        else:
            header, cols = ["class"] + [f"p{j}" for j in range(k)], [idx[:, None].astype(np.float64), P]
    elif classes:
        C = (P > 0.5).astype(np.float64)
        if names is not None and k == 1:
            header, labels, cols = ["class", f"p_{names[1]}"], [names[int(c)] for c in C[:, 0]], [P]
        else:
            header = (["class", "p1"] if k == 1 else [f"class{j}" for j in range(k)] + [f"p{j}" for j in range(k)])
            cols = [C, P]
    else:
        header = ["prediction"] if k == 1 else [f"y{j}" for j in range(k)]
        cols = [P]
    fmt = "%.9g" if model.dtype == np.float32 else "%.17g"       # exact round trip of the stored floats
    body = np.hstack([c.astype(np.float64) for c in cols])
    fmts = [("%d" if h.startswith("class") else fmt) for h in (header[1:] if labels is not None else header)]

    def chunks(rows_per_chunk=1 << 16):
        """The CSV text in encoded blocks of rows, so a large output is never one string in memory."""
        yield (",".join(_csv_cell(h) for h in header) + "\n").encode("utf-8")
        for r0 in range(0, body.shape[0], rows_per_chunk):
            block = io.StringIO()
            np.savetxt(block, body[r0:r0 + rows_per_chunk], delimiter=",", fmt=fmts)
            text = block.getvalue()
            if labels is not None:
                text = "".join(f"{_csv_cell(c)},{line}\n"
                               for c, line in zip(labels[r0:r0 + rows_per_chunk], text.splitlines()))
            yield text.encode("utf-8")

    if args.output:
        from .io import atomic_write
        try:
            atomic_write(args.output, chunks())
        except OSError as e:
            raise CLIError(f"-o/--output: cannot write {args.output!r} ({e.strerror or e})") from None
        print(f"wrote {X.shape[0]} predictions to {args.output}", file=err)
    else:
        for chunk in chunks():
            out.write(chunk.decode("utf-8"))
    return 0


def cmd_evaluate(args, out, err):
    model = _load_model(args.model)
    data = read_data(args.data, args.target, need_target=True, n_features=model.sizes[0])
    X, y, n_dropped = _model_inputs(model, data, args.data, args.target, need_target=True)
    m = metrics(model, X.astype(model.dtype, copy=False), y)
    print(f"{args.data}: {X.shape[0]} samples: {_fmt_metrics(m)}"
          + (f"  ({n_dropped} row{'s' if n_dropped != 1 else ''} with a missing target skipped)" if n_dropped else ""),
          file=out)
    return 0


def cmd_info(args, out, err):
    import numba
    import scipy
    import fastbp
    from . import threads

    print(f"fastbp {__version__}", file=out)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, numba {numba.__version__}, "
          f"scipy {scipy.__version__}", file=out)
    print(f"threads: {fastbp.get_num_threads()} (max {numba.config.NUMBA_NUM_THREADS}; {os.cpu_count()} CPUs)",
          file=out)
    try:
        layer = threads.threading_layer()
    except Exception as e:               # noqa: BLE001 - report, do not fail, in a diagnostics command
        layer = f"unavailable ({type(e).__name__}: {e})"
    print(f"threading layer: {layer}", file=out)
    try:
        from threadpoolctl import threadpool_info
        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        blas = []
    if not blas:
        print("BLAS: none found by threadpoolctl", file=out)
    for i in blas:
        print(f"BLAS: {i.get('internal_api')} {i.get('version')} ({i.get('threading_layer', '?')} threading, "
              f"{i.get('num_threads')} threads outside fastbp's kernels) {i.get('filepath')}", file=out)
    cache = _compile_cache_dir()
    writable = os.access(cache, os.W_OK) if os.path.isdir(cache) else os.access(os.path.dirname(cache), os.W_OK)
    print(f"compile cache: {cache} ({'writable' if writable else 'not writable'})", file=out)
    return 0


def _compile_cache_dir():
    """Where numba keeps fastbp's compiled kernels."""
    import numba
    from .kernels import epoch as E
    try:
        return E.run_batches._cache._cache_path
    except AttributeError:
        return numba.config.CACHE_DIR or "(numba default)"


def cmd_compile(args, out, err):
    from .warmup import DTYPES, compile_kernels
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    for dtype, seconds in compile_kernels(dtypes).items():
        print(f"{dtype}: every kernel compiled or loaded in {seconds:.1f} s", file=out)
    print(f"compile cache: {_compile_cache_dir()}", file=out)
    return 0


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "info": cmd_info,
            "compile": cmd_compile}


class _Output:
    """The commands' standard output, which keeps working once its reader has gone: a closed
    pipe (``fastbp train ... | head``) drops what is written after it instead of raising, so a
    command still finishes its work (train still saves its model)."""

    def __init__(self, stream):
        self._stream, self.reader_gone = stream, False

    def write(self, text):
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self):
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self):
        self.reader_gone = True
        try:            # the interpreter flushes stdout at exit: point it at nothing, not the broken pipe
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv=None, out=None, err=None):
    """Run the ``fastbp`` command with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    out = _Output(out or sys.stdout)
    err = err or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"{e}", file=err)
        return EXIT_USAGE
    except SystemExit as e:               # --help, --version
        return e.code if isinstance(e.code, int) else 0
    if args.command is None:
        parser.print_help(out)
        return EXIT_USAGE
    if args.command == "train":
        problem = check_per_layer(args)
        if problem is not None:
            print(f"fastbp train: {problem} (see 'fastbp train --help')", file=err)
            return EXIT_USAGE
    from .errors import TrainingDiverged
    try:
        return COMMANDS[args.command](args, out, err)
    except CLIError as e:
        print(f"fastbp: error: {e}", file=err)
    except TrainingDiverged as e:
        print(f"fastbp: error: training diverged: {e}", file=err)
    except (ValueError, TypeError) as e:       # fastbp's own checks: already one line naming the argument
        print(f"fastbp: error: {e}", file=err)
    except MemoryError:
        print("fastbp: error: out of memory; try a smaller --batch-size or fewer/narrower --layers", file=err)
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=err)
        return EXIT_INTERRUPTED
    return EXIT_ERROR
