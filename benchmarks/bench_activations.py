"""The hidden layers' element kernels on a 256 x 256 float32 block (a 256-wide layer's
pre-activations for a batch of 256), at the vector width the training kernels use
(jit.wide_vectors):

- each activation, one code per parameter: act_forward_slope (the derivative left in place of
  the pre-activations, copied in first), as every forward pass runs it; and what a training step
  runs, that then act_slope on a gradient copied in first, as a backward pass receives it from
  the next layer's product;
- dropout's mask at rate 0.1 on outputs and derivatives copied in first, row by row, as a
  training step's forward pass applies it.

Time per element is the time / 65536. Setup runs one call first, so compilation stays out of
``time_*``.
"""
import numpy as np

from fastbp.kernels import activations as A
from fastbp.kernels.dropout import apply_mask, row_key, step_key, threshold
from fastbp.kernels.jit import kernel, wide_vectors

ROWS = COLS = 256


@kernel
def forward(out, pre, pre0, act):
    """out <- act(pre0), pre <- act'(pre0)."""
    wide_vectors()
    n = pre.shape[0]
    for i in range(n):
        pre[i] = pre0[i]
    A.act_forward_slope(out, 0, pre, 0, n, act)


@kernel
def training_step(out, dpre, pre, pre0, dout, act):
    """out <- act(pre), pre <- act'(pre); dpre <- dout * pre."""
    wide_vectors()
    n = pre.shape[0]
    for i in range(n):
        pre[i] = pre0[i]
    A.act_forward_slope(out, 0, pre, 0, n, act)
    for i in range(n):
        dpre[i] = dout[i]
    A.act_slope(dpre, 0, pre, 0, n)


class Activations:
    params = (list(A.HIDDEN),)
    param_names = ["activation"]

    def setup(self, name):
        rng = np.random.default_rng(0)
        # pre-activations of a He-initialized layer: spread over the kinks and both tails
        self.pre = (rng.standard_normal(ROWS * COLS) * 2).astype(np.float32)
        self.dout = rng.standard_normal(ROWS * COLS).astype(np.float32)
        self.out = np.empty_like(self.pre)
        self.dpre = np.empty_like(self.pre)
        self.code = A.HIDDEN.code(name)
        self.pre0 = self.pre.copy()
        forward(self.out, self.pre, self.pre0, self.code)
        training_step(self.out, self.dpre, self.pre, self.pre0, self.dout, self.code)

    def time_forward(self, name):
        forward(self.out, self.pre, self.pre0, self.code)

    def time_training_step(self, name):
        training_step(self.out, self.dpre, self.pre, self.pre0, self.dout, self.code)


@kernel
def dropout(out, pre, out0, pre0, rate, t):
    """out, pre <- out0, pre0 (ROWS x COLS each) times the mask of update t at ``rate``, row by row."""
    wide_vectors()
    for i in range(out.shape[0]):
        out[i] = out0[i]
        pre[i] = pre0[i]
    skey = step_key(np.uint64(12345), t)
    thresh = threshold(rate)
    scale = 1.0 / (1.0 - rate)
    for r in range(ROWS):
        apply_mask(out, r * COLS, pre, r * COLS, COLS, row_key(skey, r, 0), thresh, scale)


class DropoutMask:
    """Dropout at rate 0.1 on a block of outputs and their derivatives (copied in first)."""

    def setup(self):
        rng = np.random.default_rng(0)
        self.out0 = rng.standard_normal(ROWS * COLS).astype(np.float32)
        self.pre0 = rng.standard_normal(ROWS * COLS).astype(np.float32)
        self.out = np.empty_like(self.out0)
        self.pre = np.empty_like(self.pre0)
        dropout(self.out, self.pre, self.out0, self.pre0, 0.1, 0)

    def time_mask(self):
        dropout(self.out, self.pre, self.out0, self.pre0, 0.1, 1)
