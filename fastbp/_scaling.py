"""The standardization of a model's input folded into, or out of, its first layer.

A fit on a table trains the network on standardized features (x - mu) / sd; folding makes the
first layer take the raw x instead, so the function is the same and the model needs no scaling
step. Both directions compute in float64 and write back in the model's dtype.
"""
import numpy as np

__all__ = ["fold_input_scaling", "unfold_input_scaling"]


def fold_input_scaling(model, mu, sd):
    """Make the first layer take raw x where it was trained on (x - mu) / sd (float64 arithmetic)."""
    W, b = model.layers[0].W, model.layers[0].b
    W64 = W.astype(np.float64) / sd[:, None]
    if b is not None:
        b[...] = b.astype(np.float64) - mu @ W64
    W[...] = W64


def unfold_input_scaling(model, mu, sd):
    """The inverse of fold_input_scaling: the first layer then takes (x - mu) / sd."""
    W, b = model.layers[0].W, model.layers[0].b
    W64 = W.astype(np.float64)
    if b is not None:
        b[...] = b.astype(np.float64) + mu @ W64
    W[...] = W64 * sd[:, None]
