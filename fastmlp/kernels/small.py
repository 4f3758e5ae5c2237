"""Training steps for tiny networks, such as the article's XOR net: one loop nest per step.

A step of the seed XOR network (2-4-1, four samples) is about 110 multiply-adds and 20
exponentials. Through the layer kernels (``network.train_blocked``) it costs ~1.6 us, nearly all of
it spent calling them and making their array views, not computing. Here the whole step is one
function over one flat workspace: forward, ``output.loss_row``, backward and the optimizer's update
(``optim.update_rows``) are inlined into it.

The activations are stored feature-major, one row of ``padded_rows(bmax)`` samples per unit (bmax
rounded up to a multiple of 4), so that the loops of a layer run over four samples at once, and an
activation function or its derivative is one loop over a whole layer, with its choice (``act``)
made once, outside the loop. (Measured on the XOR run: 290 instead of 420 ns per step, when the
samples were the rows.) Rows past the batch's ``rows`` samples are padding: their inputs and their
dL/dz are zero, so they add exactly zero to every gradient.

Workspace (``workspace_size``), with R = padded_rows(bmax), widest = the widest layer (inputs and
outputs), K = the output width; region [u, n] is unit u of sample n:
    region l    (fan_in[l], R)  layer l's input: region 0 the gathered batch, region l the
                                activations of layer l - 1
    region L    (K, R)          the network's output: z, the pre-activations
    delta_a, delta_b (widest, R)  dL/dz of the layer being back-propagated, ping-ponged
    z_rows, delta_rows (bmax, K)  z and dL/dz sample by sample, for ``output.loss_row``
The parameters are in the Model's layout: layer l's W (fan_in, fan_out) at W_OFF, row-major, b at
B_OFF; grads and the optimizer state the same.

Only plain networks come here (no batch normalization, residual or dropout): ``use_small``
decides. Everything runs on one thread, in a fixed order, so results do not depend on the thread
count.
"""

import numpy as np
from numba import njit

from .activations import activate_range, activation_grad_range
from .config import ACT, B_OFF, FAN_IN, FAN_OUT, FLAGS, JIT, W_OFF
from .optim import update_rows
from .output import batch_weight, loss_row, output_row

# A step of at most this many multiply-adds (batch x weights) takes the small path. Measured with
# bench/test_bench_small.py (ms per 2,000 float64 steps, small vs blocked): 2-4-1 at batch 4
# (48 multiply-adds), 0.70 vs 4.12; 2-16-1 at batch 4 (192), 1.48 vs 4.80; 4-16-3 at batch 4 (448),
# 2.82 vs 5.36; 2-64-1 at batch 4 (768), 4.64 vs 6.79; 2-16-1 at batch 16 (768), 5.42 vs 7.10;
# 2-128-1 at batch 4 (1,024), 8.88 vs 9.89; 2-64-1 at batch 16 (2,048), 17.6 vs 12.6; 4-32-2 at
# batch 16 (3,072), 16.5 vs 10.8. The loops here are scalar over the units: past a thousand or so
# multiply-adds the blocked kernels' register tiles win.
SMALL_MAX_WORK = 1024


def use_small(layout, bmax):
    """True if steps of ``bmax`` rows through this network take the small path: a plain network (no
    layer flagged for batch normalization, residual or dropout) doing little work. (Called from
    Python, before any kernel: a network that takes the small path never compiles the others.)"""
    layout = np.asarray(layout)
    if layout[:, FLAGS].any():
        return False
    return bmax * int((layout[:, FAN_IN] * layout[:, FAN_OUT]).sum()) <= SMALL_MAX_WORK


@njit(inline="always", **JIT)
def padded_rows(bmax):
    """Samples per unit row in the workspace: bmax rounded up to a multiple of 4. (Compiled, so
    that ``workspace_size`` in Python and the kernels share this one formula.)"""
    return (bmax + 3) // 4 * 4


def workspace_size(layout, bmax):
    """Length of the small path's workspace (see the module docstring) for batches of at most bmax."""
    layout = np.asarray(layout)
    K = int(layout[-1, FAN_OUT])
    widest = max(int(layout[:, FAN_IN].max()), K)
    return int(padded_rows(bmax)) * (int(layout[:, FAN_IN].sum()) + K + 2 * widest) + 2 * bmax * K


@njit(inline="always", **JIT)
def _regions(layout, R):
    """Offsets of the output region (z) and of delta_a, delta_b, z_rows, delta_rows in the workspace."""
    L = layout.shape[0]
    K = layout[L - 1, FAN_OUT]
    z, widest = 0, K
    for l in range(L):
        z += R * layout[l, FAN_IN]
        widest = max(widest, layout[l, FAN_IN])
    delta_a = z + R * K
    delta_b = delta_a + R * widest
    z_rows = delta_b + R * widest
    return z, delta_a, delta_b, z_rows


@njit(inline="always", **JIT)
def _combine4(ws, q, init, params, c, stride, src, T, R):
    """ws[q:q+4] <- init + sum over t < T of params[c + t * stride] * ws[src + t * R:][:4]: four
    samples of one unit, as a combination of T unit rows (R samples each) starting at src, the four
    sums sharing each coefficient."""
    s0 = s1 = s2 = s3 = init
    for t in range(T):
        ct = params[c + t * stride]
        p = src + t * R
        s0 += ct * ws[p]
        s1 += ct * ws[p + 1]
        s2 += ct * ws[p + 2]
        s3 += ct * ws[p + 3]
    ws[q] = s0
    ws[q + 1] = s1
    ws[q + 2] = s2
    ws[q + 3] = s3


@njit(inline="always", **JIT)
def _forward(ws, params, layout, R):
    """Region l + 1 (O, R) <- act(W.T (O, I) @ region l (I, R) + b) for every layer l, from the
    input in region 0 up to the output region, which ends up holding z. Unit j's weights are column
    j of W: params[w + j], params[w + O + j], ..."""
    a = 0
    for l in range(layout.shape[0]):
        I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
        w, b = layout[l, W_OFF], layout[l, B_OFF]
        out = a + R * I
        for j in range(O):
            for n in range(0, R, 4):
                _combine4(ws, out + j * R + n, params[b + j], params, w + j, O, a + n, I, R)
        activate_range(ws, out, out + R * O, layout[l, ACT])  # the output layer's is IDENTITY
        a = out


@njit(inline="always", **JIT)
def _input_grad(ws, dst, src, params, w, I, O, R):
    """ws[dst:] (I, R) <- W (I, O) @ ws[src:] (O, R): dL/d(layer input) from dL/dz (before the
    activation derivative). Input unit k's coefficients are row k of W: params[w + k * O + j]."""
    for k in range(I):
        for n in range(0, R, 4):
            _combine4(ws, dst + k * R + n, 0.0, params, w + k * O, 1, src + n, O, R)


@njit(inline="always", **JIT)
def _gather(ws, X, idx, lo, rows, R):
    """Region 0 (I0, R) <- the batch's inputs, transposed: X[idx].T, or X[lo:lo + rows].T when idx
    is empty; zeros in the padding samples."""
    for k in range(X.shape[1]):
        if idx.shape[0] > 0:
            for n in range(rows):
                ws[k * R + n] = X[idx[n], k]
        else:
            for n in range(rows):
                ws[k * R + n] = X[lo + n, k]
        for n in range(rows, R):
            ws[k * R + n] = 0.0


@njit(**dict(JIT, _nrt=False))
def train_small(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, hyper, step0):
    """``network.train_batches`` for a network that ``use_small`` accepts, with params, grads and
    opt_state in the Model's layout (nothing to transpose): same arguments, less the extras'. ws is
    ``workspace_size(layout, bmax)`` long (at least)."""
    # (Compiled without numba's reference counting, "_nrt": it allocates nothing and keeps no
    # array, and the counts on every array handed to an inlined helper took ~50 of ~460 ns per step
    # of the XOR run.)
    L = layout.shape[0]
    K = layout[L - 1, FAN_OUT]
    R = padded_rows(bmax)
    z, delta_a, delta_b, z_rows = _regions(layout, R)
    delta_rows = z_rows + bmax * K
    for t in range(bounds.shape[0] - 1):
        idx = order[bounds[t]:bounds[t + 1]]
        rows = idx.shape[0]
        _gather(ws, X, idx, 0, rows, R)
        _forward(ws, params, layout, R)

        # output transform and loss, sample by sample (see output.py): delta_a (K, R) <- dL/dz
        denom = batch_weight(idx, weights)
        total = 0.0
        for n in range(rows):
            for j in range(K):
                ws[z_rows + n * K + j] = ws[z + j * R + n]
            total += loss_row(ws, delta_rows + n * K, ws, z_rows + n * K, K, idx[n], y_int, y_float,
                              weights, denom, out_code, loss_code)
        batch_losses[t] = total / denom
        for j in range(K):
            for n in range(rows):
                ws[delta_a + j * R + n] = ws[delta_rows + n * K + j]
            for n in range(rows, R):
                ws[delta_a + j * R + n] = 0.0

        # backward: layer l's dL/dz (O, R) in one delta buffer gives its gradients and, through W
        # and the activation derivative of layer l - 1, that layer's dL/dz in the other
        d, other = delta_a, delta_b
        a = z
        for l in range(L - 1, -1, -1):
            I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
            w, b = layout[l, W_OFF], layout[l, B_OFF]
            a -= R * I  # region l: this layer's input (I, R)
            for k in range(I):  # dW (I, O) = input (I, R) @ dz.T (R, O)
                for j in range(O):
                    s = 0.0
                    for n in range(R):
                        s += ws[a + k * R + n] * ws[d + j * R + n]
                    grads[w + k * O + j] = s
            for j in range(O):  # db (O,) = dz summed over the batch
                s = 0.0
                for n in range(R):
                    s += ws[d + j * R + n]
                grads[b + j] = s
            if l > 0:  # dz of layer l - 1 (I, R) = (W @ dz) * f'(its output)
                _input_grad(ws, other, d, params, w, I, O, R)
                activation_grad_range(ws, other, ws, a, I * R, layout[l - 1, ACT])
                d, other = other, d
        update_rows(params[:n_trainable].reshape((1, n_trainable)),
                    grads[:n_trainable].reshape((1, n_trainable)), opt_state, 0, hyper, opt, lrs[t],
                    step0 + t + 1, 0, 1)


@njit(**dict(JIT, _nrt=False))
def predict_small(out, params, ws, X, layout, out_code, bmax):
    """``network.predict_batches`` for a network that ``use_small`` accepts: out (N, K) <- the
    outputs for X (N, I0), bmax rows at a time."""
    N, K = X.shape[0], out.shape[1]
    R = padded_rows(bmax)
    z, _, _, z_rows = _regions(layout, R)
    for lo in range(0, N, bmax):
        rows = min(bmax, N - lo)
        _gather(ws, X, layout[0, :0], lo, rows, R)  # (no index array: rows lo, lo + 1, ...)
        _forward(ws, params, layout, R)
        for n in range(rows):
            for j in range(K):
                ws[z_rows + j] = ws[z + j * R + n]
            output_row(ws, z_rows, K, out_code)
            for j in range(K):
                out[lo + n, j] = ws[z_rows + j]
