"""Where every W and b of a network lives inside the one flat parameter buffer.

Layer l owns W_l (sizes[l], sizes[l+1]) followed by b_l (sizes[l+1],), in layer order, like
llm.c's parameter table. Gradients and every optimizer state use the same layout, so zeroing is
``grads[:] = 0`` and an optimizer update is one loop over the flat index.
"""
import numpy as np


class Layout:
    """Offsets and shapes of the parameters of a dense network with the given sizes."""

    def __init__(self, sizes, bias=True):
        self.sizes = tuple(int(s) for s in sizes)
        self.bias = bool(bias)
        woff, boff, off = [], [], 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            woff.append(off)
            off += n_in * n_out
            if self.bias:
                boff.append(off)
                off += n_out
            else:
                boff.append(-1)
        self.size = off
        # int64 arrays handed to the compiled kernels
        self.sizes_arr = np.array(self.sizes, dtype=np.int64)
        self.woff = np.array(woff, dtype=np.int64)
        self.boff = np.array(boff, dtype=np.int64)

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def zeros(self, dtype):
        """A new flat buffer of this layout, all zeros."""
        return np.zeros(self.size, dtype=dtype)

    def views(self, buf):
        """[(W, b), ...]: views into ``buf`` (b is None without bias); writing them writes buf."""
        out = []
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w0 = self.woff[l]
            W = buf[w0:w0 + n_in * n_out].reshape(n_in, n_out)
            b = buf[self.boff[l]:self.boff[l] + n_out] if self.bias else None
            out.append((W, b))
        return out

    def work_offsets(self, cap):
        """Offsets of A_0..A_L in an activation buffer for batches of up to ``cap`` rows."""
        return np.concatenate([[0], np.cumsum([cap * s for s in self.sizes])]).astype(np.int64)
