"""numba kernels: matrix products, activations, losses, optimizer updates, the epoch loop.

Each kernel takes flat arrays, offsets and integer codes, so one compiled version serves every
network shape and activation per dtype. Arguments come in the order outputs, inputs, sizes.
"""
