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

from numba import njit

from .activations import exp, sigmoid
from .config import JIT

# Output transforms and losses, keyed by name; the Python layer validates names against these.
SOFTMAX = 0
SIGMOID = 1
IDENTITY = 2
OUTPUTS = {"softmax": SOFTMAX, "sigmoid": SIGMOID, "identity": IDENTITY}

CROSS_ENTROPY = 0
BINARY_CROSS_ENTROPY = 1
MSE = 2
LOSSES = {"cross_entropy": CROSS_ENTROPY, "binary_cross_entropy": BINARY_CROSS_ENTROPY, "mse": MSE}


@njit(inline="always", **JIT)
def output_row(out, o, K, out_code, step=1):
    """Turn the pre-activations out[o], out[o + step], ..., out[o + (K - 1) step] (one sample's K
    outputs; step 1 when they are adjacent) into outputs, in place. Returns log(sum(exp(z - max z)))
    and max z for softmax (the cross-entropy needs them), zeros otherwise."""
    if out_code == SOFTMAX:
        m = out[o]
        for j in range(1, K):
            if out[o + j * step] > m:
                m = out[o + j * step]
        s = 0.0
        for j in range(K):
            e = math.exp(out[o + j * step] - m)
            out[o + j * step] = e
            s += e
        for j in range(K):
            out[o + j * step] = out[o + j * step] / s
        return math.log(s), m
    if out_code == SIGMOID:
        for j in range(K):
            out[o + j * step] = sigmoid(out[o + j * step])
    return 0.0, 0.0


@njit(inline="always", **JIT)
def loss_row(delta, d, out, o, K, row, y_int, y_float, weights, denom, out_code, loss_code, step=1,
             transformed=False):
    """One sample's output transform, loss and gradient, on flat buffers.

    out[o:o+K]    in: the sample's pre-activations z; out: its outputs
    delta[d:d+K]  out: scale * dloss/dz, with scale = w / denom (w: the sample's weight, 1 when
                  ``weights`` is empty; denom: ``batch_weight``), which turns sums into the mean
    row           the sample's row in y_int / y_float / weights
    step          where output j is: out[o + j * step], delta[d + j * step] (small.py keeps a
                  unit's samples together, not a sample's outputs)
    transformed   out already holds the outputs (an element-wise output transform applied to a
                  whole batch at once; not for binary_cross_entropy, whose loss is taken from z)
    Returns w * the sample's loss (a mean over its K outputs for binary_cross_entropy and mse).
    """
    w = weights[row] if weights.shape[0] > 0 else 1.0
    scale = w / denom
    zy = out[o + y_int[row] * step] if loss_code == CROSS_ENTROPY else 0.0  # read before softmax
    bce = 0.0
    if loss_code == BINARY_CROSS_ENTROPY:
        for j in range(K):
            # Stable form of -(y log p + (1 - y) log(1 - p)) with p = sigmoid(z).
            z = out[o + j * step]
            bce += max(z, 0.0) - z * y_float[row, j] + math.log1p(math.exp(-abs(z)))
    log_s, m = (0.0, 0.0) if transformed else output_row(out, o, K, out_code, step)
    if loss_code == CROSS_ENTROPY:
        # -log p_y = log(sum exp(z - m)) + m - z_y
        for j in range(K):
            delta[d + j * step] = out[o + j * step] * scale
        delta[d + y_int[row] * step] -= scale
        return w * (log_s + m - zy)
    if loss_code == BINARY_CROSS_ENTROPY:
        for j in range(K):
            delta[d + j * step] = (out[o + j * step] - y_float[row, j]) * scale / K
        return w * (bce / K)
    total = 0.0  # MSE, after an identity or sigmoid output
    for j in range(K):
        err = out[o + j * step] - y_float[row, j]
        total += err * err
        g = 2.0 * err * scale / K
        if out_code == SIGMOID:
            g *= out[o + j * step] * (1.0 - out[o + j * step])
        delta[d + j * step] = g
    return w * (total / K)


@njit(inline="always", **JIT)
def batch_weight(idx, weights):
    """The denominator of a batch's weighted mean loss: the sum of its samples' weights (1 for
    every sample when ``weights`` is empty). A batch whose samples all weigh 0 contributes nothing:
    its denominator is 1, not 0."""
    if weights.shape[0] == 0:
        return 1.0 * idx.shape[0]
    denom = 0.0
    for n in range(idx.shape[0]):
        denom += weights[idx[n]]
    return denom if denom != 0 else 1.0


@njit(**JIT)
def output_forward(out, out_code):
    """out (B, K): pre-activations in, outputs (probabilities for softmax/sigmoid) out, in place.

    The arithmetic of ``output_row``, in three passes over the batch rather than one sample at a
    time, so that the exponentials form one long loop, which vectorises with the polynomial ``exp``
    (a sample's K outputs are too few): softmax of 512 x 10 float32 took 8.5 instead of 19 us (10.5
    on 2 threads sample by sample). One thread: the passes are short, and on two threads it was no
    faster. (Training keeps libm's exp in ``output_row``, one sample at a time: the polynomial there
    was no faster, and perhaps 2-4 % slower per batch-16 epoch, in six alternating pairs.)"""
    B, K = out.shape
    flat = out.reshape(B * K)
    if out_code == SOFTMAX:
        for n in range(B):  # z - max z, per sample
            row = out[n]
            m = row[0]
            for j in range(1, K):
                if row[j] > m:
                    m = row[j]
            for j in range(K):
                row[j] = row[j] - m
        for i in range(B * K):
            flat[i] = exp(flat[i])
        for n in range(B):  # divided by their sum
            row = out[n]
            s = 0.0
            for j in range(K):
                s += row[j]
            for j in range(K):
                row[j] = row[j] / s
    elif out_code == SIGMOID:
        for i in range(B * K):
            flat[i] = sigmoid(flat[i])


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
    B, K = out.shape
    denom = batch_weight(idx, weights)
    flat_delta, flat_out = delta.reshape(B * K), out.reshape(B * K)
    # One thread: a sample of the seed network costs ~70 ns here (batch 1,024: 72 us, ~2 % of a
    # ~3.4 ms step, so a second thread would save ~1 %), and a parallel copy of this loop, with
    # loss_row inlined for every output and loss, cost ~4 s of compiling on a cold start.
    for n in range(B):
        sample_loss[n] = loss_row(flat_delta, n * K, flat_out, n * K, K, idx[n], y_int, y_float, weights,
                                  denom, out_code, loss_code)
    total = 0.0
    for n in range(B):
        total += sample_loss[n]
    return total / denom
