"""Training steps for tiny networks, such as the article's XOR net: one loop nest per step.

A step of the seed XOR network (2-4-1, four samples) is about 110 multiply-adds and 20
exponentials. Through the layer kernels (``network.train_blocked``) it costs ~1.6 us, nearly all of
it spent calling them and making their array views, not computing. Here the whole step is one
function over flat buffers: forward, ``output.loss_row`` and backward are inlined into it, and the
optimizer's update (``optim.update_rows``) is inlined too.

The buffers are those of ``network.train_batches``, used directly:
    params (P,)   the Model's layout: layer l's W (fan_in, fan_out) at W_OFF, row-major, b at B_OFF
    grads  (P,)   the same layout
    ws            the workspace (``network.workspace_size``): region l (bmax, fan_in[l]) for each
                  layer's input, the output region (bmax, K), then delta_a and delta_b (bmax, widest)
Indices are computed from offsets: region l's [n, k] is ws[start_l + n * fan_in[l] + k].

Only plain networks come here (no batch normalization, residual or dropout): ``use_small``
decides. The sums run in a fixed order on one thread, so results do not depend on the thread count.
"""

import numpy as np
from numba import njit

from .activations import activate, activation_grad
from .config import ACT, B_OFF, FAN_IN, FAN_OUT, FLAGS, JIT, W_OFF
from .optim import update_rows
from .output import batch_weight, loss_row, output_row

# A step of at most this many multiply-adds (batch x weights) takes the small path. Measured with
# bench/test_bench_small.py (ms per 2,000 float64 steps, small vs blocked): 2-4-1 at batch 4
# (48 multiply-adds), 0.98 vs 3.35; 2-16-1 at batch 4 (192), 2.23 vs 3.82; 2-4-1 at batch 16 (192),
# 3.62 vs 4.80; 4-16-3 at batch 4 (448), 4.08 vs 4.50; 2-64-1 at batch 4 (768), 6.50 vs 5.70;
# 2-16-1 at batch 16 (768), 8.53 vs 6.37. The loops here are scalar: past a few hundred
# multiply-adds the blocked kernels' register tiles win.
SMALL_MAX_WORK = 512


def use_small(layout, bmax):
    """True if steps of ``bmax`` rows through this network take the small path: a plain network (no
    layer flagged for batch normalization, residual or dropout) doing little work. (Called from
    Python, before any kernel: a network that takes the small path never compiles the others.)"""
    layout = np.asarray(layout)
    if layout[:, FLAGS].any():
        return False
    return bmax * int((layout[:, FAN_IN] * layout[:, FAN_OUT]).sum()) <= SMALL_MAX_WORK


@njit(inline="always", **JIT)
def _forward(ws, params, layout, bmax, rows):
    """Region l + 1 (rows, O) <- act(region l (rows, I) @ W (I, O) + b (O,)) for every layer l, from
    the input rows in region 0 up to the output region, which ends up holding z."""
    a_start = 0
    for l in range(layout.shape[0]):
        I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
        w, b, act = layout[l, W_OFF], layout[l, B_OFF], layout[l, ACT]
        out_start = a_start + bmax * I
        for n in range(rows):
            for j in range(O):
                s = params[b + j]
                for k in range(I):
                    s += ws[a_start + n * I + k] * params[w + k * O + j]
                ws[out_start + n * O + j] = activate(s, act)
        a_start = out_start


@njit(inline="always", **JIT)
def output_start(layout, bmax):
    """Offset of the output region in the workspace (network.py's layout), and the widest layer
    width, which sizes the delta buffers that follow it."""
    L = layout.shape[0]
    start, widest = 0, layout[L - 1, FAN_OUT]
    for l in range(L):
        start += bmax * layout[l, FAN_IN]
        widest = max(widest, layout[l, FAN_IN])
    return start, widest


# Numba counts references to every array handed to a helper, the inlined ones too: an atomic add on
# the way in and another on the way out. A step of the XOR network hands arrays to helpers some 20
# times, and these counts alone took ~50 of its ~460 ns (measured: 415 ns per step without them).
# The small kernels allocate nothing and keep no array beyond the call, so they are compiled
# without reference counting (numba's "_nrt" option off); the helpers they call keep their own.
SMALL_JIT = dict(JIT, _nrt=False)


@njit(**SMALL_JIT)
def train_small(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, hyper, step0):
    """``network.train_batches`` for a network that ``use_small`` accepts, with params, grads and
    opt_state in the Model's layout (nothing to transpose): same arguments, less the extras'."""
    L = layout.shape[0]
    K = layout[L - 1, FAN_OUT]
    z_start, widest = output_start(layout, bmax)  # the output region: z, then the outputs (B, K)
    delta_start = z_start + bmax * K  # delta_a, then delta_b, each (bmax, widest)
    I0 = layout[0, FAN_IN]
    for t in range(bounds.shape[0] - 1):
        idx = order[bounds[t]:bounds[t + 1]]
        rows = idx.shape[0]
        for n in range(rows):  # region 0 <- X[idx]
            for k in range(I0):
                ws[n * I0 + k] = X[idx[n], k]

        _forward(ws, params, layout, bmax, rows)

        # output transform and loss: delta_a (rows, K) <- dL/dz (see output.py)
        denom = batch_weight(idx, weights)
        total = 0.0
        for n in range(rows):
            total += loss_row(ws, delta_start + n * K, ws, z_start + n * K, K, idx[n], y_int, y_float,
                              weights, denom, out_code, loss_code)
        batch_losses[t] = total / denom

        # backward: layer l's dL/dz (rows, O) in one delta buffer gives its gradients and, through
        # W and the activation derivative of layer l - 1, that layer's dL/dz in the other
        d_start, other = delta_start, delta_start + bmax * widest
        a_start = z_start
        for l in range(L - 1, -1, -1):
            I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
            w, b = layout[l, W_OFF], layout[l, B_OFF]
            a_start -= bmax * I  # region l: this layer's input (rows, I)
            for k in range(I):  # dW (I, O) = inp.T @ dz
                for j in range(O):
                    s = 0.0
                    for n in range(rows):
                        s += ws[a_start + n * I + k] * ws[d_start + n * O + j]
                    grads[w + k * O + j] = s
            for j in range(O):  # db (O,) = dz summed over the batch
                s = 0.0
                for n in range(rows):
                    s += ws[d_start + n * O + j]
                grads[b + j] = s
            if l > 0:  # dz of layer l - 1 (rows, I) = (dz @ W.T) * f'(its output)
                below = layout[l - 1, ACT]
                for n in range(rows):
                    for k in range(I):
                        s = 0.0
                        for j in range(O):
                            s += ws[d_start + n * O + j] * params[w + k * O + j]
                        ws[other + n * I + k] = s * activation_grad(ws[a_start + n * I + k], below)
                d_start, other = other, d_start
        update_rows(params[:n_trainable].reshape((1, n_trainable)),
                    grads[:n_trainable].reshape((1, n_trainable)), opt_state, hyper, opt, lrs[t],
                    step0 + t + 1, 0, 1)


@njit(**SMALL_JIT)
def predict_small(out, params, ws, X, layout, out_code, bmax):
    """``network.predict_batches`` for a network that ``use_small`` accepts: out (N, K) <- the
    outputs for X (N, I0), bmax rows at a time."""
    K = out.shape[1]
    I0 = layout[0, FAN_IN]
    z_start, _ = output_start(layout, bmax)
    for lo in range(0, X.shape[0], bmax):
        rows = min(bmax, X.shape[0] - lo)
        for n in range(rows):
            for k in range(I0):
                ws[n * I0 + k] = X[lo + n, k]
        _forward(ws, params, layout, bmax, rows)
        for n in range(rows):
            output_row(ws, z_start + n * K, K, out_code)
            for j in range(K):
                out[lo + n, j] = ws[z_start + n * K + j]
