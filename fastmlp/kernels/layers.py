"""What can sit between one hidden layer's product and the next layer: batch normalization, the
activation, a residual (skip) connection, and dropout — each a forward/backward pair.

For a batch of B samples through a hidden layer of O units, in the order the forward pass runs:
    z      (B, O)  the pre-activations inp @ W + b (batch normalization overwrites them with y)
    zhat   (B, O)  z normalised per unit: (z - mean) / sqrt(var + eps)
    y      (B, O)  gamma * zhat + beta (or z itself without batch normalization)
    fy     (B, O)  the activation's output f(y)
    out    (B, O)  what the next layer sees: fy, plus the layer's input if residual, with dropout

Batch normalization follows torch.nn.BatchNorm1d: batch statistics while training (the variance
biased for normalising, unbiased for the running estimate, updated with momentum 0.1), running
statistics for inference. Every loop over units owns whole columns, every loop over samples whole
rows, and sums run in a fixed order: results do not depend on the thread count.
"""

import math

import numpy as np
from numba import njit, prange

from .activations import activate, activation_grad
from .config import JIT, PARALLEL_MIN_WORK, jit_pair

BN_MOMENTUM = 0.1
BN_EPS = 1e-5

# ---- dropout's random numbers ------------------------------------------------------------------
# A counter-based generator: each unit's keep/drop decision is a hash of (seed, step, layer,
# sample, unit). No generator state is shared between threads, so the masks are the same on any
# number of threads, and the backward pass recomputes them instead of storing them.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(inline="always", **JIT)
def _splitmix64(x):
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@njit(inline="always", **JIT)
def dropout_keeps(seed, step, layer, n, j, rate):
    """True if unit j of sample n in ``layer`` survives dropout at training step ``step``."""
    h = _splitmix64(np.uint64(seed) ^ _splitmix64(np.uint64(step) ^ _splitmix64(
        np.uint64(layer) ^ _splitmix64(np.uint64(n) ^ _splitmix64(np.uint64(j))))))
    u = (h >> np.uint64(11)) * (1.0 / 9007199254740992.0)  # 53 random bits -> [0, 1)
    return u >= rate


# ---- batch normalization -------------------------------------------------------------------------


def _batchnorm_forward(z, zhat, mean, inv_std, gamma, beta, running_mean, running_var, training):
    """z (B, O) in: pre-activations; out: y = gamma * zhat + beta.  zhat (B, O) out.
    mean, inv_std (O,) out: the statistics used. running_mean, running_var (O,) in/out."""
    B, O = z.shape
    for j in prange(O):
        if training:
            m = 0.0
            for n in range(B):
                m += z[n, j]
            m /= B
            v = 0.0
            for n in range(B):
                v += (z[n, j] - m) ** 2
            running_mean[j] = (1 - BN_MOMENTUM) * running_mean[j] + BN_MOMENTUM * m
            running_var[j] = (1 - BN_MOMENTUM) * running_var[j] + BN_MOMENTUM * v / (B - 1)
            v /= B
        else:
            m, v = running_mean[j], running_var[j]
        s = 1.0 / math.sqrt(v + BN_EPS)
        mean[j], inv_std[j] = m, s
        for n in range(B):
            zhat[n, j] = (z[n, j] - m) * s
            z[n, j] = gamma[j] * zhat[n, j] + beta[j]


def _batchnorm_backward(dz, dgamma, dbeta, dy, zhat, gamma, inv_std):
    """dy (B, O) in: dL/dy.  dz (B, O) out: dL/dz.  dgamma, dbeta (O,) out.

    With batch statistics every z[., j] moves the mean and variance too, which gives
        dz = gamma * inv_std / B * (B dy - sum(dy) - zhat * sum(dy * zhat))."""
    B, O = dy.shape
    for j in prange(O):
        sum_dy = 0.0
        sum_dy_zhat = 0.0
        for n in range(B):
            sum_dy += dy[n, j]
            sum_dy_zhat += dy[n, j] * zhat[n, j]
        dgamma[j], dbeta[j] = sum_dy_zhat, sum_dy
        k = gamma[j] * inv_std[j] / B
        for n in range(B):
            dz[n, j] = k * (B * dy[n, j] - sum_dy - zhat[n, j] * sum_dy_zhat)


# ---- activation, residual, dropout ---------------------------------------------------------------


def _hidden_output(out, fy, y, inp, act, residual, rate, seed, step, layer):
    """fy = f(y); out = (fy + inp if residual) * mask / (1 - rate), all (B, O); rate 0: no dropout."""
    B, O = y.shape
    scale = 1.0 / (1.0 - rate)
    for n in prange(B):
        for j in range(O):
            a = activate(y[n, j], act)
            fy[n, j] = a
            if residual:
                a += inp[n, j]
            if rate > 0:
                a = a * scale if dropout_keeps(seed, step, layer, n, j, rate) else 0.0
            out[n, j] = a


def _hidden_output_backward(dy, dskip, dout, fy, act, residual, rate, seed, step, layer):
    """dout (B, O) in: dL/dout.  dskip (B, O) out: dL/d(fy + inp), the gradient the residual
    passes straight to the layer's input.  dy (B, O) out: dL/dy = dskip * f'(y)."""
    B, O = dout.shape
    scale = 1.0 / (1.0 - rate)
    for n in prange(B):
        for j in range(O):
            g = dout[n, j]
            if rate > 0:
                g = g * scale if dropout_keeps(seed, step, layer, n, j, rate) else 0.0
            if residual:
                dskip[n, j] = g
            dy[n, j] = g * activation_grad(fy[n, j], act)


_batchnorm_forward_mt, _batchnorm_forward_1t = jit_pair(_batchnorm_forward)
_batchnorm_backward_mt, _batchnorm_backward_1t = jit_pair(_batchnorm_backward)
_hidden_output_mt, _hidden_output_1t = jit_pair(_hidden_output)
_hidden_output_backward_mt, _hidden_output_backward_1t = jit_pair(_hidden_output_backward)

# An element of these passes costs roughly this many multiply-adds (a hash, an exp, a division).
ELEMENT_COST = 16


@njit(**JIT)
def batchnorm_forward(z, zhat, mean, inv_std, gamma, beta, running_mean, running_var, training):
    if z.shape[0] * z.shape[1] * ELEMENT_COST >= PARALLEL_MIN_WORK:
        _batchnorm_forward_mt(z, zhat, mean, inv_std, gamma, beta, running_mean, running_var, training)
    else:
        _batchnorm_forward_1t(z, zhat, mean, inv_std, gamma, beta, running_mean, running_var, training)


@njit(**JIT)
def batchnorm_backward(dz, dgamma, dbeta, dy, zhat, gamma, inv_std):
    if dy.shape[0] * dy.shape[1] * ELEMENT_COST >= PARALLEL_MIN_WORK:
        _batchnorm_backward_mt(dz, dgamma, dbeta, dy, zhat, gamma, inv_std)
    else:
        _batchnorm_backward_1t(dz, dgamma, dbeta, dy, zhat, gamma, inv_std)


@njit(**JIT)
def hidden_output(out, fy, y, inp, act, residual, rate, seed, step, layer):
    if y.shape[0] * y.shape[1] * ELEMENT_COST >= PARALLEL_MIN_WORK:
        _hidden_output_mt(out, fy, y, inp, act, residual, rate, seed, step, layer)
    else:
        _hidden_output_1t(out, fy, y, inp, act, residual, rate, seed, step, layer)


@njit(**JIT)
def hidden_output_backward(dy, dskip, dout, fy, act, residual, rate, seed, step, layer):
    if dout.shape[0] * dout.shape[1] * ELEMENT_COST >= PARALLEL_MIN_WORK:
        _hidden_output_backward_mt(dy, dskip, dout, fy, act, residual, rate, seed, step, layer)
    else:
        _hidden_output_backward_1t(dy, dskip, dout, fy, act, residual, rate, seed, step, layer)
