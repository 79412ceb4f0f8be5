"""pandas DataFrames and pyarrow Tables in MLP.fit, evaluate, predict, predict_classes and
predict_labels (fastbp.frames): the model's TablePreprocessor, the standardization folded into
the first layer, files, and bad inputs."""
import os

import numpy as np
import pytest

import fastbp
from fastbp import frames

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")


def make_frame(n=160, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.normal(40, 12, n),
        "city": rng.choice(["lyon", "nice", "paris"], n),
        "member": rng.random(n) > 0.5,
        "income": rng.normal(3000, 800, n),
    })
    df.loc[rng.random(n) < 0.1, "age"] = np.nan
    df.loc[rng.random(n) < 0.05, "city"] = None
    score = (df.age.fillna(40) - 40) / 12 + (df.city == "paris") - 0.3
    df["label"] = np.where(score + 0.3 * rng.standard_normal(n) > 0, "yes", "no")
    df["price"] = 2 * df.income / 1000 + rng.standard_normal(n)
    return df


def width(df, target):
    others = [c for c in ("label", "price") if c != target]
    return fastbp.TablePreprocessor().fit(df.drop(columns=others, errors="ignore"), target).n_features_out


def classifier(df, dtype="float64", **kw):
    return fastbp.MLP([width(df, "label"), 8, 2], dtype=dtype, seed=2, **kw)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fit_on_a_frame_is_the_encoded_standardized_fit_with_the_scaling_folded_in(dtype):
    """float32: the frame is encoded and standardized in float64 and cast (the float32 matrix is
    written a block at a time, without a float64 copy), as the arrays are cast by fit."""
    df = make_frame().drop(columns=["price"])
    model = classifier(df, dtype=dtype)
    hist = model.fit(df, "label", epochs=3, batch_size=16, verbose=0, metrics=["auc"])
    prep = model.preprocessor
    assert isinstance(prep, fastbp.TablePreprocessor) and prep.classes_ == ["no", "yes"]
    # by hand: encode, standardize the numeric columns, fit, fold
    X, y, _ = prep.transform_xy(df)
    mu, sd = frames.standardizer(X, prep.numeric_features_out)
    onehot = np.setdiff1d(np.arange(X.shape[1]), prep.numeric_features_out)
    assert np.all(mu[onehot] == 0) and np.all(sd[onehot] == 1)
    ref = classifier(df, dtype=dtype)
    ref_hist = ref.fit((X - mu) / sd, y, epochs=3, batch_size=16, verbose=0, metrics=["auc"])
    frames.fold_input_scaling(ref, mu, sd)
    np.testing.assert_array_equal(model.params, ref.params)
    assert hist.history == ref_hist.history
    assert model.predict(df).tobytes() == ref.predict(X).tobytes()
    assert model.evaluate(df, metrics=["accuracy"]) == ref.evaluate(X, y, metrics=["accuracy"])



@pytest.mark.parametrize("shape", [(1, 3), (5, 2), (9000, 1), (70000, 17), (3000, 800), (2, 140000)])
def test_standardizer_has_numpys_bits_a_block_of_rows_at_a_time(shape):
    """frames.standardizer sums the squared deviations a block of rows at a time (blocks of
    about 1 MB, one row when a row is wider): the bits of numpy's X.mean(0), X.std(0)."""
    rng = np.random.default_rng(shape[1])
    X = rng.standard_normal(shape) * rng.random(shape[1]) * 100 + rng.standard_normal(shape[1]) * 1e3
    mu, sd = frames.standardizer(X)
    sd_ref = X.std(0)
    sd_ref[sd_ref == 0] = 1.0
    assert mu.tobytes() == X.mean(0).tobytes() and sd.tobytes() == sd_ref.tobytes()

def test_predict_takes_columns_by_name_any_order_extra_ignored_unseen_category_zeros(tmp_path):
    df = make_frame().drop(columns=["price"])
    model = classifier(df)
    model.fit(df, "label", epochs=2, verbose=0)
    X = model.preprocessor.transform(df)
    P = model.predict(X)
    shuffled = df[["income", "label", "member", "city", "age"]].assign(extra=1.0)
    np.testing.assert_array_equal(model.predict(shuffled), P)
    np.testing.assert_array_equal(model.predict(pa.Table.from_pandas(shuffled, preserve_index=False)), P)
    np.testing.assert_array_equal(model.predict_classes(df), P.argmax(1))
    labels = model.predict_labels(df)
    assert labels.dtype == object
    np.testing.assert_array_equal(labels, np.array(["no", "yes"], object)[P.argmax(1)])
    # an unseen category encodes as zeros: the same as a missing one
    unseen = df.assign(city="marseille")
    blank = df.assign(city=None)
    np.testing.assert_array_equal(model.predict(unseen), model.predict(blank))
    # a saved model predicts the same from raw columns, labels included
    model.save(tmp_path / "m.fbp")
    back = fastbp.load(tmp_path / "m.fbp")
    np.testing.assert_array_equal(back.predict(shuffled), P)
    np.testing.assert_array_equal(back.predict_labels(df), labels)
    copy = model.copy()
    np.testing.assert_array_equal(copy.predict(df), P)
    assert copy.preprocessor is not model.preprocessor
    with pytest.raises(ValueError, match="no column 'city'"):
        model.predict(df.drop(columns=["city"]))


def test_evaluate_on_a_frame_uses_the_target_column_and_drops_rows_without_one():
    sk = pytest.importorskip("sklearn.metrics")
    df = make_frame().drop(columns=["price"])
    model = classifier(df)
    model.fit(df, "label", epochs=2, verbose=0)
    holes = df.copy()
    holes.loc[[0, 5, 9], "label"] = None
    ev = model.evaluate(holes, metrics=["accuracy", "auc", "f1"])
    kept = holes.dropna(subset=["label"])
    X, y, _ = model.preprocessor.transform_xy(kept)
    P = model.predict(X)
    yy = (kept.label == "yes").to_numpy().astype(int)
    assert ev == pytest.approx(dict(model.evaluate(X, y), auc=sk.roc_auc_score(yy, P[:, 1]),
                                    f1=sk.f1_score(yy, P.argmax(1), average="macro")), abs=1e-9)
    assert model.evaluate(holes, "label") == model.evaluate(holes)
    # class names as an array, or their indices
    assert model.evaluate(kept, kept.label.to_numpy(dtype=object)) == model.evaluate(kept)
    assert model.evaluate(kept, yy)["loss"] == pytest.approx(ev["loss"], abs=1e-12)


def test_a_second_fit_applies_the_preprocessor_and_keeps_the_function_it_starts_from():
    df = make_frame().drop(columns=["price"])
    model = classifier(df)
    model.fit(df, "label", epochs=2, verbose=0)
    prep = model.preprocessor
    other = make_frame(seed=4).drop(columns=["price"]).assign(city="lyon")    # other statistics, one city
    P = model.predict(other)
    opt = fastbp.SGD(lr=1e-300)                   # no change: the unfold/fold pair keeps predictions
    model.fit(other, "label", epochs=1, verbose=0, optimizer=opt)
    assert model.preprocessor is prep
    np.testing.assert_allclose(model.predict(other), P, rtol=1e-12, atol=1e-14)
    model.fit(other, epochs=1, verbose=0)          # the target column it was trained on
    with pytest.raises(ValueError, match="trained on target column 'label', got 'city'"):
        model.fit(other, "city", verbose=0)


def test_a_preprocessor_set_on_an_untrained_model_is_applied_to_its_initial_params_as_they_are():
    df = make_frame().drop(columns=["price"])
    a, b = classifier(df), classifier(df)
    a.fit(df, "label", epochs=2, verbose=0)
    prep = fastbp.TablePreprocessor().fit(df, "label")
    b.preprocessor = prep
    b.fit(df, "label", epochs=2, verbose=0)          # no unfolding of an initialization: the same run
    assert b.preprocessor is prep
    assert a.params.tobytes() == b.params.tobytes()


def test_regression_on_a_frame_and_numbers_as_targets():
    df = make_frame().drop(columns=["label"])
    model = fastbp.MLP([width(df, "price"), 8, 1], output="linear", dtype="float64")
    hist = model.fit(df, "price", epochs=3, verbose=0, metrics=["mae", "r2"], validation_split=0.25)
    assert model.preprocessor.classes_ is None
    assert set(hist.history) >= {"mae", "r2", "val_mae", "val_r2"}
    ev = model.evaluate(df, metrics=["rmse"])
    y = df.price.to_numpy()
    assert ev["rmse"] == pytest.approx(np.sqrt(np.mean((model.predict(df)[:, 0] - y) ** 2)), abs=1e-9)
    with pytest.raises(ValueError, match="predict_labels needs a classifier"):
        model.predict_labels(df)
    # targets as an array, the frame without them
    m2 = fastbp.MLP([width(df, "price"), 8, 1], output="linear", dtype="float64")
    m2.fit(df.drop(columns=["price"]), y, epochs=3, verbose=0, validation_split=0.25)
    np.testing.assert_array_equal(m2.params, model.params)


def test_class_names_given_as_an_array_are_kept():
    df = make_frame().drop(columns=["price"])
    names = df.pop("label")
    model = classifier(df.assign(label=names))
    model.fit(df, names, epochs=2, verbose=0)
    assert model.preprocessor.classes_ == ["no", "yes"] and model.preprocessor.target_ == "label"
    assert set(model.predict_labels(df)) <= {"no", "yes"}
    ref = classifier(df.assign(label=names))
    ref.fit(df.assign(label=names), "label", epochs=2, verbose=0)
    np.testing.assert_array_equal(model.params, ref.params)


def test_validation_frames_and_sigmoid_classes():
    df = make_frame().drop(columns=["price"])
    train, val = df.iloc[:120], df.iloc[120:]
    model = fastbp.MLP([width(df, "label"), 8, 1], output="sigmoid", dtype="float64")
    hist = model.fit(train, "label", epochs=2, verbose=0, metrics=["auc"], validation_data=val)
    hist2 = fastbp.MLP([width(df, "label"), 8, 1], output="sigmoid", dtype="float64").fit(
        train, "label", epochs=2, verbose=0, metrics=["auc"], validation_data=(val, "label"))
    assert hist.history == hist2.history
    assert hist.history["val_auc"][-1] == pytest.approx(model.evaluate(val, metrics=["auc"])["auc"], abs=1e-12)
    np.testing.assert_array_equal(model.predict_labels(val),
                                  np.where(model.predict(val)[:, 0] > 0.5, "yes", "no").astype(object))


@pytest.mark.parametrize("call, match", [
    (lambda m, df: m.fit(df, "nope", verbose=0), "no column 'nope'"),
    (lambda m, df: m.fit(df, verbose=0), "y: expected the targets, or the name of the target column"),
    (lambda m, df: m.fit(df.to_numpy()[:, :1].astype(float), "label", verbose=0), "a column name .* needs X"),
    (lambda m, df: m.fit(df.assign(label="yes"), "label", verbose=0), "has one class"),
    (lambda m, df: m.fit(df.assign(age=None), "label", verbose=0), "column 'age' is empty"),
    (lambda m, df: m.fit(df, "label", verbose=0, resume_from="no-such-checkpoint.fbp"), "cannot read file"),
    (lambda m, df: m.fit(df, "label", verbose=0, metrics=["r2"]),
     "metrics: 'r2' compares targets with predictions of one shape, but y holds class labels"),
    (lambda m, df: m.fit(df.iloc[:0], "label", verbose=0), "X: expected at least one row"),
    (lambda m, df: m.predict(df), "X: could not convert to a numeric array"),
    (lambda m, df: m.predict(pa.Table.from_pandas(df)), "X: column 'city' holds text such as 'lyon'; this model takes "
                                                         "numbers only"),
    (lambda m, df: m.evaluate(df), "model: has no table preprocessing"),
    (lambda m, df: m.fit(df.drop(columns=["city"]), "label", verbose=0), "encodes 4 features but the model takes"),
    (lambda m, df: m.fit({"a": [1]}, "label", verbose=0), "needs X to be a DataFrame or pyarrow Table"),
])
def test_bad_frame_inputs_are_clear_errors_that_change_nothing(call, match):
    df = make_frame().drop(columns=["price"])
    model = classifier(df)
    before = model.params.copy()
    with pytest.raises((TypeError, ValueError), match=match):
        call(model, df)
    np.testing.assert_array_equal(model.params, before)
    assert model.preprocessor is None and model.optimizer is None


def test_a_failed_second_fit_leaves_the_params_as_they_were():
    df = make_frame().drop(columns=["price"])
    model = classifier(df)
    model.fit(df, "label", epochs=1, verbose=0)
    before = model.params.copy()
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(df, "label", batch_size=0, verbose=0)
    np.testing.assert_array_equal(model.params, before)
    with pytest.raises(ValueError, match="no column 'city'"):
        model.fit(df.drop(columns=["city"]), "label", verbose=0)
    np.testing.assert_array_equal(model.params, before)


def test_numeric_text_with_a_bad_cell_is_named():
    df = make_frame().drop(columns=["price"])
    df["income"] = df.income.map(lambda v: f"{v:.2f}").astype(object)
    df.loc[7, "income"] = "3,100"
    with pytest.raises(ValueError, match=r"column 'income' row 8 holds '3,100', not a number, while 159 of its "
                                         r"160 filled cells are numbers"):
        fastbp.TablePreprocessor().fit(df, "label")
    # a declared categorical (pandas category) is taken as categories
    cats = df.assign(income=df.income.astype("category"))
    assert fastbp.TablePreprocessor(max_categories=1000).fit(cats, "label").summary()["categorical"] == 2


def test_pandas_and_pyarrow_frames_train_the_same_bits():
    df = make_frame().drop(columns=["price"])
    a, b, c = classifier(df), classifier(df), classifier(df)
    a.fit(df, "label", epochs=2, verbose=0)
    table = pa.Table.from_pandas(df, preserve_index=False)
    b.fit(table, "label", epochs=2, verbose=0)
    c.fit(pa.RecordBatch.from_pandas(df, preserve_index=False), "label", epochs=2, verbose=0)
    assert a.params.tobytes() == b.params.tobytes() == c.params.tobytes()
    assert a.preprocessor.to_json() == b.preprocessor.to_json()


def test_validation_split_rows_teach_the_preprocessor_nothing():
    df = make_frame().drop(columns=["price"])
    df.loc[150:, "city"] = "marseille"               # a city only in the held-out rows
    df.loc[150:, "age"] = 1000.0
    model = classifier(df.iloc[:150])
    model.fit(df, "label", epochs=1, verbose=0, validation_split=10 / 160)
    want = fastbp.TablePreprocessor().fit(df.iloc[:150], "label")
    assert model.preprocessor.to_json()["columns"] == want.to_json()["columns"]


def test_a_frame_of_plain_numbers_for_a_model_of_arrays_is_an_array():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 3))
    y = rng.integers(0, 2, 64)
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(flag=rng.random(64) > 0.5)
    arr = np.column_stack([X, df.flag.to_numpy(float)])
    ref, m1, m2 = (fastbp.MLP([4, 5, 2], dtype="float64") for _ in range(3))
    ref.fit(arr, y, epochs=2, verbose=0)
    m1.fit(df, y, epochs=2, verbose=0)
    m2.fit(pa.Table.from_pandas(df, preserve_index=False), y, epochs=2, verbose=0)
    assert m1.preprocessor is None and m2.preprocessor is None
    assert ref.params.tobytes() == m1.params.tobytes() == m2.params.tobytes()
    np.testing.assert_array_equal(m1.predict(pa.Table.from_pandas(df)), ref.predict(arr))
    assert m1.evaluate(df, y) == ref.evaluate(arr, y)
    # a gap makes it a table: preprocessed (mean-filled, with a was-missing column)
    gap = df.copy()
    gap.loc[3, "a"] = np.nan
    m3 = fastbp.MLP([5, 5, 2], dtype="float64")
    m3.fit(gap, y, epochs=1, verbose=0)
    assert m3.preprocessor.feature_names_out == ["a", "a_was_missing", "b", "c", "flag"]


# ---- checkpoints of a fit on a frame ---------------------------------------------------------------
def frame_fit(model, df, **kw):
    return model.fit(df, "label", epochs=4, batch_size=16, verbose=0, validation_split=0.25, metrics=["auc"],
                     optimizer=fastbp.Adam(lr=0.01), **kw)


def test_checkpoints_of_a_frame_fit_are_models_of_raw_columns_and_resume_bit_identically(tmp_path):
    df = make_frame().drop(columns=["price"])
    model = classifier(df)
    hist = frame_fit(model, df, callbacks=[
        fastbp.ModelCheckpoint(str(tmp_path / "ck{epoch}.fbp")),
        fastbp.ModelCheckpoint(str(tmp_path / "w{epoch}.fbp"), save_weights_only=True)])
    # what a fit stopped after epoch 2 leaves: the scaling folded in, the preprocessor kept
    two = classifier(df)
    two.fit(df, "label", epochs=2, batch_size=16, verbose=0, validation_split=0.25, optimizer=fastbp.Adam(lr=0.01))
    for name in ("ck2.fbp", "w2.fbp"):
        back = fastbp.load(tmp_path / name)
        assert back.params.tobytes() == two.params.tobytes(), name
        assert back.preprocessor.to_json() == two.preprocessor.to_json()
        np.testing.assert_array_equal(back.predict(df[["income", "city", "member", "age"]]), two.predict(df))
        np.testing.assert_array_equal(back.predict_labels(df), two.predict_labels(df))
    assert fastbp.load(tmp_path / "ck4.fbp").params.tobytes() == model.params.tobytes()
    # resumed in a new model: the rest of the run, bit for bit, from one read of the checkpoint
    resumed = classifier(df)
    reads = []
    real_read = fastbp.io.read_file
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastbp.io, "read_file", lambda path: reads.append(os.fspath(path)) or real_read(path))
        h = frame_fit(resumed, df, resume_from=tmp_path / "ck2.fbp")
    assert reads == [str(tmp_path / "ck2.fbp")]
    assert resumed.params.tobytes() == model.params.tobytes()
    assert h.history == hist.history and h.epoch == [0, 1, 2, 3]
    assert resumed.preprocessor.to_json() == model.preprocessor.to_json()
    # ... and in a model that was trained on other rows (another preprocessor): the checkpoint's run wins
    other = classifier(df)
    other.fit(make_frame(seed=5).drop(columns=["price"]), "label", epochs=1, verbose=0)
    frame_fit(other, df, resume_from=tmp_path / "ck2.fbp")
    assert other.params.tobytes() == model.params.tobytes()
    assert other.preprocessor.to_json() == model.preprocessor.to_json()


def test_frame_and_array_checkpoints_do_not_resume_each_other(tmp_path):
    df = make_frame().drop(columns=["price"])
    model = classifier(df)
    frame_fit(model, df, callbacks=[fastbp.ModelCheckpoint(str(tmp_path / "frame.fbp"))])
    X, y, _ = model.preprocessor.transform_xy(df)
    arrays = classifier(df)
    arrays.fit(X, y, epochs=1, verbose=0, callbacks=[fastbp.ModelCheckpoint(str(tmp_path / "arrays.fbp"))])
    fresh = classifier(df)
    before = fresh.params.copy()
    with pytest.raises(ValueError, match="checkpoint of a fit on a DataFrame or pyarrow Table .* resume it with fit "
                                         "on the table"):
        fresh.fit(X, y, epochs=4, verbose=0, resume_from=tmp_path / "frame.fbp")
    with pytest.raises(ValueError, match="checkpoint of a fit on arrays; a fit on a DataFrame"):
        frame_fit(fresh, df, resume_from=tmp_path / "arrays.fbp")
    np.testing.assert_array_equal(fresh.params, before)
    assert fresh.preprocessor is None
    wide = fastbp.MLP([width(df, "label") + 1, 8, 2], dtype="float64")
    with pytest.raises(ValueError, match="resume_from: the preprocessing encodes 7 features but the model takes 8"):
        frame_fit(wide, df, resume_from=tmp_path / "frame.fbp")
    # an older reader, or the wrong kind of file, is refused clearly rather than misread
    header, arrays_ = fastbp.io.read_file(tmp_path / "frame.fbp")
    assert header["kind"] == "checkpoint" and {"input_mean", "input_scale"} <= set(arrays_)
    model.save(tmp_path / "model.fbp")
    with pytest.raises(ValueError, match="is a 'model' file; resuming needs a checkpoint"):
        frame_fit(classifier(df), df, resume_from=tmp_path / "model.fbp")


FRAME_SETUP = """
    import numpy as np
    import pandas as pd
    import fastbp

    EPOCHS = 10

    def make():
        rng = np.random.default_rng(3)
        n = 20000
        df = pd.DataFrame({"a": rng.normal(5, 3, n), "b": rng.normal(-2, 9, n),
                           "city": rng.choice(["lyon", "nice", "paris"], n)})
        df.loc[rng.random(n) < 0.1, "a"] = np.nan
        df["label"] = np.where(df.a.fillna(5) - 5 + (df.city == "nice") * 2 + df.b / 9 > 0, "yes", "no")
        return df

    def run(path, threads, resume=False, callbacks=()):
        fastbp.set_num_threads(threads)
        df = make()
        model = fastbp.MLP([6, 32, 32, 2], seed=7)
        cbs = [fastbp.ModelCheckpoint(path, save_weights_only=False)] if path else []
        hist = model.fit(df, "label", epochs=EPOCHS, batch_size=32, optimizer=fastbp.Adam(lr=0.01),
                         validation_split=0.1, verbose=0, callbacks=cbs + list(callbacks), metrics=["auc"],
                         resume_from=path if resume else None)
        return model, hist
"""


@pytest.mark.slow
def test_a_frame_fit_resumes_bit_identically_after_kill9(tmp_path):
    """test_checkpoint's kill -9 test for a fit on a DataFrame with a category and gaps."""
    import signal
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs POSIX signals")
    from test_checkpoint import killed_mid_run
    ns, path, threads = killed_mid_run(tmp_path, FRAME_SETUP)
    # the checkpoint is also a model of raw columns
    df = ns["make"]()
    assert fastbp.load(path).predict(df).shape == (len(df), 2)
    try:
        resumed, h_r = ns["run"](str(path), threads, resume=True)
        reference, h_s = ns["run"](None, threads)
    finally:
        fastbp.set_num_threads(None)
    assert resumed.params.tobytes() == reference.params.tobytes()
    assert resumed.optimizer.iterations == reference.optimizer.iterations
    for k, v in reference.optimizer.state_arrays().items():
        assert np.array_equal(resumed.optimizer.state_arrays()[k], v)
    assert h_r.history == h_s.history and h_r.epoch == list(range(ns["EPOCHS"]))
    assert resumed.preprocessor.to_json() == reference.preprocessor.to_json()
    np.testing.assert_array_equal(resumed.predict(df), reference.predict(df))


def test_numbers_given_to_fit_a_model_with_named_classes_are_class_indices():
    df = make_frame().drop(columns=["price"])
    model = fastbp.MLP([width(df, "label"), 8, 2], loss="mse", dtype="float64")    # one-hot targets
    model.fit(df, "label", epochs=1, verbose=0)
    idx = (df.label == "yes").to_numpy().astype(np.int64)
    a, b, c = model.copy(), model.copy(), model.copy()
    a.fit(df, "label", epochs=1, verbose=0)
    b.fit(df, idx, epochs=1, verbose=0)
    c.fit(df, np.eye(2)[idx], epochs=1, verbose=0)                                 # one-hot as it is
    assert a.params.tobytes() == b.params.tobytes() == c.params.tobytes()
