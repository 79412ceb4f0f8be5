"""Where every parameter of a network lives inside the one flat parameter buffer, and every
running statistic inside the flat buffer of statistics.

Layer l owns W_l (sizes[l], sizes[l+1]), then b_l (sizes[l+1],), then for a hidden layer with
normalization gamma_l and beta_l (sizes[l+1],) each, in layer order, like llm.c's parameter
table. Gradients and every optimizer state use the same layout, so zeroing is ``grads[:] = 0``
and an optimizer update is one loop over the flat index. The statistics buffer holds, for each
batch-normalized layer in layer order, its running mean then its running variance; it is empty
for a network without batch normalization.
"""
import numpy as np

NO_NORM, LAYER_NORM, BATCH_NORM = 0, 1, 2
# norm= names (per hidden layer) and their codes
NORMS = {None: NO_NORM, "none": NO_NORM, "layer": LAYER_NORM, "batch": BATCH_NORM}


def norm_codes(norm, n_hidden):
    """The norm code of every layer (the output layer's NO_NORM last) from MLP's ``norm``
    argument (one name or a list of n_hidden); ValueError for anything else."""
    names = list(norm) if isinstance(norm, (list, tuple)) else [norm] * n_hidden
    if len(names) != n_hidden:
        raise ValueError(f"norm: expected one value or a list of {n_hidden} (one per hidden layer), got a list of "
                         f"{len(names)}")
    codes = []
    for v in names:
        if not (v is None or isinstance(v, str)) or v not in NORMS:
            raise ValueError(f"norm: unknown name {v!r}; expected None, 'none', 'layer' or 'batch'")
        codes.append(NORMS[v])
    return codes + [NO_NORM]


class Layout:
    """Offsets and shapes of the parameters and statistics of a network.

    Parameters
    ----------
    sizes : sequence of int
        Input width, hidden widths..., output width.
    bias : bool
        Whether every layer has a bias.
    norm : sequence of int, optional
        The normalization code of each layer (NO_NORM, LAYER_NORM, BATCH_NORM); the output
        layer has none. Default: none anywhere.
    """

    def __init__(self, sizes, bias=True, norm=None):
        self.sizes = tuple(int(s) for s in sizes)
        self.bias = bool(bias)
        L = len(self.sizes) - 1
        self.norm = tuple(int(c) for c in (norm if norm is not None else [NO_NORM] * L))
        woff, boff, goff, roff, off, stats = [], [], [], [], 0, 0
        self.segments = [0]             # the end of every tensor: W, b, gamma, beta in order
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            woff.append(off)
            off += n_in * n_out
            self.segments.append(off)
            boff.append(off if self.bias else -1)
            if self.bias:
                off += n_out
                self.segments.append(off)
            goff.append(off if self.norm[l] != NO_NORM else -1)
            if self.norm[l] != NO_NORM:
                off += 2 * n_out            # gamma, then beta at goff + n_out
                self.segments += [off - n_out, off]
            roff.append(stats if self.norm[l] == BATCH_NORM else -1)
            if self.norm[l] == BATCH_NORM:
                stats += 2 * n_out          # running mean, then running variance at roff + n_out
        self.size = off
        self.n_stats = stats
        # int64 arrays handed to the compiled kernels
        self.sizes_arr = np.array(self.sizes, dtype=np.int64)
        self.woff = np.array(woff, dtype=np.int64)
        self.boff = np.array(boff, dtype=np.int64)
        self.goff = np.array(goff, dtype=np.int64)
        self.roff = np.array(roff, dtype=np.int64)
        self.norm_arr = np.array(self.norm, dtype=np.int64)
        self.segments_arr = np.array(self.segments, dtype=np.int64)

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def zeros(self, dtype):
        """A new flat buffer of this layout, all zeros."""
        return np.zeros(self.size, dtype=dtype)

    def views(self, buf):
        """[(W, b), ...]: views into ``buf`` (b None without bias); writing them writes buf."""
        out = []
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w0 = self.woff[l]
            W = buf[w0:w0 + n_in * n_out].reshape(n_in, n_out)
            out.append((W, buf[self.boff[l]:self.boff[l] + n_out] if self.bias else None))
        return out

    def norm_views(self, buf):
        """[(gamma, beta), ...] per layer: views into ``buf`` ((None, None) without norm)."""
        out = []
        for l, n_out in enumerate(self.sizes[1:]):
            g = self.goff[l]
            out.append((buf[g:g + n_out], buf[g + n_out:g + 2 * n_out]) if g >= 0 else (None, None))
        return out

    def stat_views(self, stats):
        """[(running_mean, running_var), ...] per layer: views into the statistics buffer (None
        where a layer has no batch normalization)."""
        out = []
        for l, n_out in enumerate(self.sizes[1:]):
            r = self.roff[l]
            out.append((stats[r:r + n_out], stats[r + n_out:r + 2 * n_out]) if r >= 0 else (None, None))
        return out

    def weight_mask(self):
        """A boolean mask over the flat buffer: True on the weight matrices W (what l1/l2 penalize)."""
        mask = np.zeros(self.size, bool)
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            mask[self.woff[l]:self.woff[l] + n_in * n_out] = True
        return mask
