"""Training runs replayed twice: under ``mpiexec -n 2`` (fit_cases.py) and in one process (the
test), with the same data, model and arguments. Shared by both sides so they cannot drift.

The batch sizes are chosen to split unevenly across 2 ranks (odd batches, odd last batches)
and, in "nesterov_empty_share", to leave one rank no row at all in the last minibatch. The
batch-norm cases (BATCH_NORM_CASES) also run on 3 ranks, where their last minibatch of 2 rows
leaves one rank none (on 2 ranks, one row each).
"""
import numpy as np

import fastbp

CASES = {
    # 83 training rows (20 held out) in batches of 7: shares of 4 and 3 rows, last batch 6.
    "adam_uneven": dict(sizes=[6, 9, 4], activation="relu", output="softmax", loss="cross_entropy",
                        dtype="float64", n=103, batch=7, epochs=3, validation_split=0.2,
                        sample_weight=True, scheduler=True, optimizer=("adam", dict(lr=1e-2)),
                        metrics=["accuracy", "auc", "f1"]),
    # 97 rows in batches of 6: the last batch has 1 row, so one rank has none.
    "nesterov_empty_share": dict(sizes=[5, 7, 2], activation="tanh", output="sigmoid",
                                 loss="binary_cross_entropy", dtype="float64", n=97, batch=6, epochs=5,
                                 validation_data=31, early_stopping=True,
                                 optimizer=("nesterov", dict(lr=0.05, momentum=0.8, clip_norm=0.5)),
                                 metrics=["auc", "f1"]),
    # X read from a .npy memmap; 150 rows in batches of 33 (shares 16/17, last batch 18).
    "sgd_memmap": dict(sizes=[8, 5, 3], activation="relu", output="linear", loss="mse", dtype="float64",
                       n=150, batch=33, epochs=3, memmap=True, class_weight=False,
                       optimizer=("sgd", dict(lr=0.05, weight_decay=1e-3)), metrics=["mae", "rmse", "r2"]),
    # Wide enough for the batch-major BLAS kernels (the cases above take the small-network ones):
    # 300 rows in batches of 40, 20 rows a rank.
    "adam_blas": dict(sizes=[40, 96, 5], activation="relu", output="softmax", loss="cross_entropy",
                      dtype="float64", n=300, batch=40, epochs=2, optimizer=("adam", dict(lr=1e-2)),
                      metrics=["auc"]),
    # The library's default dtype; compared to float32 rounding, not 1e-12.
    "adam_float32": dict(sizes=[20, 16, 5], activation="relu", output="softmax", loss="cross_entropy",
                         dtype="float32", n=256, batch=41, epochs=2, optimizer=("adam", dict(lr=3e-3))),
    # scipy CSR input (about a quarter of the entries stored, some rows and columns empty), on
    # the BLAS kernels (a validation split of CSR rows too) and on the small-network ones.
    "adam_sparse_blas": dict(sizes=[40, 96, 5], activation="relu", output="softmax", loss="cross_entropy",
                             dtype="float64", n=300, batch=40, epochs=2, validation_split=0.1, sparse=True,
                             optimizer=("adam", dict(lr=1e-2))),
    "sgd_sparse_small": dict(sizes=[8, 5, 3], activation="relu", output="linear", loss="mse", dtype="float64",
                             n=150, batch=33, epochs=3, sparse=True, optimizer=("sgd", dict(lr=0.05))),
    # Batch norm (statistics over the global minibatch), layer norm, dropout, an l2 penalty: 101
    # rows in batches of 11, the last of 2 rows. Momentum, not Adam: the bias before batch norm
    # has a gradient of exactly 0 computed as rounding noise, which Adam would scale up to steps
    # of lr, different in one process and on ranks that sum in another order.
    "batch_norm": dict(sizes=[6, 12, 10, 3], activation="gelu", output="softmax", loss="cross_entropy",
                       dtype="float64", n=101, batch=11, epochs=3, validation_data=31,
                       layers=dict(activation=["gelu", "relu"], norm=["batch", "layer"], dropout=0.2, l2=1e-3),
                       optimizer=("nesterov", dict(lr=0.05, momentum=0.9)), metrics=["accuracy", "auc"]),
    # The same on CSR input, two batch-norm layers, sample weights (which batch norm ignores).
    "batch_norm_sparse": dict(sizes=[8, 10, 9, 2], activation="relu", output="sigmoid",
                              loss="binary_cross_entropy", dtype="float64", n=90, batch=8, epochs=2, sparse=True,
                              sample_weight=True, layers=dict(norm="batch", dropout=[0.0, 0.3]),
                              optimizer=("sgd", dict(lr=0.1))),
}
BATCH_NORM_CASES = ["batch_norm", "batch_norm_sparse"]
# Trained 2 epochs with a checkpoint, then resumed to RESUME_EPOCHS from it by a model with
# another seed; compared with RESUME_EPOCHS epochs in one go.
RESUME_CASE = "adam_uneven"
RESUME_EPOCHS = 4
SEED = 3

OPTIMIZERS = {"adam": fastbp.Adam, "nesterov": fastbp.Nesterov, "sgd": fastbp.SGD}


def data(name):
    """(X, y, sample_weight or None, validation_data or None) of a case, from its name alone."""
    c = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    n, k = c["n"], c["sizes"][-1]
    X = rng.standard_normal((n, c["sizes"][0]))
    T = rng.standard_normal((c["sizes"][0], k))

    def targets(X):
        Z = X @ T + 0.3 * rng.standard_normal((X.shape[0], k))
        if c["loss"] == "cross_entropy":
            return Z.argmax(1)
        if c["loss"] == "binary_cross_entropy":
            return (Z > 0).astype(np.float64)
        return np.tanh(Z)

    y = targets(X)
    sw = rng.uniform(0.2, 2.0, n) if c.get("sample_weight") else None
    val = None
    if c.get("validation_data"):
        vX = rng.standard_normal((c["validation_data"], c["sizes"][0]))
        val = (vX, targets(vX))
    X = X.astype(c["dtype"])
    if c.get("sparse"):
        import scipy.sparse as sp
        X[rng.random(X.shape) < 0.75] = 0.0
        X[::7] = 0.0
        X[:, 3] = 0.0
        X = sp.csr_matrix(X)
    return X, y, sw, val


def model(name, seed=SEED):
    c = CASES[name]
    kw = dict(activation=c["activation"], output=c["output"], loss=c["loss"], dtype=c["dtype"], seed=seed)
    kw.update(c.get("layers", {}))
    return fastbp.MLP(c["sizes"], **kw)


def fit_kwargs(name, epochs=None, scheduler=True):
    """Everything for ``fit`` except X and y; fresh optimizer and callbacks on each call.

    scheduler=False leaves out the learning-rate schedule (for resuming, which keeps the
    checkpoint's learning rate)."""
    c = CASES[name]
    X, y, sw, val = data(name)
    opt_name, opt_args = c["optimizer"]
    callbacks = []
    if c.get("scheduler") and scheduler:
        callbacks.append(fastbp.LearningRateScheduler(lambda epoch, lr: lr * 0.7))
    if c.get("early_stopping"):
        # The loss never improves by 10: stops early and restores epoch 0's params.
        callbacks.append(fastbp.EarlyStopping(monitor="loss", patience=1, min_delta=10.0,
                                              restore_best_weights=True))
    kw = dict(epochs=epochs or c["epochs"], batch_size=c["batch"], optimizer=OPTIMIZERS[opt_name](**opt_args),
              shuffle=True, callbacks=callbacks, verbose=0, sample_weight=sw)
    if c.get("validation_split"):
        kw["validation_split"] = c["validation_split"]
    if c.get("metrics"):                 # training metrics gathered from every rank, AUC over all rows
        kw["metrics"] = c["metrics"]
    if val is not None:
        kw["validation_data"] = val
    return kw
