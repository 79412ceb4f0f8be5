"""Seed 000's course example: 32 parts, a 2-3-1 network, MSE, gradient descent.

The classic TensorFlow course (Peking University) program, step for step with fastbp:
X = RandomState(23455).rand(32, 2) (volume, weight), a part is qualified when x1 + x2 < 1; a
2-3-1 net without biases, weights from the course's tf.random_normal(stddev=1, seed=1) draw;
loss tf.reduce_mean(tf.square(y - y_)) ("mse"); GradientDescentOptimizer(0.001); batches of 8
taken in order (start = i*8 % 32); 3000 steps; the loss on all 32 parts printed every 500 steps.

    python examples/parts_classifier.py [--steps 3000]
"""
import argparse

import numpy as np

import fastbp
from fastbp.datasets import make_parts

BATCH_SIZE = 8
W1 = np.array([[-0.8113182, 1.4845988, 0.06532937],
               [-2.4427042, 0.0992484, 0.5912243]])
W2 = np.array([[-0.8113182], [1.4845988], [0.06532937]])


def build(dtype="float32"):
    model = fastbp.MLP([2, 3, 1], activation="linear", output="linear", loss="mse", bias=False, dtype=dtype)
    model.layers[0].W[...] = W1
    model.layers[1].W[...] = W2
    return model


def train(steps=3000, every=500, dtype="float32", verbose=True):
    """Returns (model, [(step, loss on all data after that step), ...])."""
    X, y = make_parts(32, dtype=dtype)
    Y = y.reshape(-1, 1).astype(dtype)
    model = build(dtype)
    opt = fastbp.SGD(lr=0.001)
    if verbose:
        print("w1 before training:\n", model.layers[0].W, "\nw2 before training:\n", model.layers[1].W)
    log = []
    for i in range(steps):
        start = (i * BATCH_SIZE) % 32
        model.train_step(X[start:start + BATCH_SIZE], Y[start:start + BATCH_SIZE], opt)
        if i % every == 0:
            total = model.evaluate(X, Y)["loss"]
            log.append((i, total))
            if verbose:
                print(f"After {i} training step(s), loss on all data is {total:g}")
    if verbose:
        print("w1 after training:\n", model.layers[0].W, "\nw2 after training:\n", model.layers[1].W)
    return model, log


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    args = ap.parse_args(argv)
    return train(args.steps)


if __name__ == "__main__":
    main()
