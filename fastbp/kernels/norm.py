"""Layer and batch normalization of a hidden layer's pre-activations, forward and backward.

Layer l with width n on a batch of m rows (batch-major, flat offsets into a Work, see args.py):
    Z     (m, n)  the pre-activation A_l @ W_l + b_l, written into pre at pre_off[l]
    Xhat  (m, n)  (Z - mean) / sqrt(var + eps), at xhat_off[l]
    Y     (m, n)  gamma * Xhat + beta, overwriting Z: the activation's input
    nstat         float64 at nstat_off[l]: layer norm, each row's mean and 1/std in turn; batch
                  norm, the n features' means, then their 1/std, then PART_MOMENTS * n for each
                  row part of a step (its sums over its rows)
Layer norm is torch.nn.LayerNorm(n, eps=1e-5) over each row; batch norm is
torch.nn.BatchNorm1d(n, eps=1e-5, momentum=0.1): the batch's mean and biased variance normalize,
the unbiased variance goes into the running variance; inference uses the running statistics.

Sums over rows run per feature in row order; sums over a row's features are reassociated (the
order LLVM's vectorized loop takes, fixed for a given build) but never span rows. Batch norm's
sums over the batch are taken per row part (by the part that wrote the rows) and added in part
order, so they follow the part split as the products do (parts.py: fixed by the shapes with
``deterministic``); one part gives the bits of a single pass over the batch.
"""
import numpy as np

from .jit import VECTORIZE, kernel, wide_vectors
from .parts import part_range

EPS = 1e-5
MOMENTUM = 0.1
# the codes of _layout (kernels import nothing from the package above them)
LAYER_NORM, BATCH_NORM = 1, 2


@kernel(inline="always")
def layer_norm_rows(pre, yoff, xoff, nstat, soff, params, goff, r0, r1, n):
    """Rows [r0, r1) of a layer-norm layer: Z (at yoff) -> Xhat (at xoff), Y = gamma*Xhat + beta
    (at yoff); row r's mean and 1/std into nstat[soff + 2r], nstat[soff + 2r + 1]."""
    gamma = params[goff:goff + n]
    beta = params[goff + n:goff + 2 * n]
    for r in range(r0, r1):
        z = pre[yoff + r * n:yoff + (r + 1) * n]
        xh = pre[xoff + r * n:xoff + (r + 1) * n]
        mean, v = row_moments(z)
        rstd = 1.0 / np.sqrt(v / n + EPS)
        nstat[soff + 2 * r] = mean
        nstat[soff + 2 * r + 1] = rstd
        mu = pre.dtype.type(mean)
        rs = pre.dtype.type(rstd)
        for j in range(n):
            x = (z[j] - mu) * rs
            xh[j] = x
            z[j] = gamma[j] * x + beta[j]


# Kernels of their own, with reassociation: inlined into their callers, which keep IEEE order,
# these sums would run one addition after another instead of in vector registers.
@kernel(flags=VECTORIZE)
def row_moments(z):
    """The mean of a row z (1-D) and the sum of its squared deviations from it, in float64."""
    wide_vectors()
    n = z.shape[0]
    s = 0.0
    for j in range(n):
        s += z[j]
    mean = s / n
    v = 0.0
    for j in range(n):
        d = z[j] - mean
        v += d * d
    return mean, v


@kernel(flags=VECTORIZE)
def row_grad_sums(g, gamma, xh):
    """sum(g * gamma) and sum(g * gamma * xh) over a row (1-D arrays of one length), in float64."""
    wide_vectors()
    a = 0.0
    b = 0.0
    for j in range(g.shape[0]):
        gj = g[j] * gamma[j]
        a += gj
        b += gj * xh[j]
    return a, b


@kernel(inline="always")
def batch_norm_inference_rows(pre, yoff, xoff, params, goff, stats, roff, r0, r1, n):
    """Rows [r0, r1) of a batch-norm layer normalized by the running statistics."""
    gamma = params[goff:goff + n]
    beta = params[goff + n:goff + 2 * n]
    rmean = stats[roff:roff + n]
    rvar = stats[roff + n:roff + 2 * n]
    for r in range(r0, r1):
        z = pre[yoff + r * n:yoff + (r + 1) * n]
        xh = pre[xoff + r * n:xoff + (r + 1) * n]
        for j in range(n):
            x = (z[j] - rmean[j]) / np.sqrt(rvar[j] + pre.dtype.type(EPS))
            xh[j] = x
            z[j] = gamma[j] * x + beta[j]


@kernel(inline="always")
def column_sums(sums, pre, yoff, m, n):
    """sums[:n] = Z (m, n) at pre[yoff:] summed over the rows, in row order."""
    for j in range(n):
        sums[j] = 0.0
    for i in range(m):
        z = pre[yoff + i * n:yoff + (i + 1) * n]
        for j in range(n):
            sums[j] += z[j]


@kernel(inline="always")
def column_square_deviations(sums, pre, yoff, mean, m, n):
    """sums[:n] = (Z - mean)**2 summed over the rows of Z (m, n) at pre[yoff:], in row order;
    mean (n,)."""
    for j in range(n):
        sums[j] = 0.0
    for i in range(m):
        z = pre[yoff + i * n:yoff + (i + 1) * n]
        for j in range(n):
            d = z[j] - mean[j]
            sums[j] += d * d


# a part's moments in a batch-norm layer's nstat: its sums, its mean, its squared deviations
PART_MOMENTS = 3


# batch_norm_part_moments and part_param_grads are kernels of their own, not inlined: each is
# called from the dense and the sparse layer kernels, which would otherwise compile them again.


@kernel
def batch_norm_part_moments(pre, yoff, nstat, poff, r0, r1, n):
    """Rows [r0, r1) of a batch-norm layer's Z (m, n) at pre[yoff:] (a part's share of
    batch_norm_merge_statistics): at nstat[poff:], their sum per feature, their mean, and the
    sum of their squared deviations from that mean, n each, every sum in row order."""
    wide_vectors()
    sums = nstat[poff:poff + n]
    mean = nstat[poff + n:poff + 2 * n]
    column_sums(sums, pre, yoff + r0 * n, r1 - r0, n)
    for j in range(n):
        mean[j] = sums[j] / (r1 - r0)
    column_square_deviations(nstat[poff + 2 * n:poff + 3 * n], pre, yoff + r0 * n, mean, r1 - r0, n)


@kernel(inline="always")
def batch_norm_merge_statistics(nstat, soff, poff, stats, roff, m, n, parts, update):
    """A batch-norm layer's statistics over a batch of m rows split into ``parts`` row parts
    (parts.part_range), from the parts' moments at nstat[poff:] (batch_norm_part_moments, in part
    order): the mean at nstat[soff:], and sum_p (M2_p + rows_p * (mean_p - mean)**2), the sum
    of squared deviations from it, which batch_norm_finish_statistics makes 1/std. With one part
    these are the bits of two passes over the whole batch."""
    mean = nstat[soff:soff + n]
    sq = nstat[soff + n:soff + 2 * n]
    for j in range(n):
        mean[j] = 0.0
        sq[j] = 0.0
    for p in range(parts):
        q = poff + PART_MOMENTS * n * p
        for j in range(n):
            mean[j] += nstat[q + j]
    for j in range(n):
        mean[j] /= m
    for p in range(parts):
        r0, r1 = part_range(m, parts, p)
        if r1 == r0:
            continue
        q = poff + PART_MOMENTS * n * p
        pmean = nstat[q + n:q + 2 * n]
        m2 = nstat[q + 2 * n:q + 3 * n]
        for j in range(n):
            d = pmean[j] - mean[j]
            sq[j] += m2[j] + (r1 - r0) * (d * d)
    batch_norm_finish_statistics(nstat, soff, stats, roff, m, n, update)


@kernel
def part_param_grads(acc, aoff, G, gcur, pre, xoff, r0, r1, n):
    """Rows [r0, r1) of a batch-norm layer's sum of dY * Xhat (at acc[aoff:]) and of dY (at
    acc[aoff + n:]), dY (m, n) at G[gcur:], in row order and in dY's dtype (a part's share of
    merge_param_grads; acc may be float64, which holds those values exactly)."""
    wide_vectors()
    dt = G.dtype.type
    dgamma = acc[aoff:aoff + n]
    dbeta = acc[aoff + n:aoff + 2 * n]
    for j in range(n):
        dgamma[j] = 0.0
        dbeta[j] = 0.0
    for i in range(r0, r1):
        g = G[gcur + i * n:gcur + (i + 1) * n]
        xh = pre[xoff + i * n:xoff + (i + 1) * n]
        for j in range(n):
            dgamma[j] = dt(dgamma[j]) + g[j] * xh[j]
            dbeta[j] = dt(dbeta[j]) + g[j]


@kernel(inline="always")
def merge_param_grads(grads, goff, nstat, poff, n, parts):
    """dgamma and dbeta (at grads[goff:], norm_param_grads's layout) as the sum of the parts'
    (part_param_grads at nstat[poff + PART_MOMENTS*n*p:]) in part order."""
    dgamma = grads[goff:goff + n]
    dbeta = grads[goff + n:goff + 2 * n]
    for j in range(n):
        dgamma[j] = nstat[poff + j]
        dbeta[j] = nstat[poff + n + j]
    for p in range(1, parts):
        q = poff + PART_MOMENTS * n * p
        for j in range(n):
            dgamma[j] += nstat[q + j]
            dbeta[j] += nstat[q + n + j]


@kernel(inline="always")
def batch_norm_finish_statistics(nstat, soff, stats, roff, count, n, update):
    """A batch-norm layer's statistics over a batch of ``count`` rows: the mean at nstat[soff:]
    stays, the sum of squared deviations at nstat[soff + n:] becomes 1/std; with ``update`` the
    running statistics move first."""
    mean = nstat[soff:soff + n]
    rstd = nstat[soff + n:soff + 2 * n]
    if update:
        rmean = stats[roff:roff + n]
        rvar = stats[roff + n:roff + 2 * n]
        for j in range(n):
            rmean[j] = (1.0 - MOMENTUM) * rmean[j] + MOMENTUM * mean[j]
            rvar[j] = (1.0 - MOMENTUM) * rvar[j] + MOMENTUM * (rstd[j] / (count - 1))
    for j in range(n):
        rstd[j] = 1.0 / np.sqrt(rstd[j] / count + EPS)


@kernel(inline="always")
def batch_norm_rows(pre, yoff, xoff, nstat, soff, params, goff, r0, r1, n):
    """Rows [r0, r1) of a batch-norm layer from the batch's mean and 1/std in nstat: Z (at yoff)
    -> Xhat (at xoff), Y = gamma*Xhat + beta (at yoff)."""
    mean = nstat[soff:soff + n]
    rstd = nstat[soff + n:soff + 2 * n]
    gamma = params[goff:goff + n]
    beta = params[goff + n:goff + 2 * n]
    dt = pre.dtype.type
    for i in range(r0, r1):
        z = pre[yoff + i * n:yoff + (i + 1) * n]
        xh = pre[xoff + i * n:xoff + (i + 1) * n]
        # in the arrays' dtype, as layer norm: float64 statistics would halve float32's vectors
        for j in range(n):
            x = (z[j] - dt(mean[j])) * dt(rstd[j])
            xh[j] = x
            z[j] = gamma[j] * x + beta[j]


@kernel(inline="always")
def norm_param_grads(grads, goff, G, gcur, pre, xoff, m, n):
    """dgamma = sum over rows of dY * Xhat and dbeta = sum of dY into grads[goff:] (n each), with
    dY (m, n) at G[gcur:], in row order and in grads' dtype (part_param_grads is the same sums
    over a part's rows, in dY's dtype whatever the accumulator's)."""
    dgamma = grads[goff:goff + n]
    dbeta = grads[goff + n:goff + 2 * n]
    for j in range(n):
        dgamma[j] = 0.0
        dbeta[j] = 0.0
    for i in range(m):
        g = G[gcur + i * n:gcur + (i + 1) * n]
        xh = pre[xoff + i * n:xoff + (i + 1) * n]
        for j in range(n):
            dgamma[j] += g[j] * xh[j]
            dbeta[j] += g[j]


@kernel(inline="always")
def layer_norm_backward_rows(G, gcur, zcur, pre, xoff, nstat, soff, params, goff, r0, r1, n):
    """Rows [r0, r1) of dY (at G[gcur:]) -> dZ (at G[zcur:], another block: dY stays for the
    sums over the batch) through layer norm:
    dZ = rstd * (g - mean(g) - Xhat * mean(g * Xhat)), g = gamma * dY, means over the row."""
    gamma = params[goff:goff + n]
    for r in range(r0, r1):
        g = G[gcur + r * n:gcur + (r + 1) * n]
        dz = G[zcur + r * n:zcur + (r + 1) * n]
        xh = pre[xoff + r * n:xoff + (r + 1) * n]
        a, b = row_grad_sums(g, gamma, xh)
        a /= n
        b /= n
        rs = nstat[soff + 2 * r + 1]
        for j in range(n):
            dz[j] = rs * (g[j] * gamma[j] - a - xh[j] * b)


@kernel(inline="always")
def batch_norm_backward_rows(G, gcur, pre, xoff, nstat, soff, params, goff, dsums, doff, count, r0, r1, n):
    """Rows [r0, r1) of dY -> dZ in place through batch norm, for a batch of ``count`` rows:
    dZ = gamma * rstd * (dY - dbeta / count - Xhat * dgamma / count), with dgamma and dbeta over
    the whole batch at dsums[doff:] (norm_param_grads's layout)."""
    gamma = params[goff:goff + n]
    dgamma = dsums[doff:doff + n]
    dbeta = dsums[doff + n:doff + 2 * n]
    rstd = nstat[soff + n:soff + 2 * n]
    dt = G.dtype.type
    inv = dt(1.0 / count)       # a product per element where two divisions were
    for i in range(r0, r1):
        g = G[gcur + i * n:gcur + (i + 1) * n]
        xh = pre[xoff + i * n:xoff + (i + 1) * n]
        for j in range(n):
            g[j] = gamma[j] * dt(rstd[j]) * (g[j] - dbeta[j] * inv - xh[j] * dgamma[j] * inv)
