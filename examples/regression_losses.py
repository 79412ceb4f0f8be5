"""Regression losses for the data that calls for them: mae and huber when some targets are
gross errors, poisson when the targets are counts.

1. Outliers. ``make_regression`` targets (y = linear + sine of 5 features + noise), of which a
   tenth of the training rows get a gross error of +10 to +30 added, as a faulty sensor would
   record; the test targets are clean. The same 10-64-64-1 network is fit with ``mse``, ``mae``
   and ``huber`` (delta 1). Squared error lets the outliers pull every prediction up; mae and
   huber follow the bulk of the data. Printed: the error of each on the clean test targets, and
   the mean of the test residuals (the bias the outliers leave).
2. Counts. y ~ Poisson(rate), log(rate) a linear function of 8 features. A network with output
   ``exp`` and loss ``poisson`` (torch's PoissonNLLLoss on the log-rate) against one with a linear
   output and ``mse``. Printed: the held-out mean Poisson deviance (the count-data analogue of
   squared error, as scikit-learn's mean_poisson_deviance), the error against the true rates, and
   the sum of predictions against the sum of counts.

    python examples/regression_losses.py [--epochs 60] [--samples 4000]
"""
import argparse

import numpy as np

import fastbp
from fastbp.datasets import make_regression


def outlier_data(n, seed=0):
    X, y = make_regression(n + n // 2, n_features=10, noise=0.1, seed=seed)
    y = y.reshape(-1, 1)
    Xtr, ytr, Xte, yte = X[:n], y[:n].copy(), X[n:], y[n:]
    rng = np.random.default_rng(seed)
    bad = rng.choice(n, n // 10, replace=False)
    ytr[bad, 0] += rng.uniform(10, 30, bad.size).astype(ytr.dtype)
    return Xtr, ytr, Xte, yte


def count_data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n // 2, 8)).astype(np.float32)
    rate = np.exp(0.5 + X @ rng.normal(0, 0.4, 8))
    y = rng.poisson(rate).astype(np.float32).reshape(-1, 1)
    return X[:n], y[:n], X[n:], y[n:], rate[n:]


def poisson_deviance(y, mu):
    """Mean Poisson deviance 2 * (y log(y / mu) - y + mu), with y log(y / mu) = 0 at y = 0."""
    y, mu = y.ravel().astype(np.float64), np.maximum(mu.ravel().astype(np.float64), 1e-8)
    ylog = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    return float(np.mean(2 * (ylog - y + mu)))


def fit(X, y, epochs, **options):
    model = fastbp.MLP([X.shape[1], 64, 64, 1], activation="silu", seed=0, **options)
    model.fit(X, y, epochs=epochs, batch_size=64, optimizer=fastbp.Adam(lr=1e-3), verbose=0)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--samples", type=int, default=4000, help="training rows of each task (half as many test)")
    args = ap.parse_args(argv)
    results = {"outliers": {}, "counts": {}}

    Xtr, ytr, Xte, yte = outlier_data(args.samples)
    print(f"1. {args.samples} training rows, {args.samples // 10} of them with a gross error; "
          f"{len(Xte)} clean test rows")
    for loss in ("mse", "mae", "huber"):
        model = fit(Xtr, ytr, args.epochs, output="linear", loss=loss)
        r = model.predict(Xte) - yte
        res = results["outliers"][loss] = dict(rmse=float(np.sqrt(np.mean(r ** 2))), mae=float(np.mean(np.abs(r))),
                                               bias=float(np.mean(r)))
        print(f"   {loss:6s}: test RMSE {res['rmse']:.4f}  test MAE {res['mae']:.4f}  mean residual {res['bias']:+.4f}")

    Xtr, ytr, Xte, yte, rate = count_data(args.samples)
    print(f"2. {args.samples} training rows of counts (mean {ytr.mean():.3f}, max {ytr.max():.0f}); "
          f"{len(Xte)} test rows")
    for output, loss in (("exp", "poisson"), ("linear", "mse")):
        model = fit(Xtr, ytr, args.epochs, output=output, loss=loss)
        mu = model.predict(Xte)
        res = results["counts"][loss] = dict(
            deviance=poisson_deviance(yte, mu), rate_mae=float(np.mean(np.abs(mu.ravel() - rate))),
            negative=int((mu <= 0).sum()), train_ratio=float(model.predict(Xtr).sum() / ytr.sum()))
        print(f"   output {output:6s} loss {loss:7s}: test Poisson deviance {res['deviance']:.4f}  "
              f"error against the true rate {res['rate_mae']:.4f}  predictions <= 0: {res['negative']}  "
              f"sum of predictions / sum of counts (training) {res['train_ratio']:.4f}")
    return results


if __name__ == "__main__":
    main()
