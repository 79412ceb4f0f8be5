"""Seed 002: backpropagation by hand on a 2-3-1 network, then one gradient-descent step.

Input x = (40, 80), target 60, every first-layer weight 0.5, every second-layer weight 1.0,
linear units, no biases, the seed's L2 loss 0.5 * (target - prediction)^2 ("half_mse").
The forward pass predicts 180 (loss 7200); fastbp's gradients are printed under the seed's names
(d_loss_w_2_11 is dL/dw for hidden unit 1 -> output, d_loss_w_1_12 for input 1 -> hidden unit 2);
one SGD step with lr 1e-5 brings the prediction to 140.3136 (loss 3225.137...).

    python examples/backprop_by_hand.py
"""
import numpy as np

import fastbp


def build():
    model = fastbp.MLP([2, 3, 1], activation="linear", output="linear", loss="half_mse", bias=False,
                       dtype="float64")
    model.layers[0].W[...] = 0.5                       # w_1_ij: input i -> hidden j
    model.layers[1].W[...] = 1.0                       # w_2_j1: hidden j -> output
    return model


def named_gradients(model, grad):
    """{seed's name: value} for a flat gradient in the model's layout."""
    (W1, _), (W2, _) = model.layout.views(grad)        # the same views as model.layers[i].W
    names = {f"d_loss_w_2_{j + 1}1": W2[j, 0] for j in range(3)}
    names.update({f"d_loss_w_1_{i + 1}{j + 1}": W1[i, j] for i in range(2) for j in range(3)})
    return names


def main():
    X = np.array([[40.0, 80.0]])
    y = np.array([[60.0]])
    model = build()
    pred = model.predict(X)[0, 0]
    print(f"forward pass prediction: {pred}")
    loss, grad = model.loss_and_grad(X, y)
    print(f"loss: {loss}")
    print(f"d_loss_predicted_output: {pred - y[0, 0]}")
    grads = named_gradients(model, grad)
    for name, value in grads.items():
        print(f"{name} = {value}")
    model.train_step(X, y, fastbp.SGD(lr=1e-5))
    final = model.predict(X)[0, 0]
    final_loss = model.evaluate(X, y)["loss"]
    print(f"Final: {final:.4f}")
    print(f"loss: {final_loss}")
    return pred, loss, grads, final, final_loss


if __name__ == "__main__":
    main()
