"""fastbp.tables: reading CSV/TSV/Parquet, the TablePreprocessor's encoding (checked against
scikit-learn's imputer, indicator and one-hot encoder), its JSON (round trip and corruptions),
predicting from frames, and the preprocessing stored in model files."""
import copy
import gzip
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbp
from fastbp import tables
from fastbp.tables import TablePreprocessor, TooManyCategories

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")

# A mixed table as a user exports it: numbers with blanks, text with blanks, booleans, quoted
# commas, NA spellings, a text target with a blank.
MIXED_CSV = """\
age,city,member,income,kids,plan,label
34,paris,true,3100.5,0,basic,yes
,lyon,false,,1,pro,no
51,NA,true,2800,2,basic,yes
28,"nice, old town",,4200.25,0,pro,no
45,paris,false,3900,3,basic,
62,lyon,true,n/a,1,"pro",yes
39,,false,3300,0,basic,no
23,paris,true,2500.75,2,pro,yes
"""
MIXED_NAMES = ["age", "age_was_missing", "member", "member_was_missing", "income", "income_was_missing", "kids",
               "city=lyon", "city=nice, old town", "city=paris", "plan=basic", "plan=pro"]


def write(path, text, gz=False):
    data = text.encode()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def mixed(tmp_path):
    return tables.read_table(write(tmp_path / "mixed.csv", MIXED_CSV))


# ---- reading --------------------------------------------------------------------------------------
def test_read_table_infers_types_and_reads_blanks_and_na_spellings_as_nulls(mixed):
    types = dict(zip(mixed.column_names, map(str, mixed.schema.types)))
    assert types == {"age": "int64", "city": "string", "member": "bool", "income": "double", "kids": "int64",
                     "plan": "string", "label": "string"}
    d = mixed.to_pydict()
    assert d["age"][1] is None and d["income"][1] is None and d["income"][5] is None     # "" and "n/a"
    assert d["city"][2] is None and d["city"][6] is None                                 # "NA" and ""
    assert d["member"][3] is None and d["label"][4] is None
    assert d["city"][3] == "nice, old town" and d["plan"][5] == "pro"


def test_every_format_reads_the_same_table(tmp_path, mixed):
    tsv = MIXED_CSV.replace('"nice, old town"', "nice, old town").replace(",", "\t").replace("nice\t old", "nice, old")
    files = [write(tmp_path / "a.csv.gz", MIXED_CSV, gz=True), write(tmp_path / "a.tsv", tsv),
             write(tmp_path / "b.tsv.gz", tsv, gz=True)]
    pq.write_table(mixed, tmp_path / "a.parquet")
    files.append(tmp_path / "a.parquet")
    for path in files:
        t = tables.read_table(path)
        assert t.schema.types == mixed.schema.types and t.to_pydict() == mixed.to_pydict(), path


def test_read_table_accepts_pathlike_and_str(tmp_path):
    p = write(tmp_path / "x.csv", "a,b\n1,2\n")
    assert tables.read_table(str(p)).to_pydict() == tables.read_table(p).to_pydict() == {"a": [1], "b": [2]}


# A numeric file longer than the leading bytes read_table types it from, then a last row that
# the numbers-only read refuses or reads otherwise (it then reads the file again, inferring).
NUMERIC_HEAD = "a,b,c\n" + "".join(f"{i},{i * 0.25 - 7},{-i}\n" for i in range(8000))
LATE_ROWS = {"clean": "", "blank": "5,,6\n", "na spelling": "5,NA,6\n", "nan": "5,nan,6\n", "-NaN": "5,-NaN,6\n",
             "NAN (a float)": "5,NAN,6\n", "nan in an int column": "nan,1,6\n", "float in an int column": "5.5,1,6\n",
             "text": "5,x,6\n", "inf": "5,inf,6\n", "infs": "5,inf,6\n5,-inf,6\n", "quoted": '5,"1.5",6\n'}


@pytest.mark.parametrize("late", sorted(LATE_ROWS))
def test_a_large_numeric_file_reads_as_with_type_inference(tmp_path, late):
    import pyarrow.csv as pcsv
    path = write(tmp_path / "n.csv", NUMERIC_HEAD + LATE_ROWS[late])
    assert os.path.getsize(path) > tables._SNIFF_BYTES
    inferred = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
        null_values=list(tables.NA_VALUES), strings_can_be_null=True, quoted_strings_can_be_null=True))
    t = tables.read_table(path)
    assert same_table(t, inferred)
    # the numbers-only read gave it, or declined
    with open(path, "rb") as f:
        head = f.read(tables._SNIFF_BYTES)
    fast = tables._read_numeric_text(os.fspath(path), head, pcsv.ParseOptions())
    numbers_only = late in ("clean", "nan", "-NaN", "NAN (a float)", "nan in an int column", "inf", "infs", "quoted")
    assert (fast is not None) == numbers_only
    if fast is not None:
        assert same_table(fast, inferred)


def same_table(a, b):
    """Same schema, same nulls, same values (NaN equal to NaN, not to a null)."""
    if a.schema != b.schema:
        return False
    for x, y in zip(a.columns, b.columns):
        if x.is_null().to_pylist() != y.is_null().to_pylist():
            return False
        if not np.array_equal(x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False),
                              equal_nan=x.type != pa.string()):
            return False
    return True


NOT_TABLES = {
    "binary.csv": (b"PK\x03\x04\x00\x00binary\x00stuff", "holds binary data (NUL bytes), not CSV text"),
    "latin1.csv": ("a,b\n1,caf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9"),
    "ragged.csv": (b"a,b,c\n1,2,3\n4,5\n", "not a CSV table (CSV parse error: Expected 3 columns, got 2"),
    "empty.csv": (b"", "is empty; expected a header row of column names"),
    "header.csv": (b"a,b,c\n", "has a header but no data rows"),
    "dup.csv": (b"a,b,a\n1,2,3\n", "column name 'a' appears more than once"),
    "plain.csv.gz": (b"a,b\n1,2\n", "cannot be read as gzip-compressed CSV"),
    "text.parquet": (b"a,b\n1,2\n", "not a Parquet table"),
    "ragged.tsv": (b"a\tb\n1\t2\t3\n", "not a TSV table"),
}


@pytest.mark.parametrize("name", sorted(NOT_TABLES))
def test_a_file_that_is_not_a_table_is_one_clear_line(tmp_path, name):
    blob, fragment = NOT_TABLES[name]
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(ValueError) as info:
        tables.read_table(path)
    msg = str(info.value)
    assert fragment in msg and str(path) in msg and "\n" not in msg, msg


def test_random_bytes_are_never_a_table(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        path = tmp_path / f"r{i}.csv"
        path.write_bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
        with pytest.raises(ValueError, match=str(path)):
            tables.read_table(path)


def test_read_table_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="path: expected a file path"):
        tables.read_table(3)
    with pytest.raises(ValueError, match=r"expected a table file ending in \.csv"):
        tables.read_table(tmp_path / "x.xlsx")
    with pytest.raises(FileNotFoundError):
        tables.read_table(tmp_path / "nope.csv")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(OSError):
        tables.read_table(tmp_path / "d.csv")


# ---- the encoding ---------------------------------------------------------------------------------
def test_encoding_order_names_and_values_on_the_mixed_table(mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    assert prep.feature_names_out == MIXED_NAMES and prep.n_features_out == len(MIXED_NAMES)
    assert prep.feature_names_in_ == ["age", "city", "member", "income", "kids", "plan"]
    assert prep.classes_ == ["no", "yes"] and prep.target_ == "label"
    X = prep.transform(mixed)
    # rows with a target: 0, 1, 2, 3, 5, 6, 7 (row 4's label is blank)
    age = np.array([34, 51, 28, 62, 39, 23], float)
    member = np.array([1, 0, 1, 1, 0, 1], float)                  # row 3 blank, row 4 dropped
    income = np.array([3100.5, 2800, 4200.25, 3300, 2500.75])    # rows 1 and 5 blank, row 4 dropped
    np.testing.assert_array_equal(X[1], [age.mean(), 1, 0, 0, income.mean(), 1, 1, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(X[3], [28, 0, member.mean(), 1, 4200.25, 0, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(X[2, 7:10], [0, 0, 0])            # a blank city: all zeros
    assert X.dtype == np.float64 and X.flags.c_contiguous and X.shape == (8, 12)
    y, dropped = prep.transform_target(mixed)
    np.testing.assert_array_equal(dropped, [0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(y, [1, 0, 1, 0, 1, 0, 1])
    assert y.dtype == np.int64


def _sklearn_encoding(train, test, numeric, categorical):
    """The encoding DESIGN specifies, built from scikit-learn's pieces: SimpleImputer(mean) and
    MissingIndicator per numeric column (interleaved), then OneHotEncoder(handle_unknown="ignore")
    with the categories it sorts itself, fitted on the non-missing training values."""
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.preprocessing import OneHotEncoder
    Ntr = train[numeric].astype(float).to_numpy()
    Nte = test[numeric].astype(float).to_numpy()
    imputed = SimpleImputer(strategy="mean").fit(Ntr).transform(Nte)
    ind = MissingIndicator(features="missing-only", error_on_new=False).fit(Ntr)
    flags = ind.transform(Nte).astype(float)
    parts = []
    for j in range(len(numeric)):
        parts.append(imputed[:, [j]])
        if j in ind.features_:
            parts.append(flags[:, [list(ind.features_).index(j)]])
    for col in categorical:
        seen = train[col].dropna().to_numpy(dtype=object).reshape(-1, 1)
        enc = OneHotEncoder(handle_unknown="ignore").fit(seen)
        values = test[col].astype(object).where(test[col].notna(), "\0missing").to_numpy().reshape(-1, 1)
        parts.append(enc.transform(values).toarray())
    return np.hstack(parts)


def _mixed_frame(n, seed):
    rng = np.random.default_rng(seed)
    cities = np.array(["Zurich", "aarau", "Émile", "éa", "bern", "Bern", "z"], dtype=object)
    df = pd.DataFrame({
        "age": np.where(rng.random(n) < 0.2, np.nan, rng.integers(18, 90, n).astype(float)),
        "city": np.where(rng.random(n) < 0.15, None, cities[rng.integers(0, len(cities), n)]),
        "member": np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.5).astype(object),
        "income": np.where(rng.random(n) < 0.05, np.nan, rng.normal(3000, 900, n)),
        "kids": rng.integers(0, 4, n),
        "plan": rng.choice(["pro", "basic", "free"], n).astype(object),
    })
    return df


def test_encoding_equals_scikit_learns_imputer_indicator_and_one_hot_encoder():
    pytest.importorskip("sklearn")
    df = _mixed_frame(300, 0)
    train, test = df.iloc[:200].reset_index(drop=True), df.iloc[200:].reset_index(drop=True).copy()
    test.loc[0, "city"] = "tokyo"                     # unseen at fit: all zeros, as handle_unknown="ignore"
    test.loc[1, "kids"] = np.nan                      # a gap in a column without gaps at fit: the mean
    test.loc[2, "plan"] = None
    numeric, categorical = ["age", "member", "income", "kids"], ["city", "plan"]
    expected = _sklearn_encoding(train, test, numeric, categorical)
    prep = TablePreprocessor().fit(train)
    got = prep.transform(test)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)
    assert prep.feature_names_out[:7] == ["age", "age_was_missing", "member", "member_was_missing", "income",
                                          "income_was_missing", "kids"]
    # categories in sorted (code point) order, as OneHotEncoder sorts them
    city = [n.split("=", 1)[1] for n in prep.feature_names_out if n.startswith("city=")]
    assert city == sorted(city) == ["Bern", "Zurich", "aarau", "bern", "z", "Émile", "éa"]


def test_columns_by_name_in_any_order_extra_ignored_and_missing_named(mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    X = prep.transform(mixed)
    shuffled = mixed.select(list(reversed(mixed.column_names))).append_column("extra", pa.array(["q"] * 8))
    np.testing.assert_array_equal(prep.transform(shuffled), X)
    np.testing.assert_array_equal(prep.transform(mixed.drop_columns(["label"])), X)     # no target needed
    with pytest.raises(ValueError, match=r"frame: no column 'income'; the preprocessing reads \['age', 'city'"):
        prep.transform(mixed.drop_columns(["income"]))
    with pytest.raises(ValueError, match=r"no column 'age' \(nor \['plan'\]\)"):
        prep.transform(mixed.drop_columns(["age", "plan"]))


def test_unseen_categories_and_gaps_at_transform(mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    means = {c["name"]: c["mean"] for c in prep.to_json()["columns"] if c["kind"] == "numeric"}
    new = pa.table({"age": pa.array([None], pa.int64()), "city": ["tokyo"], "member": pa.array([None], pa.bool_()),
                    "income": [None], "kids": [None], "plan": [None]})
    X = prep.transform(new)
    np.testing.assert_array_equal(X[0], [means["age"], 1, means["member"], 1, means["income"], 1, means["kids"],
                                         0, 0, 0, 0, 0])


def test_types_that_change_between_fit_and_transform(mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    X = prep.transform(mixed)
    # numbers as text parse; booleans as 0/1 integers; a categorical column read as numbers matches text
    as_text = mixed.set_column(0, "age", pa.compute.cast(mixed.column("age"), pa.string()))
    np.testing.assert_array_equal(prep.transform(as_text), X)
    as_ints = mixed.set_column(2, "member", pa.compute.cast(mixed.column("member"), pa.int64()))
    np.testing.assert_array_equal(prep.transform(as_ints), X)
    dictionary = mixed.set_column(1, "city", pa.compute.dictionary_encode(mixed.column("city")))
    np.testing.assert_array_equal(prep.transform(dictionary), X)
    bad = mixed.set_column(0, "age", pa.array(["34", "old"] + [None] * 6))
    with pytest.raises(ValueError, match="column 'age' holds text such as 'old'; it was numeric"):
        prep.transform(bad)
    inf = mixed.set_column(3, "income", pa.array([1.0, 2.0, float("inf")] + [None] * 5))
    with pytest.raises(ValueError, match="column 'income' row 3: expected a finite number or a blank, got inf"):
        prep.transform(inf)


def test_csv_parquet_dataframe_and_arrow_table_encode_alike(tmp_path, mixed):
    csv = tmp_path / "m.csv"
    write(csv, MIXED_CSV)
    df = pd.read_csv(csv)                               # pandas' own reader: ints with gaps become floats
    pq_arrow, pq_pandas = tmp_path / "a.parquet", tmp_path / "p.parquet"
    pq.write_table(mixed, pq_arrow)
    df.to_parquet(pq_pandas)
    frames = {"csv": tables.read_table(csv), "parquet": tables.read_table(pq_arrow),
              "parquet (pandas)": tables.read_table(pq_pandas), "DataFrame": df, "arrow": pa.Table.from_pandas(df),
              "record batch": pa.Table.from_pandas(df).to_batches()[0]}
    ref = TablePreprocessor().fit(mixed, "label")
    X, (y, dropped) = ref.transform(mixed), ref.transform_target(mixed)
    for name, frame in frames.items():
        prep = TablePreprocessor().fit(frame, "label")
        assert prep.to_json() == ref.to_json(), name
        np.testing.assert_array_equal(prep.transform(frame), X, err_msg=name)
        y2, d2 = prep.transform_target(frame)
        np.testing.assert_array_equal(y2, y, err_msg=name)
        np.testing.assert_array_equal(d2, dropped, err_msg=name)


def test_chunking_does_not_change_the_encoding_or_the_statistics():
    df = _mixed_frame(5000, 1)
    one = pa.Table.from_pandas(df)
    many = pa.concat_tables([one.slice(i, 333) for i in range(0, 5000, 333)])
    a, b = TablePreprocessor().fit(one), TablePreprocessor().fit(many)
    assert a.to_json() == b.to_json()
    np.testing.assert_array_equal(a.transform(one), b.transform(many))


def test_blocks_written_by_threads_equal_one_thread_and_the_first_bad_row_is_named(monkeypatch):
    """Large encodings are written a block of rows per task by several threads (tables._encode_dense):
    the same bits as one thread, and an error names the first bad cell in row order whichever
    block's thread meets its bad cell first."""
    import pyarrow.compute as pc
    df = _mixed_frame(6000, 2)
    df["big"] = np.arange(6000, dtype=np.int64) * 3 + 2**60        # int64 past 2**53: rounded as a cast
    table = pa.concat_tables([pa.Table.from_pandas(df).slice(i, 250) for i in range(0, 6000, 250)])
    prep = TablePreprocessor().fit(table)
    numbers = table.select(["kids", "big", "income"])
    monkeypatch.setattr(tables, "_THREADED_CELLS", 1 << 62)
    one_x, one_numbers = prep.transform(table), tables.numeric_matrix(numbers.select(["kids", "big"]))
    monkeypatch.setattr(tables, "_THREADED_CELLS", 0)
    monkeypatch.setattr(pa, "cpu_count", lambda: 4)
    assert prep.transform(table).tobytes() == one_x.tobytes()
    assert prep._encode(table, np.float32).tobytes() == one_x.astype(np.float32).tobytes()
    assert tables.numeric_matrix(numbers.select(["kids", "big"])).tobytes() == one_numbers.tobytes()
    np.testing.assert_array_equal(one_numbers[:, 1], pc.cast(table.column("big"), pa.float64(), safe=False))
    first_gap = int(np.flatnonzero(df["income"].isna())[0])
    with pytest.raises(ValueError, match=f"column 'income' row {first_gap + 1} is empty"):
        tables.numeric_matrix(numbers)


def test_a_float32_encoding_names_a_value_past_float32s_range():
    """A float32 model's predict/evaluate encode straight into float32: a finite value it cannot
    hold is an error naming its column and row (as the arrays' check names its index)."""
    t = pa.table({"a": [1.0, 2.0, 3.0], "b": [None, 1e39, 2.0], "c": ["x", "y", None]})
    prep = TablePreprocessor().fit(pa.table({"a": [1.0], "b": [1.0], "c": ["x"]}))
    assert prep._encode(t.slice(0, 1), np.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"frame: column 'b' row 2: the value 1e\+39 is beyond the range of float32"):
        prep._encode(t, np.float32)
    assert prep._encode(t, np.float64)[1, 1] == 1e39


# ---- the learned state ----------------------------------------------------------------------------
def test_category_cap(mixed):
    many = pa.table({"id": [f"u{i:03d}" for i in range(300)], "x": np.arange(300.0)})
    with pytest.raises(TooManyCategories) as info:
        TablePreprocessor().fit(many)
    e = info.value
    assert (e.column, e.count, e.limit) == ("id", 300, 256) and isinstance(e, ValueError)
    assert "column 'id' has 300 categories, more than max_categories=256" in str(e)
    assert TablePreprocessor(max_categories=300).fit(many).n_features_out == 301
    exactly = pa.table({"id": [f"u{i:03d}" for i in range(256)]})
    assert TablePreprocessor().fit(exactly).n_features_out == 256
    with pytest.raises(TooManyCategories, match="'city' has 3 categories, more than max_categories=2"):
        TablePreprocessor(max_categories=2).fit(mixed, "label")


def test_empty_columns_and_unsupported_types_are_clear_errors():
    import datetime
    with pytest.raises(ValueError, match="column 'b' is empty in every training row"):
        TablePreprocessor().fit(pa.table({"a": [1, 2], "b": pa.array([None, None], pa.null())}))
    with pytest.raises(ValueError, match="column 'b' is empty in every training row"):
        TablePreprocessor().fit(pd.DataFrame({"a": [1, 2], "b": [np.nan, np.nan]}))
    with pytest.raises(ValueError, match="column 'c' is empty in every training row"):
        TablePreprocessor().fit(pd.DataFrame({"a": [1, 2], "c": [None, None]}, dtype=object))
    with pytest.raises(ValueError, match=r"column 'd' has type date32\[day\]; expected numbers, booleans or text"):
        TablePreprocessor().fit(pa.table({"a": [1], "d": [datetime.date(2020, 1, 1)]}))
    with pytest.raises(ValueError, match="column 'a' row 2: expected a finite number or a blank, got -inf"):
        TablePreprocessor().fit(pa.table({"a": [1.0, -np.inf]}))
    with pytest.raises(ValueError, match="frame: expected at least one row"):
        TablePreprocessor().fit(pa.table({"a": pa.array([], pa.int64())}))
    with pytest.raises(ValueError, match="no feature columns besides the target 'a'"):
        TablePreprocessor().fit(pa.table({"a": [1, 2]}), "a")
    with pytest.raises(ValueError, match="column name 'a' appears 2 times"):
        TablePreprocessor().fit(pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]))


def test_targets():
    t = pa.table({"x": [1.0, 2, 3, 4, 5], "s": ["b", None, "a", "b", "c"], "v": [0.5, 1.5, None, np.nan, 2.0]})
    prep = TablePreprocessor().fit(t, "s")
    assert prep.classes_ == ["a", "b", "c"] and prep.summary()["rows_dropped"] == 1
    y, dropped = prep.transform_target(t)
    np.testing.assert_array_equal(y, [1, 0, 1, 2])
    np.testing.assert_array_equal(dropped, [0, 1, 0, 0, 0])
    # the means are learned from the rows with a target only
    assert prep.to_json()["columns"][0]["mean"] == np.mean([1.0, 3, 4, 5])
    # a numeric target: float values; NaN and null are missing
    prep = TablePreprocessor().fit(t.drop_columns(["s"]), "v")
    y, dropped = prep.transform_target(t)
    assert prep.classes_ is None and y.dtype == np.float64
    np.testing.assert_array_equal(y, [0.5, 1.5, 2.0])
    np.testing.assert_array_equal(dropped, [0, 0, 1, 1, 0])
    # a text target with one class, or none at all
    with pytest.raises(ValueError, match="target column 's' has one class \\('a'\\); classification needs at least two"):
        TablePreprocessor().fit(pa.table({"x": [1, 2], "s": ["a", "a"]}), "s")
    with pytest.raises(ValueError, match="target column 's' is empty"):
        TablePreprocessor().fit(pa.table({"x": [1, 2], "s": pa.array([None, None], pa.string())}), "s")
    with pytest.raises(ValueError, match="no column 'nope'"):
        TablePreprocessor().fit(t, "nope")
    # classes given: a class seen only elsewhere is known; a name outside them is an error
    prep = TablePreprocessor().fit(pa.table({"x": [1, 2], "s": ["a", "a"]}), "s", classes=["a", "b"])
    assert prep.classes_ == ["a", "b"]
    with pytest.raises(ValueError, match="row 2 holds class 'z', which is not among the model's classes"):
        prep.transform_target(pa.table({"s": ["b", "z"]}))
    with pytest.raises(ValueError, match="holds class 'c', which is not among the classes"):
        TablePreprocessor().fit(t, "s", classes=["a", "b"])
    with pytest.raises(ValueError, match="classes: expected distinct class names in sorted order"):
        TablePreprocessor().fit(t, "s", classes=["b", "a", "c"])
    with pytest.raises(ValueError, match="target column 'v' holds text"):
        TablePreprocessor().fit(t.drop_columns(["s"]), "v").transform_target(pa.table({"v": ["x"]}))
    with pytest.raises(ValueError, match="fitted without a target column"):
        TablePreprocessor().fit(t).transform_target(t)


def test_transform_xy_drops_rows_without_a_target(mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    X, y, dropped = prep.transform_xy(mixed)
    np.testing.assert_array_equal(X, prep.transform(mixed)[~dropped])
    assert len(y) == len(X) == 7


def test_argument_checks_before_any_state_changes(mixed):
    with pytest.raises(TypeError, match="max_categories: expected an int, got str '3'"):
        TablePreprocessor(max_categories="3")
    with pytest.raises(ValueError, match="max_categories: expected an int >= 1, got 0"):
        TablePreprocessor(max_categories=0)
    with pytest.raises(ValueError, match="sparse: expected True, False or 'auto', got str 'yes'"):
        TablePreprocessor(sparse="yes")
    with pytest.raises(TypeError, match="sparse: expected True, False or 'auto', got NoneType"):
        TablePreprocessor(sparse=None)
    prep = TablePreprocessor()
    with pytest.raises(ValueError, match="not fitted yet"):
        prep.transform(mixed)
    for bad in (np.zeros((3, 2)), [[1, 2]], {"a": [1]}, "data.csv", None):
        with pytest.raises(TypeError, match="frame: expected a pandas DataFrame or a pyarrow Table, got "):
            prep.fit(bad)
    with pytest.raises(TypeError, match="frame: expected a pandas DataFrame or a pyarrow Table, got ndarray of shape"):
        prep.fit(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="target: expected a column name"):
        prep.fit(mixed, 3)
    prep.fit(mixed, "label")
    before = prep.to_json()
    for args in [(mixed.drop_columns(["city"]).append_column("z", pa.array([None] * 8, pa.null())), "label"),
                 (mixed, "nope"), (np.zeros(3),)]:
        with pytest.raises((TypeError, ValueError)):
            prep.fit(*args)
        assert prep.to_json() == before                    # a failed fit leaves the last fit in place


def test_summary_and_report(mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    assert prep.summary() == {"rows": 7, "rows_dropped": 1, "numeric": 4, "numeric_with_gaps": 3, "cells_filled": 4,
                              "categorical": 2, "categories": 5, "features_out": 12}
    assert prep.report() == ("columns: 4 numeric (3 with gaps, 4 cells filled), 2 categorical (5 categories); "
                             "1 row with a missing target dropped")
    only = TablePreprocessor().fit(pa.table({"a": [1, 2], "b": [3, 4]}))
    assert only.report() == "columns: 2 numeric"
    assert "2 columns -> 2 features" in repr(only) and "not fitted" in repr(TablePreprocessor())


# ---- dense or sparse ------------------------------------------------------------------------------
def test_sparse_output_equals_the_dense_one_and_auto_picks_it_only_when_wide_and_sparse(mixed):
    sp = pytest.importorskip("scipy.sparse")
    dense = TablePreprocessor().fit(mixed, "label")
    csr = TablePreprocessor(sparse=True).fit(mixed, "label")
    X = csr.transform(mixed)
    assert sp.issparse(X) and X.format == "csr" and X.has_canonical_format
    np.testing.assert_array_equal(X.toarray(), dense.transform(mixed))
    # every numeric value is stored (zeros too), so scaling the stored entries scales the column
    kids = dense.feature_names_out.index("kids")
    assert np.sum(X.indices == kids) == 8 and 0 in X.data[X.indices == kids]
    assert isinstance(TablePreprocessor(sparse="auto").fit(mixed, "label").transform(mixed), np.ndarray)
    wide = pa.table({"x": np.arange(1000.0), "id": [f"u{i % 400}" for i in range(1000)]})
    auto = TablePreprocessor(max_categories=1000, sparse="auto").fit(wide)
    assert sp.issparse(auto.transform(wide))
    np.testing.assert_array_equal(auto.transform(wide).toarray(),
                                  TablePreprocessor(max_categories=1000).fit(wide).transform(wide))


# ---- JSON -----------------------------------------------------------------------------------------
def test_json_round_trip_is_exact(mixed):
    prep = TablePreprocessor(max_categories=7, sparse="auto").fit(_mixed_frame(100, 3).assign(y=["a", "b"] * 50),
                                                                  "y")
    obj = json.loads(json.dumps(prep.to_json(), allow_nan=False))
    back = TablePreprocessor.from_json(obj)
    assert back.to_json() == prep.to_json() and back.max_categories == 7 and back.sparse == "auto"
    assert back.classes_ == ["a", "b"] and back.feature_names_out == prep.feature_names_out
    frame = _mixed_frame(50, 4)
    np.testing.assert_array_equal(back.transform(frame), prep.transform(frame))


def _good_json():
    t = pa.table({"x": [1.0, None, 3.0], "c": ["a", "b", None], "y": ["p", "q", "p"]})
    return TablePreprocessor().fit(t, "y").to_json()


def _set(obj, path, value):
    obj = copy.deepcopy(obj)
    node = obj
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return obj


_DELETE = object()
CORRUPTIONS = [
    ((), "not an object", None),
    (("version",), "version 2", 2),
    (("version",), "version True", True),
    (("max_categories",), "max_categories 0", 0),
    (("max_categories",), "max_categories 1.5", 1.5),
    (("max_categories",), "categories is not a list of 1 to max_categories=1", 1),
    (("sparse",), "sparse 1", 1),
    (("sparse",), "sparse 'maybe'", "maybe"),
    (("columns",), "columns is not a non-empty list", []),
    (("columns",), "columns is not a non-empty list", {"x": 1}),
    (("columns", 0), "columns[0] is not an object", "x"),
    (("columns", 0, "kind"), "columns[0].kind 'text'", "text"),
    (("columns", 0, "mean"), "columns[0].mean None", None),
    (("columns", 0, "mean"), "columns[0].mean True", True),
    (("columns", 0, "mean"), "is not a finite number", 10 ** 400),
    (("columns", 0, "mean"), "columns[0].mean '1'", "1"),
    (("columns", 0, "missing"), "columns[0].missing -1", -1),
    (("columns", 0, "missing"), "columns[0].missing 1.0", 1.0),
    (("columns", 0, "name"), "columns[0].name 3", 3),
    (("columns", 0, "name"), "columns[0].name ['x']", ["x"]),
    (("columns", 0, "extra"), "columns[0] has unknown keys ['extra']", 1),
    (("columns", 0, "mean"), "columns[0] has no ['mean']", _DELETE),
    (("columns", 1, "name"), "columns[1].name 'x' appears twice", "x"),
    (("columns", 1, "categories"), "categories are not distinct and sorted", ["b", "a"]),
    (("columns", 1, "categories"), "categories are not distinct and sorted", ["a", "a"]),
    (("columns", 1, "categories"), "categories is not a list", []),
    (("columns", 1, "categories"), "categories is not a list", ["a", 1]),
    (("columns", 1, "categories"), "categories is not a list", "ab"),
    (("target",), "target is not an object or null", "y"),
    (("target", "kind"), "target.kind 'numbers'", "numbers"),
    (("target", "classes"), "target.classes: expected at least two class names", ["p"]),
    (("target", "classes"), "target.classes: expected distinct class names in sorted order", ["q", "p"]),
    (("target", "classes"), "target.classes: expected class names as str", ["p", 2]),
    (("target", "classes"), "target.classes: expected a list of class names", "pq"),
    (("target", "name"), "target.name 'x' is also a feature column", "x"),
    (("target", "name"), "target.name None", None),
    (("target", "classes"), "target has no ['classes']", _DELETE),
    (("stats",), "stats is not an object", [1]),
    (("stats", "rows"), "stats.rows -3", -3),
    (("stats", "rows_dropped"), "stats has no ['rows_dropped']", _DELETE),
    (("extra",), "has unknown keys ['extra']", 0),
]


@pytest.mark.parametrize("i", range(len(CORRUPTIONS)))
def test_json_corruptions_are_value_errors_naming_the_field(i):
    path, fragment, value = CORRUPTIONS[i]
    obj = _set(_good_json(), path, value) if path else value
    with pytest.raises(ValueError) as info:
        TablePreprocessor.from_json(obj)
    assert str(info.value).startswith("preprocessing ") and fragment in str(info.value), str(info.value)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_json_is_accepted_whole_or_rejected_with_a_value_error(data):
    good = _good_json()
    paths = list(_paths(good))[1:]
    obj = good
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        try:
            obj = _set(obj, path, data.draw(JSON_VALUES) if data.draw(st.booleans()) else _DELETE)
        except (KeyError, IndexError, TypeError):
            continue                          # an earlier mutation removed or replaced that path
    try:
        prep = TablePreprocessor.from_json(obj)
    except ValueError as e:
        assert str(e).startswith("preprocessing ")
        return
    assert prep.to_json() == obj              # accepted only if it is exactly a valid preprocessing
    prep.transform(pa.table({c: pa.array([None], pa.null()) for c in prep.feature_names_in_}))


# ---- models ---------------------------------------------------------------------------------------
def _table_model(prep, output="softmax", seed=0):
    k = {"softmax": len(prep.classes_ or [0, 1]), "sigmoid": 1, "linear": 1}[output]
    loss = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "linear": "mse"}[output]
    model = fastbp.MLP([prep.n_features_out, 5, k], output=output, loss=loss, seed=seed)
    model.preprocessor = prep
    return model


def test_predict_frame_and_predict_labels_frame(mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    model = _table_model(prep)
    P = tables.predict_frame(model, mixed)
    np.testing.assert_array_equal(P, model.predict(prep.transform(mixed)))
    labels = tables.predict_labels_frame(model, mixed.to_pandas())
    np.testing.assert_array_equal(labels, np.array(["no", "yes"], object)[P.argmax(1)])
    assert labels.dtype == object and all(isinstance(v, str) for v in labels)
    sig = _table_model(prep, "sigmoid")
    np.testing.assert_array_equal(tables.predict_labels_frame(sig, mixed),
                                  np.where(sig.predict(prep.transform(mixed))[:, 0] > 0.5, "yes", "no"))
    numeric = TablePreprocessor().fit(mixed.drop_columns(["label"]).append_column("t", pa.array([0, 1] * 4)), "t")
    m2 = _table_model(numeric)
    np.testing.assert_array_equal(tables.predict_labels_frame(m2, mixed), m2.predict_classes(numeric.transform(mixed)))
    with pytest.raises(ValueError, match="predict_labels needs a classifier"):
        tables.predict_labels_frame(_table_model(numeric, "linear"), mixed)
    with pytest.raises(ValueError, match="model: has no table preprocessing"):
        tables.predict_frame(fastbp.MLP([12, 2]), mixed)
    wrong = fastbp.MLP([10, 2])
    wrong.preprocessor = prep
    with pytest.raises(ValueError, match="encodes 12 features but the model takes 10 inputs"):
        tables.predict_frame(wrong, mixed)
    three = fastbp.MLP([12, 3])
    three.preprocessor = prep
    with pytest.raises(ValueError, match="2 class names but the model has 3 softmax outputs"):
        tables.predict_frame(three, mixed)
    assert tables.is_frame(mixed) and tables.is_frame(mixed.to_pandas()) and not tables.is_frame(np.zeros(2))


def test_model_files_carry_the_preprocessing(tmp_path, mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    model = _table_model(prep, seed=3)
    model.save(tmp_path / "m.fbp")
    back = fastbp.load(tmp_path / "m.fbp")
    assert back.preprocessor.to_json() == prep.to_json()
    np.testing.assert_array_equal(tables.predict_frame(back, mixed), tables.predict_frame(model, mixed))
    raw = (tmp_path / "m.fbp").read_bytes()
    hlen = int.from_bytes(raw[12:16], "little")
    assert json.loads(raw[20:20 + hlen])["preprocessing"] == prep.to_json()
    # a model without one loads as before, with no preprocessing in its header
    fastbp.MLP([3, 2]).save(tmp_path / "plain.fbp")
    assert getattr(fastbp.load(tmp_path / "plain.fbp"), "preprocessor", None) is None
    raw = (tmp_path / "plain.fbp").read_bytes()
    assert b"preprocessing" not in raw[20:20 + int.from_bytes(raw[12:16], "little")]


def test_checkpoints_carry_the_preprocessing(tmp_path, mixed):
    prep = TablePreprocessor().fit(mixed, "label")
    model = _table_model(prep)
    X, y, _ = prep.transform_xy(mixed)
    model.fit(X, y, epochs=2, batch_size=4, verbose=0, callbacks=[fastbp.ModelCheckpoint(str(tmp_path / "ck.fbp"))])
    assert fastbp.load(tmp_path / "ck.fbp").preprocessor.to_json() == prep.to_json()


def test_saving_checks_the_preprocessor_first(tmp_path, mixed):
    model = fastbp.MLP([4, 2])
    model.preprocessor = TablePreprocessor().fit(mixed, "label")
    with pytest.raises(ValueError, match="encodes 12 features but the model takes 4 inputs"):
        model.save(tmp_path / "m.fbp")
    model.preprocessor = {"columns": []}
    with pytest.raises(TypeError, match="model.preprocessor: expected None or a fastbp.TablePreprocessor, got dict"):
        model.save(tmp_path / "m.fbp")
    assert not (tmp_path / "m.fbp").exists() and os.listdir(tmp_path) == ["mixed.csv"]


def _with_header(raw, header):
    """A .fbp file's bytes with its JSON header replaced (checksum and padding redone)."""
    import struct
    import zlib
    hlen = int.from_bytes(raw[12:16], "little")
    start = 20 + hlen + (-(20 + hlen)) % 64
    data = raw[start:]
    h = json.dumps(header).encode()
    lead = 20 + len(h)
    return raw[:8] + struct.pack("<III", 1, len(h), zlib.crc32(h)) + h + b"\0" * ((-lead) % 64) + data


@pytest.mark.parametrize("change, fragment", [
    (lambda h: h["preprocessing"]["columns"].pop(), "encodes 10 features but the model takes 12 inputs"),
    (lambda h: h["preprocessing"]["target"]["classes"].append("zzz"), "3 class names but the model has 2"),
    (lambda h: h["preprocessing"].__setitem__("columns", "evil"), "preprocessing columns is not a non-empty list"),
    (lambda h: h.__setitem__("preprocessing", None), "preprocessing object is not an object"),
    (lambda h: h["preprocessing"]["columns"][0].__setitem__("mean", [1e308] * 3), "columns[0].mean"),
])
def test_a_bad_preprocessing_in_a_file_is_rejected_naming_the_file(tmp_path, mixed, change, fragment):
    model = _table_model(TablePreprocessor().fit(mixed, "label"))
    model.save(tmp_path / "m.fbp")
    raw = (tmp_path / "m.fbp").read_bytes()
    hlen = int.from_bytes(raw[12:16], "little")
    header = json.loads(raw[20:20 + hlen])
    change(header)
    (tmp_path / "bad.fbp").write_bytes(_with_header(raw, header))
    with pytest.raises(ValueError) as info:
        fastbp.load(tmp_path / "bad.fbp")
    msg = str(info.value)
    assert str(tmp_path / "bad.fbp") in msg and "not a valid fastbp file" in msg and fragment in msg, msg


def test_numeric_matrix_for_models_without_preprocessing():
    t = pa.table({"a": [1, 2], "b": [True, False], "c": [0.5, 1.5]})
    np.testing.assert_array_equal(tables.numeric_matrix(t), [[1, 1, 0.5], [2, 0, 1.5]])
    with pytest.raises(ValueError, match="column 'c' row 2 is empty; this model takes numbers only"):
        tables.numeric_matrix(pa.table({"c": [1.0, None]}))
    with pytest.raises(ValueError, match="column 'd' holds text such as 'heavy'"):
        tables.numeric_matrix(pa.table({"d": ["1", "heavy"]}))
    assert math.isfinite(tables.numeric_matrix(pd.DataFrame({"x": [1e300]}))[0, 0])


def test_large_encodings_in_4k_pages_equal_the_small_path(mixed, monkeypatch):
    """Matrices from _PAGED_MATRIX_BYTES come from an anonymous mapping instead of np.zeros (see
    tables.zeros_matrix): the same values, C-contiguous, writable, and the same preprocessor."""
    prep = TablePreprocessor().fit(mixed, "label")
    small, small_fit = prep.transform(mixed), TablePreprocessor().fit(mixed, "label").to_json()
    plain = tables.numeric_matrix(mixed.select(["kids"]))
    monkeypatch.setattr(tables, "_PAGED_MATRIX_BYTES", 0)
    big = prep.transform(mixed)
    import mmap
    base = big
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(getattr(base, "obj", base), mmap.mmap)       # frombuffer keeps a memoryview of it
    assert big.flags.c_contiguous and big.flags.writeable and big.dtype == np.float64
    assert big.tobytes() == small.tobytes()
    assert TablePreprocessor().fit(mixed, "label").to_json() == small_fit
    assert tables.numeric_matrix(mixed.select(["kids"])).tobytes() == plain.tobytes()
    big[0, 0] = 7.0                                  # a matrix like any other
