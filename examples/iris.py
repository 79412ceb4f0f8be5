"""Seed 004: iris classification (4 features -> 3 species), loss and accuracy curves as PNG.

The course's setup (TensorFlow 2 notes, Peking University): shuffle the 150 flowers with
``np.random.seed(116)``, train on the first 120 and test on the last 30; one dense layer 4 -> 3
with softmax, the squared error against one-hot labels as the loss (``tf.reduce_mean(tf.square(y_ - y))``),
gradient descent with lr 0.1, batches of 32 in order, 500 epochs; initial weights
N(0, 0.1^2). A callback records the test accuracy after every epoch, as the course does.

    python examples/iris.py [--epochs 500] [--out iris_curves.png]
"""
import argparse

import numpy as np

import fastbp
from fastbp.datasets import load_iris


class TestAccuracy(fastbp.Callback):
    """Accuracy on held-out data at the end of every epoch (a per-epoch hook: training stays compiled)."""

    def __init__(self, X, y):
        self.X, self.y, self.values = X, y, []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(float(np.mean(self.model.predict_classes(self.X) == self.y)))


def split():
    X, y = load_iris()
    order = np.random.RandomState(116).permutation(len(X))     # == np.random.seed(116); shuffle
    X, y = X[order], y[order]
    return X[:-30], y[:-30], X[-30:], y[-30:]


def train(epochs=500, verbose=True):
    Xtr, ytr, Xte, yte = split()
    model = fastbp.MLP([4, 3], output="softmax", loss="mse", init="normal", init_scale=0.1, seed=1)
    onehot = np.eye(3, dtype=np.float32)
    acc = TestAccuracy(Xte, yte)
    hist = model.fit(Xtr, onehot[ytr], epochs=epochs, batch_size=32, shuffle=False,
                     optimizer=fastbp.SGD(lr=0.1), validation_data=(Xte, onehot[yte]), callbacks=[acc], verbose=0)
    if verbose:
        for e in range(0, epochs, max(1, epochs // 10)):
            print(f"epoch {e:4d}: loss {hist.history['loss'][e]:.6f}  test loss {hist.history['val_loss'][e]:.6f}  "
                  f"test accuracy {acc.values[e]:.4f}")
        print(f"final: test accuracy {acc.values[-1]:.4f} ({round(acc.values[-1] * 30)}/30)")
    return model, hist, acc.values


def plot(hist, accuracy, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(hist.history["loss"], label="train loss")
    ax1.plot(hist.history["val_loss"], label="test loss")
    ax1.set_title("Loss Function Curve")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(accuracy, label="test accuracy", color="tab:green")
    ax2.set_title("Acc Curve")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1.02)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--out", default="iris_curves.png", help="PNG with the loss and accuracy curves")
    args = ap.parse_args(argv)
    model, hist, accuracy = train(args.epochs)
    plot(hist, accuracy, args.out)
    print(f"curves saved to {args.out}")
    return model, hist, accuracy


if __name__ == "__main__":
    main()
