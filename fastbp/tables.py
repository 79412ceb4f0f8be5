"""Tables: CSV, TSV and Parquet files with categories and gaps, encoded for an MLP and back.

``read_table`` reads a file into a pyarrow Table with pyarrow's multi-threaded readers.
``TablePreprocessor`` learns, from the training rows, how to turn such a table (or a pandas
DataFrame) into the float matrix a model takes, and stores what it learned as plain JSON in the
model file, so that ``fastbp predict`` and ``predict_frame`` apply it to raw columns later:

- numeric columns (integers, floats; booleans as 0/1): a missing value (null or NaN) is replaced
  by the training rows' mean, and a column with gaps in the training rows gets a 0/1
  ``<name>_was_missing`` column (scikit-learn ``SimpleImputer(strategy="mean")`` plus
  ``MissingIndicator(features="missing-only")``);
- categorical columns (strings, or dictionary columns such as pandas categoricals): one 0/1
  column per category seen in the training rows, categories sorted (scikit-learn
  ``OneHotEncoder(handle_unknown="ignore")``); a category not seen in training, and a missing
  value, encode as all zeros, which no seen category does, so a network can still tell them apart;
- the encoded columns are the numeric ones in the table's order, each followed by its
  ``was_missing`` column if it has one, then the one-hot blocks in the table's order;
- a target column, if named: rows whose target is missing are dropped (and counted); a numeric
  target gives float values, a string target gives class indices into the sorted class names.

pyarrow is imported when first needed, so ``import fastbp`` stays quick for array users.
"""
import codecs
import math
import numbers
import os
import sys

import numpy as np

from .validation import check_int

MAX_CATEGORIES = 256
TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet")
# The spellings pandas.read_csv reads as missing, so a CSV read here and by pandas agree cell for cell.
NA_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
             "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
# TablePreprocessor(sparse="auto") returns CSR when the encoding is at least this wide and at most this
# dense (non-zeros per row over the width, an upper bound from the column kinds). Provisional: the
# benchmark of the sparse first-layer kernels decides the final values.
SPARSE_MIN_FEATURES = 256
SPARSE_MAX_DENSITY = 0.1
# A text column with at least this share of its filled cells numbers is a numeric column with bad
# cells (one "n/a." or "12,5" turns a CSV column into text), refused rather than one-hot encoded.
NUMERIC_TEXT_SHARE = 0.9
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_PAGED_MATRIX_BYTES = 64 << 20  # encoded matrices at least this large are allocated by zeros_matrix
_THREADED_CELLS = 1 << 20       # encoded matrices of at least this many cells are written by threads
# The NA spellings that would parse as a float NaN: read as gaps by the numbers-only read too.
_NAN_SPELLINGS = tuple(v for v in NA_VALUES if v.lower().lstrip("-") == "nan")
_SNIFF_BYTES = 1 << 16          # the leading bytes checked for binary data before a CSV parse
_JSON_VERSION = 1
_SHOWN = 8                      # column names listed in an error message


class TooManyCategories(ValueError):
    """A categorical column has more distinct values than ``max_categories`` allows.

    Attributes ``column`` (its name), ``count`` (its distinct values) and ``limit``.
    """

    def __init__(self, column, count, limit):
        self.column, self.count, self.limit = column, count, limit
        super().__init__(f"column {column!r} has {count} categories, more than max_categories={limit}; raise "
                         "the limit, or drop the column if it holds identifiers")


def _describe(x):
    if isinstance(x, np.ndarray):
        return f"ndarray of shape {x.shape} and dtype {x.dtype}"
    if x is None or isinstance(x, (str, bytes, numbers.Number)):
        return f"{type(x).__name__} {x!r}"
    module = type(x).__module__
    # the module tells a polars DataFrame from a pandas one
    return type(x).__name__ if module == "builtins" else f"{type(x).__name__} ({module.split('.')[0]})"


def _one_line(text, limit=160):
    """First line of an error message from pyarrow, printable and short (it may quote raw bytes)."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(text).__name__
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _names_shown(names):
    names = list(names)
    return repr(names) if len(names) <= _SHOWN else repr(names[:_SHOWN])[:-1] + f", ... ({len(names)} in all)]"


# ---- reading files ---------------------------------------------------------------------------------
def table_kind(path):
    """"csv", "tsv" or "parquet" from the file name's suffix, or None for any other file."""
    low = os.fspath(path).lower()
    if low.endswith((".csv", ".csv.gz")):
        return "csv"
    if low.endswith((".tsv", ".tsv.gz")):
        return "tsv"
    if low.endswith(".parquet"):
        return "parquet"
    return None


def read_table(path):
    """Read a table file into a pyarrow Table, with pyarrow's multi-threaded readers.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz`` (header row of column names) or
        ``.parquet`` file. In text files empty cells and the usual NA spellings
        (``NA_VALUES``, as pandas reads them) are nulls; column types are inferred (integers,
        floats, booleans ``true``/``false``, strings, dates).

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    TypeError
        ``path`` is not a str or os.PathLike.
    ValueError
        The suffix is none of the above, or the file is not a table (binary data, text that
        is not UTF-8, rows of different lengths, no header, no data rows, repeated column
        names): one line naming the file and what is wrong.
    OSError
        The file cannot be opened (missing, a folder, no permission).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike), got {_describe(path)}")
    path = os.fspath(path)
    kind = table_kind(path)
    if kind is None:
        raise ValueError(f"{path}: expected a table file ending in {', '.join(TABLE_SUFFIXES)}")
    if not os.path.isfile(path):
        with open(path, "rb"):          # the OSError the OS gives: missing file, a folder, no permission
            pass
    import pyarrow as pa
    if kind == "parquet":
        import pyarrow.parquet as pq
        try:
            table = pq.read_table(path, use_threads=True)
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"{path}: not a Parquet table ({_one_line(e)})") from None
    else:
        table = _read_text_table(path, kind)
    _check_read(path, table)
    return table


def _read_text_table(path, kind):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    what = kind.upper()
    try:
        with pa.input_stream(path) as f:                # decompresses .gz, as read_csv does
            head = f.read(_SNIFF_BYTES)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path}: cannot be read as {'gzip-compressed ' if path.lower().endswith('.gz') else ''}"
                         f"{what} ({_one_line(e)})") from None
    if not head:
        raise ValueError(f"{path}: is empty; expected a header row of column names")
    if b"\0" in head:
        raise ValueError(f"{path}: holds binary data (NUL bytes), not {what} text")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: is not UTF-8 text (byte {head[e.start]:#04x} at offset {e.start}); expected "
                         f"{what} text") from None
    parse = pcsv.ParseOptions(delimiter="," if kind == "csv" else "\t")
    table = _read_numeric_text(path, head, parse)
    if table is not None:
        return table
    try:
        return pcsv.read_csv(path, memory_pool=_read_pool(), read_options=pcsv.ReadOptions(use_threads=True),
                             parse_options=parse, convert_options=_convert_options())
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a {what} table ({_one_line(e)})") from None


def _convert_options(**kw):
    import pyarrow.csv as pcsv
    return pcsv.ConvertOptions(null_values=list(NA_VALUES), strings_can_be_null=True, quoted_strings_can_be_null=True,
                               **kw)


def _read_numeric_text(path, head, parse):
    """The table of a text file whose leading rows (``head``, its first bytes) are all integers
    and floats without gaps, read with those column types and only the NA spellings a float
    parser would read as NaN; None where the head is not like that, or any later cell does not
    parse (another NA spelling, a blank, text, a float in an integer column): then the caller
    reads it with type inference and every NA spelling, which gives the same table for a file
    that passes here.

    Checking every cell against all the NA spellings, and inferring types, costs about a fifth
    of pyarrow's reading time for numbers, the common case of a large file.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv
    if head.count(b"\n") < 2:         # a header and a row at least
        return None
    end = head.rfind(b"\n")
    try:
        sample = pcsv.read_csv(pa.py_buffer(head[:end + 1]), parse_options=parse, convert_options=_convert_options(),
                               read_options=pcsv.ReadOptions(use_threads=False))
    except (pa.ArrowException, UnicodeDecodeError):
        return None
    names = sample.column_names
    if len(set(names)) != len(names) or sample.num_rows == 0 or any(
            c.null_count or not (pa.types.is_int64(c.type) or pa.types.is_float64(c.type)) for c in sample.columns):
        return None
    try:
        table = pcsv.read_csv(
            path, memory_pool=_read_pool(), read_options=pcsv.ReadOptions(use_threads=True), parse_options=parse,
            convert_options=pcsv.ConvertOptions(column_types=dict(zip(names, sample.schema.types)),
                                                null_values=list(_NAN_SPELLINGS), strings_can_be_null=False))
    except (pa.ArrowException, OSError, UnicodeDecodeError):
        return None
    return table if table.column_names == names else None


def _read_pool():
    """The memory pool text files are read into: jemalloc where pyarrow has it, else the system
    allocator; not pyarrow's default mimalloc, whose memory comes in transparent huge pages.
    Where the kernel defragments memory for a huge page at its first touch (Linux's default
    "madvise" setting, on a machine whose free memory is fragmented), that made reading a 200 MB
    CSV spend 0.7 to 2 s more in the kernel than these pools (measured; see
    benchmarks/read_csv.py)."""
    import pyarrow as pa
    try:
        return pa.jemalloc_memory_pool()
    except (NotImplementedError, AttributeError, pa.ArrowException):
        return pa.system_memory_pool()


def zeros_matrix(rows, width, dtype=np.float64):
    """A C-contiguous (rows, width) matrix of zeros, in 4 KiB pages when large. numpy asks for
    transparent huge pages on large arrays; where the kernel must first defragment memory for
    them, writing a 200 MB matrix measured 0.5 to 1.3 s instead of 0.15 to 0.25 s. Zero pages
    of an anonymous mapping cost nothing until written."""
    dtype = np.dtype(dtype)
    nbytes = rows * width * dtype.itemsize
    if nbytes < _PAGED_MATRIX_BYTES:
        return np.zeros((rows, width), dtype)
    import mmap
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(rows, width)


def _check_read(path, table):
    import pyarrow as pa
    if table.num_columns == 0:
        raise ValueError(f"{path}: has no columns; expected a header row of column names")
    seen = set()
    for name in table.column_names:
        if name in seen:
            raise ValueError(f"{path}: column name {name!r} appears more than once; names must be unique")
        seen.add(name)
    for name, typ in zip(table.column_names, table.schema.types):
        if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
            raise ValueError(f"{path}: column {name!r} is not UTF-8 text (binary data?)")
    if table.num_rows == 0:
        raise ValueError(f"{path}: has a header but no data rows")


# ---- frames -----------------------------------------------------------------------------------------
def is_frame(obj):
    """True for a pyarrow Table or RecordBatch or a pandas DataFrame (without importing either)."""
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(obj, (pa.Table, pa.RecordBatch)):
        return True
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def pyarrow_if_loaded():
    """The pyarrow module if something imported it already, else None."""
    return sys.modules.get("pyarrow")


def is_text_type(typ):
    """Whether a pyarrow type holds text (string, large string, or a dictionary of either)."""
    return _kind(typ) == "categorical"


def column_kind(typ):
    """"numeric", "categorical", "empty" or None (unsupported): how the preprocessing reads a
    column of pyarrow type ``typ``."""
    return _kind(typ)


def rows_where(table, keep):
    """The rows of pyarrow ``table`` where the bool array ``keep`` is True, in order. Taken by
    their indices: pyarrow's filter works a chunk and column at a time, which costs a second
    on a CSV of hundreds of columns (read in a few hundred blocks)."""
    return table.take(np.flatnonzero(keep))


def as_table(frame, name="frame"):
    """``frame`` (pyarrow Table or RecordBatch, or pandas DataFrame) as a pyarrow Table.

    Raises TypeError for anything else and ValueError for a DataFrame pyarrow cannot convert
    or a frame with repeated column names.
    """
    import pyarrow as pa
    if isinstance(frame, pa.Table):
        table = frame
    elif isinstance(frame, pa.RecordBatch):
        table = pa.Table.from_batches([frame])
    elif is_frame(frame):
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise ValueError(f"{name}: pyarrow cannot convert this DataFrame ({_one_line(e)})") from None
    else:
        raise TypeError(f"{name}: expected a pandas DataFrame or a pyarrow Table, got {_describe(frame)}")
    return table


def _column(table, col, name="frame"):
    """The column named ``col``: ValueError if it is missing or its name appears twice."""
    idx = table.schema.get_all_field_indices(col)
    if not idx:
        raise ValueError(f"{name}: no column {col!r}; columns are {_names_shown(table.column_names)}")
    if len(idx) > 1:
        raise ValueError(f"{name}: column name {col!r} appears {len(idx)} times; names must be unique")
    return table.column(idx[0])


def _kind(typ):
    """"numeric", "categorical", "empty" (the null type) or None (unsupported) for a pyarrow type."""
    import pyarrow as pa
    t = pa.types
    is_view = getattr(t, "is_string_view", None)          # pyarrow >= 16
    if t.is_dictionary(typ) or t.is_string(typ) or t.is_large_string(typ) or (is_view and is_view(typ)):
        return "categorical"
    if t.is_integer(typ) or t.is_floating(typ) or t.is_boolean(typ) or t.is_decimal(typ):
        return "numeric"
    if t.is_null(typ):
        return "empty"
    return None


def _unsupported(col, typ, name):
    return ValueError(f"{name}: column {col!r} has type {typ}; expected numbers, booleans or text "
                      "(drop the column, or convert it, e.g. dates to numbers)")


def _as_float(column, col, name="frame"):
    """A numeric, boolean, empty or numeric-text column as a float64 ChunkedArray (nulls stay null)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    kind = _kind(column.type)
    if kind == "categorical":               # a numeric column that arrives as text: parse it, or say where not
        strings = pc.cast(column, pa.large_string())
        try:
            return pc.cast(strings, pa.float64())
        except pa.ArrowInvalid:
            bad = next(v for v in pc.unique(strings).to_pylist() if v is not None and not _parses(v))
            raise ValueError(f"{name}: column {col!r} holds text such as {bad!r}; it was numeric in the "
                             "training data") from None
    if kind is None:
        raise _unsupported(col, column.type, name)
    return pc.cast(column, pa.float64(), safe=False)


def _gaps(v, col, name="frame", row0=0):
    """Where float64 values ``v`` (rows row0...) are missing (NaN), or None if nowhere; ValueError for inf."""
    finite = np.isfinite(v)
    if finite.all():
        return None
    gaps = np.isnan(v)
    inf = ~(finite | gaps)
    if inf.any():
        r = int(np.flatnonzero(inf)[0])
        raise ValueError(f"{name}: column {col!r} row {row0 + r + 1}: expected a finite number or a blank, "
                         f"got {v[r]}")
    return gaps


def _numeric_values(column, col, name="frame"):
    """A numeric (or boolean, or all-null) column as float64 with NaN where it is missing."""
    v = _as_float(column, col, name).to_numpy(zero_copy_only=False)
    _gaps(v, col, name)
    return v


def _float_values(column, out):
    """A float64 ChunkedArray's values (NaN where null) written chunk by chunk into ``out``
    (contiguous, of its length): what ``column.to_numpy()`` returns, without allocating."""
    r0 = 0
    for chunk in column.chunks:
        out[r0:r0 + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
        r0 += len(chunk)
    return out


def _parses(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _strings(column, col, name="frame"):
    """A categorical column as a large_string ChunkedArray (numbers and booleans as their text)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    kind = _kind(column.type)
    if kind is None:
        raise _unsupported(col, column.type, name)
    return pc.cast(column, pa.large_string())


def check_numeric_text(column, col, name="frame"):
    """Raise ValueError, naming the column, the first bad cell's row and its text, for a plain
    text column whose filled cells are nearly all numbers (NUMERIC_TEXT_SHARE): a numeric
    column with a bad cell, which one-hot encoding would silently ruin. Dictionary columns
    (pandas categoricals) are categories by declaration and are not checked."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if _kind(column.type) != "categorical" or pa.types.is_dictionary(column.type):
        return
    strings = pc.cast(column, pa.large_string())
    filled = len(strings) - strings.null_count
    if filled == 0:
        return
    is_number = pc.fill_null(pc.match_substring_regex(strings, _NUMBER), True).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~is_number)
    numbers = filled - len(bad)
    if len(bad) and numbers >= NUMERIC_TEXT_SHARE * filled:
        r, one = int(bad[0]), len(bad) == 1
        raise ValueError(f"{name}: column {col!r} row {r + 1} holds {strings[r].as_py()!r}, not a number, while "
                         f"{numbers} of its {filled} filled cells are numbers ({len(bad)} {'is' if one else 'are'} "
                         f"not); fix {'that cell' if one else 'those cells'}, or leave {'it' if one else 'them'} "
                         "blank (or NA) to mark a gap")


def check_no_inf(column, col, name="frame"):
    """Raise ValueError, naming the column and the first row, for a floating-point column that
    holds inf or -inf (which no encoding can fill or scale); other columns pass."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if not pa.types.is_floating(column.type) or not pc.any(pc.is_inf(column)).as_py():
        return
    v = column.to_numpy(zero_copy_only=False)
    _gaps(np.asarray(v, np.float64), col, name)


def _distinct(strings):
    """Sorted distinct non-null values of a string column (Python str order, as OneHotEncoder)."""
    import pyarrow.compute as pc
    return sorted(v for v in pc.unique(strings).to_pylist() if v is not None)


def _indices(strings, values):
    """Index of each row's value in ``values``, -1 where missing or not among them (int64)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    idx = pc.index_in(strings, value_set=pa.array(values, pa.large_string()))
    return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _check_classes(classes, name="classes"):
    """A list of at least two distinct strings in sorted order, or ValueError/TypeError."""
    if isinstance(classes, (str, bytes)) or not isinstance(classes, (list, tuple, np.ndarray)):
        raise TypeError(f"{name}: expected a list of class names (str), got {_describe(classes)}")
    classes = list(classes)
    if not all(isinstance(c, str) for c in classes):
        raise TypeError(f"{name}: expected class names as str, got {[type(c).__name__ for c in classes][:5]}")
    if len(classes) < 2:
        raise ValueError(f"{name}: expected at least two class names, got {classes}")
    if any(a >= b for a, b in zip(classes, classes[1:])):
        raise ValueError(f"{name}: expected distinct class names in sorted order, got {_names_shown(classes)}")
    return classes


def encode_target(frame, target, classes=None):
    """The target column of ``frame`` as model targets, and which rows have none.

    Parameters
    ----------
    frame : pyarrow.Table, pyarrow.RecordBatch or pandas.DataFrame
    target : str
        Name of the target column.
    classes : list of str, optional
        Class names for a text target (sorted, distinct); default: the sorted names found in
        ``frame``, of which there must be at least two. Pass the names of the whole data set
        when ``frame`` is a training split, so that a class seen only in held-out rows is known.

    Returns
    -------
    y : ndarray
        float64 values for a numeric (or boolean) target; int64 indices into ``classes`` for a
        text target. Only the rows with a target, in order.
    dropped : ndarray of bool, shape (n_rows,)
        True for the rows whose target is missing (null or NaN).
    classes : list of str or None
        The class names (None for a numeric target).
    """
    table = as_table(frame)
    if not isinstance(target, str):
        raise TypeError(f"target: expected a column name (str), got {_describe(target)}")
    column = _column(table, target)
    kind = _kind(column.type)
    if kind == "empty" or column.null_count == len(column):
        raise ValueError(f"target column {target!r} is empty: every row's target is missing")
    if kind == "numeric":
        if classes is not None:
            raise ValueError(f"classes: target column {target!r} is numeric; class names apply to text targets")
        v = _numeric_values(column, target)
        dropped = np.isnan(v)
        if dropped.all():
            raise ValueError(f"target column {target!r} is empty: every row's target is missing")
        return v[~dropped], dropped, None
    if kind is None:
        raise _unsupported(target, column.type, "frame")
    strings = _strings(column, target)
    found = _distinct(strings)
    if classes is None:
        if len(found) < 2:
            raise ValueError(f"target column {target!r} has one class ({found[0]!r}); classification needs at "
                             "least two")
        classes = found
    else:
        classes = _check_classes(classes)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(f"target column {target!r} holds class {unknown[0]!r}, which is not among the "
                             f"classes {_names_shown(classes)}")
    idx = _indices(strings, classes)
    dropped = idx < 0                       # unknown names were ruled out above: these are the nulls
    return idx[~dropped], dropped, classes


def numeric_matrix(frame, name="frame"):
    """Every column of ``frame`` as one C-contiguous float64 matrix, for models without preprocessing.

    Columns must be numeric or boolean with no gaps; otherwise a ValueError names the first
    column (and row) that is not.
    """
    table = as_table(frame, name)
    for col, column in zip(table.column_names, table.columns):
        if _kind(column.type) == "categorical":
            example = next((v for v in _distinct(_strings(column, col, name)) if not _parses(v)), None)
            raise ValueError(f"{name}: column {col!r} holds text" + (f" such as {example!r}" if example else "")
                             + "; this model takes numbers only (it was trained on arrays, not on a table)")
    layout = [(_Numeric(col, 0.0, 0), j) for j, col in enumerate(table.column_names)]
    return _encode_dense(table, layout, table.num_columns, name, gaps_allowed=False)


def _encode_dense(table, layout, width, name="frame", gaps_allowed=True, dtype=np.float64):
    """The encoding of ``table`` by ``layout`` ([(column record, offset)]) as a C-order matrix of
    ``dtype``: float64, or a model's float32 (the bits of the float64 encoding cast to float32).

    Written a block of rows at a time (pyarrow's chunks, split to a few MB of output), so each
    block of the output stays in cache while every column is written into it (a column at a
    time over all rows would stride through memory). pyarrow hands the numeric columns of a
    block over as one row-major float64 array (``RecordBatch.to_tensor``, nulls as NaN), which
    is written into the block with one copy and checked for gaps with one call; a call per
    column and block would cost more than the copying on a table of hundreds of columns. The
    blocks are independent and pyarrow and numpy release the GIL in their loops, so a large
    table is written by as many threads as pyarrow reads with; every cell is written by one
    thread, whatever their number, and an error names the first bad cell in row order.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    prepared, value_sets = [], []
    for c, _ in layout:
        column = _column(table, c.name, name)
        if isinstance(c, _Numeric):
            # int64 and float64 (what the CSV reader gives) go to float64 in to_tensor itself
            same = pa.types.is_int64(column.type) or pa.types.is_float64(column.type)
            prepared.append(column if same else _as_float(column, c.name, name))
            value_sets.append(None)
        else:
            prepared.append(_strings(column, c.name, name))
            value_sets.append(pa.array(c.categories, pa.large_string()))
    out = zeros_matrix(table.num_rows, width, dtype)
    numeric = [(i, c, off) for i, (c, off) in enumerate(layout) if value_sets[i] is None]
    which = [i for i, _, _ in numeric]
    offsets = np.array([off for _, _, off in numeric], np.int64)
    # without "was missing" columns the numeric ones are side by side: a slice, not a gather
    side_by_side = len(numeric) > 0 and np.array_equal(offsets, offsets[0] + np.arange(len(numeric)))
    pool = _read_pool()
    narrow = out.dtype != np.float64               # float32: large finite values may overflow

    def encode(r0, batch):
        block = out[r0:r0 + batch.num_rows]
        if numeric:
            values = np.asarray(batch.select(which).to_tensor(null_to_nan=True, row_major=True, memory_pool=pool))
            with np.errstate(over="ignore"):        # a float32 overflow is reported below, with its cell
                if side_by_side:
                    block[:, offsets[0]:offsets[0] + len(numeric)] = values
                else:
                    block[:, offsets] = values
            if not np.isfinite(values).all():
                for q, (_, c, off) in enumerate(numeric):
                    gaps = _gaps(values[:, q], c.name, name, r0)
                    if gaps is None:
                        continue
                    if not gaps_allowed:
                        r = int(np.flatnonzero(gaps)[0])
                        raise ValueError(f"{name}: column {c.name!r} row {r0 + r + 1} is empty; this model takes "
                                         "numbers only (it was trained on arrays, not on a table)")
                    block[gaps, off] = c.mean
                    if c.missing:
                        block[gaps, off + 1] = 1.0
            if narrow and not np.isfinite(block).all():
                r, j = (int(i) for i in np.argwhere(~np.isfinite(block))[0])
                q = int(np.flatnonzero(offsets == j)[0])
                raise ValueError(f"{name}: column {numeric[q][1].name!r} row {r0 + r + 1}: the value {values[r, q]} is "
                                 f"beyond the range of {out.dtype}; rescale the data or use dtype='float64'")
        for i, (c, off) in enumerate(layout):
            if value_sets[i] is not None:
                idx = pc.fill_null(pc.index_in(batch.column(i), value_set=value_sets[i]), -1) \
                    .to_numpy(zero_copy_only=False)
                rows = np.flatnonzero(idx >= 0)
                block[rows, off + idx[rows]] = 1.0

    aligned = pa.table(prepared, names=[str(i) for i in range(len(prepared))])
    block_rows = int(np.clip((4 << 20) // (8 * max(width, 1)), 256, 65536))
    blocks, r0 = [], 0
    for batch in aligned.to_batches(max_chunksize=block_rows):
        if batch.num_rows:
            blocks.append((r0, batch))
            r0 += batch.num_rows
    threads = min(pa.cpu_count(), len(blocks)) if table.num_rows * width >= _THREADED_CELLS else 1
    if threads <= 1:
        for r0, batch in blocks:
            encode(r0, batch)
    else:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(threads) as pool_of_threads:
            for done in [pool_of_threads.submit(encode, r0, batch) for r0, batch in blocks]:
                done.result()           # the first failed block's error, in row order
    return out


# ---- the preprocessor -------------------------------------------------------------------------------
class _Numeric:
    __slots__ = ("name", "mean", "missing")

    def __init__(self, name, mean, missing):
        self.name, self.mean, self.missing = name, mean, missing


class _Categorical:
    __slots__ = ("name", "categories")

    def __init__(self, name, categories):
        self.name, self.categories = name, categories


class TablePreprocessor:
    """Encodes a table's mixed columns (numbers, booleans, text, gaps) as a model's float input.

    Learned from the training rows by ``fit``, applied by ``transform``; saved in a model file
    as JSON (``to_json``/``from_json``) so a loaded model predicts from raw columns. See the
    module docstring for the encoding, which follows scikit-learn's ``SimpleImputer`` (mean),
    ``MissingIndicator`` and ``OneHotEncoder(handle_unknown="ignore")``.

    Parameters
    ----------
    max_categories : int
        The most distinct values a categorical column may have (default 256); past it, ``fit``
        raises TooManyCategories naming the column and its count.
    sparse : bool or "auto"
        What ``transform`` returns: False, a dense ndarray; True, a scipy CSR matrix; "auto",
        CSR when the encoding is at least ``SPARSE_MIN_FEATURES`` wide and at most
        ``SPARSE_MAX_DENSITY`` dense. Default False while ``MLP`` takes dense input only.

    Attributes
    ----------
    target_ : str or None
        The target column ``fit`` was given.
    classes_ : list of str or None
        Class names of a text target, sorted; None for a numeric target or none.
    feature_names_in_ : list of str
        The columns the encoding reads, in the training table's order.
    """

    def __init__(self, max_categories=MAX_CATEGORIES, sparse=False):
        self.max_categories = check_int("max_categories", max_categories, 1)
        self.sparse = _check_sparse(sparse)
        self._columns = None
        self.target_ = None
        self.classes_ = None
        self._target_kind = None
        self._stats = None

    # -- learning ------------------------------------------------------------------------------------
    def fit(self, frame, target=None, classes=None):
        """Learn the encoding from ``frame``'s rows (its training rows).

        Parameters
        ----------
        frame : pyarrow.Table, pyarrow.RecordBatch or pandas.DataFrame
        target : str, optional
            The target column: it is not encoded as a feature, and rows where it is missing
            are dropped (and counted) before anything is learned.
        classes : list of str, optional
            For a text target, the class names (see ``encode_target``).

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            A frame of another type; no rows; a column name given twice; an unsupported
            column type; an empty column; a categorical column past ``max_categories``
            (TooManyCategories); a text target with one class.
        """
        table = as_table(frame)
        if table.num_rows == 0:
            raise ValueError("frame: expected at least one row, got none")
        target_kind, dropped = None, None
        if target is not None:
            _, dropped, classes = encode_target(table, target, classes)
            target_kind = "numeric" if classes is None else "classes"
            if dropped.any():
                table = rows_where(table, ~dropped)
        elif classes is not None:
            raise ValueError("classes: class names need a target column; got target=None")
        features = [c for c in table.column_names if c != target]
        if not features:
            raise ValueError(f"frame: no feature columns besides the target {target!r}")
        columns, values = [], None
        for col in features:
            column = _column(table, col)
            kind = _kind(column.type)
            if kind is None:
                raise _unsupported(col, column.type, "frame")
            if kind == "empty" or column.null_count == len(column):
                raise ValueError(f"frame: column {col!r} is empty in every training row; drop it")
            if kind == "numeric":
                if values is None:          # one buffer for every numeric column (see zeros_matrix)
                    values = zeros_matrix(table.num_rows, 1)[:, 0]
                v = _float_values(_as_float(column, col), values)
                gaps = _gaps(v, col)
                n_gaps = 0 if gaps is None else int(gaps.sum())
                if n_gaps == len(v):
                    raise ValueError(f"frame: column {col!r} is empty in every training row; drop it")
                mean = float(np.mean(v if gaps is None else v[~gaps]))
                if not math.isfinite(mean):
                    raise ValueError(f"frame: column {col!r}: its mean overflows float64 ({mean})")
                columns.append(_Numeric(col, mean, n_gaps))
            else:
                check_numeric_text(column, col)
                strings = _strings(column, col)
                found = _distinct(strings)
                if len(found) > self.max_categories:
                    raise TooManyCategories(col, len(found), self.max_categories)
                columns.append(_Categorical(col, found))
        # every check passed: now replace the learned state
        self._columns = columns
        self.target_ = target
        self._target_kind = target_kind
        self.classes_ = classes
        self._stats = {"rows": int(table.num_rows), "rows_dropped": int(dropped.sum()) if dropped is not None else 0}
        return self

    def set_classes(self, name, classes):
        """Keep class names of targets given apart from the frame (``fit(frame, y)`` with ``y`` an
        array of names): ``name`` (default "target") is what ``transform_target`` reads later."""
        self._check_fitted()
        name = "target" if name is None else name
        if not isinstance(name, str):
            raise TypeError(f"y: expected a name (str) for the targets, got {_describe(name)}")
        if name in self.feature_names_in_:
            raise ValueError(f"y: the targets' name {name!r} is also a feature column; rename one of them")
        self.target_, self._target_kind, self.classes_ = name, "classes", _check_classes(classes)
        return self

    def _check_fitted(self):
        if self._columns is None:
            raise ValueError("this TablePreprocessor is not fitted yet; call fit(frame) first")

    # -- the encoding --------------------------------------------------------------------------------
    @property
    def feature_names_in_(self):
        self._check_fitted()
        return [c.name for c in self._columns]

    def _layout(self):
        """[(column, offset in the encoding)], numeric columns first, then the one-hot blocks."""
        out, off = [], 0
        for c in self._columns:
            if isinstance(c, _Numeric):
                out.append((c, off))
                off += 2 if c.missing else 1
        for c in self._columns:
            if isinstance(c, _Categorical):
                out.append((c, off))
                off += len(c.categories)
        return out, off

    @property
    def n_features_out(self):
        """Width of the encoding: the model's input width."""
        self._check_fitted()
        return self._layout()[1]

    @property
    def feature_names_out(self):
        """Names of the encoded columns: ``age``, ``age_was_missing``, ``color=red``, ..."""
        self._check_fitted()
        names = []
        for c, _ in self._layout()[0]:
            if isinstance(c, _Numeric):
                names += [c.name] + ([f"{c.name}_was_missing"] if c.missing else [])
            else:
                names += [f"{c.name}={v}" for v in c.categories]
        return names

    @property
    def numeric_features_out(self):
        """Indices of the encoded columns that hold numeric values (not 0/1 indicators): the ones
        worth standardizing; scaling only these keeps a sparse encoding sparse."""
        self._check_fitted()
        return np.array([off for c, off in self._layout()[0] if isinstance(c, _Numeric)], np.int64)

    def _use_sparse(self):
        if self.sparse != "auto":
            return self.sparse
        width = self.n_features_out
        nonzero = sum(2 if isinstance(c, _Numeric) and c.missing else 1 for c in self._columns)
        return width >= SPARSE_MIN_FEATURES and nonzero / width <= SPARSE_MAX_DENSITY

    def transform(self, frame):
        """Encode ``frame`` (the training columns, found by name; any order; extra ones ignored).

        Parameters
        ----------
        frame : pyarrow.Table, pyarrow.RecordBatch or pandas.DataFrame

        Returns
        -------
        ndarray of float64, shape (n_rows, n_features_out), C order; or a scipy CSR matrix
        (see ``sparse``), in which every numeric value is stored, zeros included.

        Raises
        ------
        ValueError
            A column is missing (named), holds an unsupported type, numeric text that does not
            parse, or an infinite number.
        """
        return self._encode(frame)

    def _encode(self, frame, dtype=np.float64):
        """``transform``, a dense result as ``dtype``: float64, or float32 (the bits of the
        float64 result cast, without its float64 copy) for a float32 model's predict/evaluate."""
        self._check_fitted()
        table = as_table(frame)
        missing = [c.name for c in self._columns if not table.schema.get_all_field_indices(c.name)]
        if missing:
            raise ValueError(f"frame: no column {missing[0]!r}" + (f" (nor {_names_shown(missing[1:])})"
                                                                      if len(missing) > 1 else "")
                             + f"; the preprocessing reads {_names_shown(self.feature_names_in_)}")
        layout, width = self._layout()
        if self._use_sparse():
            return self._transform_csr(table, layout, width)
        return _encode_dense(table, layout, width, dtype=dtype)

    def _transform_csr(self, table, layout, width):
        import scipy.sparse as sp
        n = table.num_rows
        rows, cols, vals = [], [], []
        for c, off in layout:
            column = _column(table, c.name)
            if isinstance(c, _Numeric):
                v = _numeric_values(column, c.name)
                gaps = np.isnan(v)
                v = np.where(gaps, c.mean, v)
                rows.append(np.arange(n))
                cols.append(np.full(n, off))
                vals.append(v)
                if c.missing:
                    r = np.flatnonzero(gaps)
                    rows.append(r)
                    cols.append(np.full(len(r), off + 1))
                    vals.append(np.ones(len(r)))
            else:
                idx = _indices(_strings(column, c.name), c.categories)
                r = np.flatnonzero(idx >= 0)
                rows.append(r)
                cols.append(off + idx[r])
                vals.append(np.ones(len(r)))
        def cat(parts, dt):
            return np.concatenate(parts).astype(dt, copy=False) if parts else np.zeros(0, dt)
        X = sp.coo_matrix((cat(vals, np.float64), (cat(rows, np.int64), cat(cols, np.int64))),
                          shape=(n, width)).tocsr()
        X.sort_indices()
        return X

    def transform_target(self, frame, target=None):
        """The target column of ``frame`` as ``fit`` learned it.

        Parameters
        ----------
        frame : pyarrow.Table, pyarrow.RecordBatch or pandas.DataFrame
        target : str, optional
            The column holding the targets; default ``target_``.

        Returns
        -------
        y : ndarray
            float64 values, or int64 indices into ``classes_``, for the rows with a target.
        dropped : ndarray of bool, shape (n_rows,)
            True where the target is missing.

        Raises
        ------
        ValueError
            No such column; text where the training target was numeric; a class name not in
            ``classes_``.
        """
        self._check_fitted()
        if self._target_kind is None:
            raise ValueError("this TablePreprocessor was fitted without a target column")
        if target is None:
            target = self.target_
        elif not isinstance(target, str):
            raise TypeError(f"target: expected a column name (str), got {_describe(target)}")
        column = _column(as_table(frame), target)
        kind = _kind(column.type)
        if kind is None:
            raise _unsupported(target, column.type, "frame")
        if kind == "empty":
            empty = np.zeros(0, np.float64 if self._target_kind == "numeric" else np.int64)
            return empty, np.ones(len(column), bool)
        if self._target_kind == "numeric":
            if kind == "categorical":
                raise ValueError(f"frame: target column {target!r} holds text; the model was trained on a "
                                 "numeric target")
            v = _numeric_values(column, target)
            dropped = np.isnan(v)
            return v[~dropped], dropped
        idx = _indices(_strings(column, target), self.classes_)
        dropped = idx < 0
        unknown = dropped & column.is_valid().to_numpy(zero_copy_only=False)
        if unknown.any():
            r = int(np.flatnonzero(unknown)[0])
            raise ValueError(f"frame: target column {target!r} row {r + 1} holds class "
                             f"{_strings(column, target)[r].as_py()!r}, which is not among the model's classes "
                             f"{_names_shown(self.classes_)}")
        return idx[~dropped], dropped

    def transform_xy(self, frame, target=None):
        """(X, y, dropped): ``transform`` and ``transform_target`` of ``frame``, without the rows
        whose target is missing (``dropped`` marks them)."""
        return self._encode_xy(frame, target)

    def _encode_xy(self, frame, target=None, dtype=np.float64):
        """``transform_xy`` with X as ``dtype`` (see ``_encode``)."""
        y, dropped = self.transform_target(frame, target)
        table = as_table(frame)
        if dropped.any():
            table = rows_where(table, ~dropped)
        return self._encode(table, dtype), y, dropped

    # -- models --------------------------------------------------------------------------------------
    def check_model(self, model):
        """Raise ValueError unless ``model`` (an MLP) can take this encoding: its input width is
        ``n_features_out`` and, with class names, its output has one unit per class (softmax) or
        one unit for two classes (sigmoid)."""
        problem = self.model_problem(model.sizes, model.output)
        if problem:
            raise ValueError(problem)

    def model_problem(self, sizes, output):
        """Why a model of these ``sizes`` and ``output`` cannot take this encoding, or None."""
        self._check_fitted()
        width = self.n_features_out
        if sizes[0] != width:
            return (f"the preprocessing encodes {width} features but the model takes {sizes[0]} inputs")
        if self.classes_ is not None:
            k = len(self.classes_)
            if output == "softmax" and sizes[-1] != k:
                return f"the preprocessing has {k} class names but the model has {sizes[-1]} softmax outputs"
            if output == "sigmoid" and (k != 2 or sizes[-1] != 1):
                return (f"the preprocessing has {k} class names but the model has {sizes[-1]} sigmoid outputs "
                        "(one output takes two classes)")
            if output not in ("softmax", "sigmoid"):
                return f"the preprocessing has class names but the model's output is {output!r}, not a classifier"
        return None

    # -- reporting -----------------------------------------------------------------------------------
    def summary(self):
        """Counts from ``fit``: rows, rows_dropped (missing target), numeric, numeric_with_gaps,
        cells_filled, categorical, categories, features_out."""
        self._check_fitted()
        num = [c for c in self._columns if isinstance(c, _Numeric)]
        cat = [c for c in self._columns if isinstance(c, _Categorical)]
        return {"rows": self._stats["rows"], "rows_dropped": self._stats["rows_dropped"],
                "numeric": len(num), "numeric_with_gaps": sum(1 for c in num if c.missing),
                "cells_filled": sum(c.missing for c in num), "categorical": len(cat),
                "categories": sum(len(c.categories) for c in cat), "features_out": self.n_features_out}

    def report(self):
        """One line on what ``fit`` did with the columns, e.g. ``columns: 5 numeric (2 with gaps,
        37 cells filled), 2 categorical (11 categories); 3 rows with a missing target dropped``."""
        s = self.summary()
        line = f"columns: {s['numeric']} numeric"
        if s["numeric_with_gaps"]:
            line += (f" ({s['numeric_with_gaps']} with gaps, {s['cells_filled']} "
                     f"cell{'s' if s['cells_filled'] != 1 else ''} filled)")
        if s["categorical"]:
            line += f", {s['categorical']} categorical ({s['categories']} categories)"
        if s["rows_dropped"]:
            line += f"; {s['rows_dropped']} row{'s' if s['rows_dropped'] != 1 else ''} with a missing target dropped"
        return line

    def __repr__(self):
        state = "not fitted" if self._columns is None else \
            f"{len(self._columns)} columns -> {self.n_features_out} features"
        return f"TablePreprocessor(max_categories={self.max_categories}, sparse={self.sparse!r}) [{state}]"

    # -- JSON ----------------------------------------------------------------------------------------
    def to_json(self):
        """Everything ``fit`` learned, as a dict of JSON types (what a model file stores)."""
        self._check_fitted()
        cols = []
        for c in self._columns:
            if isinstance(c, _Numeric):
                cols.append({"name": c.name, "kind": "numeric", "mean": c.mean, "missing": c.missing})
            else:
                cols.append({"name": c.name, "kind": "categorical", "categories": list(c.categories)})
        target = None
        if self._target_kind is not None:
            target = {"name": self.target_, "kind": self._target_kind}
            if self.classes_ is not None:
                target["classes"] = list(self.classes_)
        return {"version": _JSON_VERSION, "max_categories": self.max_categories, "sparse": self.sparse,
                "columns": cols, "target": target, "stats": dict(self._stats)}

    @classmethod
    def from_json(cls, obj):
        """A fitted TablePreprocessor from ``to_json``'s dict, every field checked.

        The dict may come from an untrusted file: anything malformed is a ValueError saying
        which field and why (never an error from deeper inside).
        """
        try:
            return cls._from_json(obj)
        except _Bad as e:
            raise ValueError(f"preprocessing {e}") from None

    @classmethod
    def _from_json(cls, obj):
        _keys(obj, "", {"version", "max_categories", "sparse", "columns", "target", "stats"})
        if type(obj["version"]) is not int or obj["version"] != _JSON_VERSION:
            raise _Bad(f"version {obj['version']!r}: this fastbp reads version {_JSON_VERSION}")
        cap = obj["max_categories"]
        if type(cap) is not int or cap < 1:
            raise _Bad(f"max_categories {cap!r} is not an int >= 1")
        if obj["sparse"] not in (True, False, "auto") or type(obj["sparse"]) not in (bool, str):
            raise _Bad(f"sparse {obj['sparse']!r} is not true, false or \"auto\"")
        if not isinstance(obj["columns"], list) or not obj["columns"]:
            raise _Bad("columns is not a non-empty list")
        columns, names = [], set()
        for i, c in enumerate(obj["columns"]):
            where = f"columns[{i}]"
            if not isinstance(c, dict):
                raise _Bad(f"{where} is not an object")
            if c.get("kind") == "numeric":
                _keys(c, where, {"name", "kind", "mean", "missing"})
                mean, missing = c["mean"], c["missing"]
                if type(mean) not in (int, float) or not _finite(mean):
                    raise _Bad(f"{where}.mean {mean!r} is not a finite number")
                if type(missing) is not int or missing < 0:
                    raise _Bad(f"{where}.missing {missing!r} is not an int >= 0")
                col = _Numeric(c["name"], float(mean), missing)
            elif c.get("kind") == "categorical":
                _keys(c, where, {"name", "kind", "categories"})
                cats = c["categories"]
                if (not isinstance(cats, list) or not cats or len(cats) > cap
                        or not all(isinstance(v, str) for v in cats)):
                    raise _Bad(f"{where}.categories is not a list of 1 to max_categories={cap} strings")
                if any(a >= b for a, b in zip(cats, cats[1:])):
                    raise _Bad(f"{where}.categories are not distinct and sorted")
                col = _Categorical(c["name"], list(cats))
            else:
                raise _Bad(f"{where}.kind {c.get('kind')!r} is not 'numeric' or 'categorical'")
            if not isinstance(col.name, str):
                raise _Bad(f"{where}.name {col.name!r} is not a string")
            if col.name in names:
                raise _Bad(f"{where}.name {col.name!r} appears twice")
            names.add(col.name)
            columns.append(col)
        t = obj["target"]
        target = kind = classes = None
        if t is not None:
            if not isinstance(t, dict):
                raise _Bad("target is not an object or null")
            kind = t.get("kind")
            if kind == "numeric":
                _keys(t, "target", {"name", "kind"})
            elif kind == "classes":
                _keys(t, "target", {"name", "kind", "classes"})
                try:
                    classes = _check_classes(t["classes"], "target.classes")
                except (TypeError, ValueError) as e:
                    raise _Bad(str(e)) from None
            else:
                raise _Bad(f"target.kind {kind!r} is not 'numeric' or 'classes'")
            target = t["name"]
            if not isinstance(target, str):
                raise _Bad(f"target.name {target!r} is not a string")
            if target in names:
                raise _Bad(f"target.name {target!r} is also a feature column")
        stats = obj["stats"]
        _keys(stats, "stats", {"rows", "rows_dropped"})
        for k in ("rows", "rows_dropped"):
            if type(stats[k]) is not int or stats[k] < 0:
                raise _Bad(f"stats.{k} {stats[k]!r} is not an int >= 0")
        self = cls(max_categories=cap, sparse=obj["sparse"])
        self._columns = columns
        self.target_, self._target_kind, self.classes_ = target, kind, classes
        self._stats = {"rows": stats["rows"], "rows_dropped": stats["rows_dropped"]}
        return self


class _Bad(Exception):
    pass


def _keys(obj, where, expected):
    if not isinstance(obj, dict):
        raise _Bad(f"{where or 'object'} is not an object")
    if set(obj) != expected:
        extra, lacking = sorted(set(obj) - expected, key=str), sorted(expected - set(obj))
        raise _Bad(f"{where or 'object'} has " + (f"unknown keys {extra}" if extra else f"no {lacking}")
                   + f"; expected exactly {sorted(expected)}")


def _finite(x):
    try:
        return math.isfinite(x)
    except OverflowError:          # an int past float64's range
        return False


def _check_sparse(sparse):
    if isinstance(sparse, (bool, np.bool_)):
        return bool(sparse)
    if sparse == "auto":
        return "auto"
    raise (ValueError if isinstance(sparse, str) else TypeError)(
        f"sparse: expected True, False or 'auto', got {_describe(sparse)}")


# ---- models -----------------------------------------------------------------------------------------
def preprocessor_of(model):
    """``model.preprocessor``: a TablePreprocessor that fits the model; ValueError if it has none."""
    prep = getattr(model, "preprocessor", None)
    if prep is None:
        raise ValueError("model: has no table preprocessing (it was trained on arrays); pass it the encoded "
                         "array, or train it on a table")
    if not isinstance(prep, TablePreprocessor):
        raise TypeError(f"model.preprocessor: expected None or a TablePreprocessor, got {_describe(prep)}")
    prep.check_model(model)
    return prep


def predict_frame(model, frame, batch_size=None):
    """``model.predict`` on the raw columns of ``frame``, encoded by ``model.preprocessor``.

    Parameters
    ----------
    model : MLP
        A model with a ``preprocessor`` (trained on a table, or loaded from such a model's file).
    frame : pyarrow.Table, pyarrow.RecordBatch or pandas.DataFrame
        The training columns by name, in any order; other columns are ignored.
    batch_size : int, optional
        As for ``model.predict``.

    Returns
    -------
    ndarray, shape (n_rows, n_outputs)
        What ``model.predict`` returns on the encoded rows.
    """
    preprocessor_of(model)
    return model.predict(as_table(frame), batch_size=batch_size)


def predict_labels_frame(model, frame, batch_size=None):
    """Predicted class names for the rows of ``frame`` (class indices if the target was numeric).

    Argmax for a softmax output, probability above 0.5 for one sigmoid output, as
    ``model.predict_classes``. Raises ValueError for a regression model.

    Returns
    -------
    ndarray of shape (n_rows,): str objects (class names) or int64 (class indices)
    """
    preprocessor_of(model)
    if model.output == "sigmoid" and model.sizes[-1] != 1:
        raise ValueError(f"model: predict_labels takes one sigmoid output (two classes), this model has "
                         f"{model.sizes[-1]} (multi-label)")
    return model.predict_labels(as_table(frame), batch_size=batch_size)
