"""The output layer's transform fused with its loss: forward value, loss, and dL/dz in one pass.

Pairs (``output``, ``loss``):
    softmax  + cross_entropy         labels y_int (integer class per sample)
    sigmoid  + binary_cross_entropy  targets y_float in [0, 1], one per output unit
    sigmoid  + mse                   targets y_float
    identity + mse                   targets y_float

Loss conventions (PyTorch's): cross-entropy is the mean over samples of -log p[y]; binary
cross-entropy and mse are means over every element (samples x output units).

For the three *matched* pairs the gradient with respect to the pre-activation z is simply
(output - target), scaled by the mean: the derivative of the loss with respect to the output and
the derivative of the output with respect to z cancel (for softmax + CE, d(-log p_y)/dz_j =
p_j - [j = y]; for sigmoid + BCE, d/dz = p - y; for identity + mse, d/dz = 2 (z - y)). Sigmoid + mse,
the seed article's XOR network, is not matched and keeps the factor p (1 - p).
"""

import math

from numba import njit, prange

from .activations import sigmoid
from .config import JIT, PARALLEL_MIN_WORK, jit_pair

# Output transforms and losses, keyed by name; the Python layer validates names against these.
SOFTMAX = 0
SIGMOID = 1
IDENTITY = 2
OUTPUTS = {"softmax": SOFTMAX, "sigmoid": SIGMOID, "identity": IDENTITY}

CROSS_ENTROPY = 0
BINARY_CROSS_ENTROPY = 1
MSE = 2
LOSSES = {"cross_entropy": CROSS_ENTROPY, "binary_cross_entropy": BINARY_CROSS_ENTROPY, "mse": MSE}


@njit(**JIT)
def _output_row(out, n, out_code):
    """Turn the pre-activations out[n, :] into outputs, in place. Returns log(sum(exp(z - max z)))
    and max z for softmax (the cross-entropy needs them), zeros otherwise."""
    K = out.shape[1]
    if out_code == SOFTMAX:
        m = out[n, 0]
        for j in range(1, K):
            if out[n, j] > m:
                m = out[n, j]
        s = 0.0
        for j in range(K):
            e = math.exp(out[n, j] - m)
            out[n, j] = e
            s += e
        for j in range(K):
            out[n, j] = out[n, j] / s
        return math.log(s), m
    if out_code == SIGMOID:
        for j in range(K):
            out[n, j] = sigmoid(out[n, j])
    return 0.0, 0.0


def _output_forward(out, out_code):
    """out (B, K): pre-activations in, outputs (probabilities for softmax/sigmoid) out, in place."""
    for n in prange(out.shape[0]):
        _output_row(out, n, out_code)


def _output_loss_backward(delta, sample_loss, out, idx, y_int, y_float, weights, denom, out_code,
                          loss_code):
    for n in prange(out.shape[0]):
        _loss_row(delta, sample_loss, out, idx, y_int, y_float, weights, denom, out_code, loss_code, n)


_output_forward_mt, _output_forward_1t = jit_pair(_output_forward)
_output_loss_backward_mt, _output_loss_backward_1t = jit_pair(_output_loss_backward)

# An exp costs roughly this many multiply-adds, for comparing with PARALLEL_MIN_WORK.
EXP_COST = 32


@njit(**JIT)
def output_forward(out, out_code):
    """out (B, K): pre-activations in, outputs (probabilities for softmax/sigmoid) out, in place."""
    if out.shape[0] * out.shape[1] * EXP_COST >= PARALLEL_MIN_WORK:
        _output_forward_mt(out, out_code)
    else:
        _output_forward_1t(out, out_code)


@njit(**JIT)
def output_loss_backward(delta, sample_loss, out, idx, y_int, y_float, weights, out_code, loss_code):
    """Forward transform, per-sample loss, and dL/dz for a batch; returns the batch's loss.

    out         (B, K)  in: pre-activations z of the last layer; out: the outputs (probabilities)
    idx         (B,)    row of each batch sample in y_int / y_float / weights
    y_int       (N,)    integer labels (softmax + cross_entropy), else unused
    y_float     (N, K)  float targets (the other losses), else unused
    weights     (N,)    sample weights, or empty for all ones
    delta       (B, K)  out: dL/dz, where L = sum(w_n loss_n) / sum(w_n) over the batch
                        (the weighted mean, as torch's losses with class weights)
    sample_loss (B,)    out: each sample's weighted loss w_n loss_n (loss_n: mean over outputs)
    """
    B = out.shape[0]
    denom = 1.0 * B
    if weights.shape[0] > 0:
        denom = 0.0
        for n in range(B):
            denom += weights[idx[n]]
        if denom == 0:  # a batch whose samples all weigh 0 contributes nothing
            denom = 1.0
    if B * out.shape[1] * EXP_COST >= PARALLEL_MIN_WORK:
        _output_loss_backward_mt(delta, sample_loss, out, idx, y_int, y_float, weights, denom,
                                 out_code, loss_code)
    else:
        _output_loss_backward_1t(delta, sample_loss, out, idx, y_int, y_float, weights, denom,
                                 out_code, loss_code)
    total = 0.0
    for n in range(B):
        total += sample_loss[n]
    return total / denom


@njit(**JIT)
def _loss_row(delta, sample_loss, out, idx, y_int, y_float, weights, denom, out_code, loss_code, n):
    """One sample of ``output_loss_backward``: scale = w_n / sum(w) turns sums into the mean."""
    K = out.shape[1]
    row = idx[n]
    w = weights[row] if weights.shape[0] > 0 else 1.0
    scale = w / denom
    if loss_code == CROSS_ENTROPY:
        # Read z[y] before the softmax overwrites it: -log p_y = log(sum exp(z - m)) + m - z_y.
        zy = out[n, y_int[row]]
        log_s, m = _output_row(out, n, out_code)
        sample_loss[n] = w * (log_s + m - zy)
        for j in range(K):
            delta[n, j] = out[n, j] * scale
        delta[n, y_int[row]] -= scale
    elif loss_code == BINARY_CROSS_ENTROPY:
        total = 0.0
        for j in range(K):
            z = out[n, j]
            y = y_float[row, j]
            # Stable form of -(y log p + (1 - y) log(1 - p)) with p = sigmoid(z).
            total += max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))
        sample_loss[n] = w * total / K
        _output_row(out, n, out_code)
        for j in range(K):
            delta[n, j] = (out[n, j] - y_float[row, j]) * scale / K
    else:  # MSE, after an identity or sigmoid output
        _output_row(out, n, out_code)
        total = 0.0
        for j in range(K):
            err = out[n, j] - y_float[row, j]
            total += err * err
            g = 2.0 * err * scale / K
            if out_code == SIGMOID:
                g *= out[n, j] * (1.0 - out[n, j])
            delta[n, j] = g
        sample_loss[n] = w * total / K
