"""Seed 000: the forward pass of a 2-3-1 network, one part and a batch of four.

A production line measures each part's volume and weight; a network with 3 hidden units and no
biases turns them into one number. The weights are the ones the course's TensorFlow 1 program
draws with ``tf.random_normal([2, 3], stddev=1, seed=1)`` and ``tf.random_normal([3, 1], stddev=1,
seed=1)`` (as its printout shows), so the outputs match the course: 3.0904665 for (0.7, 0.5).

    python examples/forward_pass.py
"""
import numpy as np

import fastbp

W1 = np.array([[-0.8113182, 1.4845988, 0.06532937],
               [-2.4427042, 0.0992484, 0.5912243]])
W2 = np.array([[-0.8113182], [1.4845988], [0.06532937]])


def build():
    """The seed's net: a = x @ W1, y = a @ W2 (linear layers, no bias)."""
    model = fastbp.MLP([2, 3, 1], activation="linear", output="linear", bias=False, dtype="float32")
    model.layers[0].W[...] = W1
    model.layers[1].W[...] = W2
    return model


def main():
    model = build()
    print(model.summary())
    one = np.array([[0.7, 0.5]], dtype=np.float32)                     # volume 0.7, weight 0.5
    batch = np.array([[0.7, 0.5], [0.2, 0.3], [0.3, 0.4], [0.4, 0.5]], dtype=np.float32)
    y1 = model.predict(one)
    print("one part   (volume, weight) = (0.7, 0.5):")
    print(y1)
    y4 = model.predict(batch)
    print("four parts:")
    print(y4)
    return y1, y4


if __name__ == "__main__":
    main()
