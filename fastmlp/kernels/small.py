"""Training steps for tiny networks, such as the article's XOR net: one loop nest per step.

A step of the seed XOR network (2-4-1, four samples) is about 110 multiply-adds and 20
exponentials. Through the layer kernels (``network.train_blocked``) it costs ~1.6 us, nearly all of
it spent calling them and making their array views, not computing. Here the whole step is one
function over one flat workspace: forward, ``output.loss_row``, backward and the optimizer's update
(``optim.update_rows_inline``) are inlined into it.

The activations are stored feature-major, one row of ``padded_rows(bmax)`` samples per unit (bmax
rounded up to a multiple of 4), so that the loops of a layer run over four samples at once, and an
activation function or its derivative is one loop over a whole layer, with its choice (``act``)
made once, outside the loop; the sigmoid's loop vectorises (see ``activations.exp``). Rows past the
batch's ``rows`` samples are padding: their inputs and their dL/dz are zero, so they add exactly
zero to every gradient. (Measured on the XOR run, ns per step: 420 with the samples as rows; 290-335
feature-major; 228 indexing rows of a matrix rather than the flat buffer at offsets (``_grid``);
209-214 with the polynomial exponential; 190 with the output's sigmoid taken over the whole batch;
185 with each activation's loop run over whole vectors, ``_vector_span``.)

Workspace (``workspace_size``): a matrix of R = padded_rows(bmax) columns (``_grid``), one row per
unit, with widest = the widest layer (inputs and outputs) and K = the output width; its rows:
    region l    fan_in[l] rows  layer l's input: region 0 the gathered batch, region l the
                                activations of layer l - 1
    region L    K rows          the network's output: z, the pre-activations
    delta_a, delta_b  widest rows each: dL/dz of the layer being back-propagated, ping-ponged
The parameters are in the Model's layout: layer l's W (fan_in, fan_out) at W_OFF, row-major, b at
B_OFF; grads and the optimizer state the same.

Only plain networks come here (no batch normalization, residual or dropout): ``use_small``
decides. Everything runs on one thread, in a fixed order, so results do not depend on the thread
count.
"""

import numpy as np
from numba import njit

from .activations import SIGMOID
from .activations import activate_range, activation_grad_range
from .checks import nonfinite_in
from .config import ACT, B_OFF, FAN_IN, FAN_OUT, FLAGS, JIT, W_OFF, WIDE_REGISTERS
from .optim import update_rows_inline
from .output import MSE, SOFTMAX, batch_weight, loss_row, output_row
from .output import SIGMOID as OUT_SIGMOID

# A step of at most this many multiply-adds (batch x weights) takes the small path. Measured with
# bench/test_bench_small.py (ms per 2,000 float64 steps, small vs blocked): 2-4-1 at batch 4
# (48 multiply-adds), 0.53 vs 4.21; 2-16-1 at batch 4 (192), 1.06 vs 4.87; 4-16-3 at batch 4 (448),
# 2.07 vs 5.32; 2-64-1 at batch 4 (768), 3.12 vs 6.95; 2-16-1 at batch 16 (768), 2.86 vs 7.06;
# 2-128-1 at batch 4 (1,024), 5.86 vs 9.98; 2-64-1 at batch 16 (2,048), 8.28 vs 12.45; 4-32-2 at
# batch 16 (3,072), 8.85 vs 10.34, but 8-32-4 at batch 8 (3,072), 9.44 vs 8.80; 2-64-1 at batch 32
# (4,096), 16.2 vs 21.4, but 4-32-4 at batch 16 (4,096), 14.0 vs 11.8; 8-32-4 at batch 16 (6,144),
# 17.2 vs 12.9. The loops here are scalar over the units: past two to four thousand multiply-adds,
# sooner for wider layers, the blocked kernels' register tiles win.
SMALL_MAX_WORK = 2048


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
    # The rows as ``_regions`` counts them, counted again in Python: compiling _regions for this
    # call cost 0.26 s.
    rows = int(layout[:, FAN_IN].sum()) + K + 2 * widest
    return int(padded_rows(bmax)) * rows


@njit(inline="always", **JIT)
def _regions(layout):
    """First rows (of R samples each) of the output region z and of delta_a, delta_b, and the
    number of rows in all."""
    L = layout.shape[0]
    K = layout[L - 1, FAN_OUT]
    z, widest = 0, K
    for l in range(L):
        z += layout[l, FAN_IN]
        widest = max(widest, layout[l, FAN_IN])
    return z, z + K, z + K + widest, z + K + 2 * widest


# The workspace is seen as a matrix of R columns (``_grid``): unit u of the region starting at row
# r is row r + u, and every loop over samples indexes a row with a column counted up from 0. numba
# turns a negative index into one from the end, and the compiler drops that test only where it can
# prove the index is >= 0; on a flat buffer at an offset known only at run time it stayed in every
# access, and kept the loops scalar (the 16 hidden sigmoids of the XOR network: 6.3 instead of 2.2
# ns each).


@njit(inline="always", **JIT)
def _grid(ws, rows, R):
    """ws[:rows * R] as a (rows, R) matrix (made once per call: a reshape costs a call into numba's
    runtime)."""
    return ws[:rows * R].reshape((rows, R))


@njit(inline="always", **JIT)
def _vector_span(ws, start, n):
    """ws[start:start + n], a region of whole unit rows about to go through an element-wise
    activation, extended to a multiple of 8 elements. LLVM vectorises those loops 8 float64 at a
    time with AVX-512 and runs what is left one element at a time: the XOR network's 4 outputs had
    all their exponentials scalar (~13 % of a step). A region's length is a multiple of 4 (R is),
    so this adds at most 4 elements, and those lie in the region that follows, which the step writes
    in full afterwards: the next layer's output, or, after the output region, delta_a. (XOR, ns per
    step, best of 40 calls of the two kernels alternating in one process: 185 instead of 195, and
    202 instead of 211 in a slower spell; the same bits.)"""
    return ws[start:start + (n + 7) // 8 * 8]


@njit(inline="always", **JIT)
def _combine4(y, n, init, params, c, stride, rows):
    """y[n:n+4] <- init + sum over t of params[c + t * stride] * rows[t, n:n+4]: four samples of one
    unit as a combination of the T rows of ``rows`` (T, R), the four sums sharing each coefficient."""
    s0 = s1 = s2 = s3 = init
    for t in range(rows.shape[0]):
        ct = params[c + t * stride]
        x = rows[t]
        s0 += ct * x[n]
        s1 += ct * x[n + 1]
        s2 += ct * x[n + 2]
        s3 += ct * x[n + 3]
    y[n], y[n + 1], y[n + 2], y[n + 3] = s0, s1, s2, s3


@njit(inline="always", **JIT)
def _dot_samples_loop(x, e):
    """x (R,) . e (R,): a weight's gradient, summed over the batch's samples, as one loop."""
    s = 0.0
    for n in range(x.shape[0]):
        s += x[n] * e[n]
    return s


@njit(inline="always", **JIT)
def _dot_samples_4(x, e):
    """``_dot_samples_loop`` for R a multiple of 4, as four running sums, one per sample of each
    group of four, written out."""
    s0 = s1 = s2 = s3 = 0.0
    for n in range(0, x.shape[0], 4):
        s0 += x[n] * e[n]
        s1 += x[n + 1] * e[n + 1]
        s2 += x[n + 2] * e[n + 2]
        s3 += x[n + 3] * e[n + 3]
    return (s0 + s1) + (s2 + s3)


# With AVX-512 the loop, as LLVM vectorises it; with AVX2 the four sums: there LLVM vectorised and
# unrolled the loop so that its main body needed more samples than a small batch has, and ran its
# scalar remainder instead (the XOR network with AVX2, ns per step: through fit, 468-502 with the
# loop, 346-374 with the four sums; the two kernels alternating in one process, 382 and 322. With
# AVX-512, blocks of four samples had measured 250-251 ns per step against the loop's 190.) Chosen
# here, in Python, as dense._dot_tile is.
_dot_samples = _dot_samples_loop if WIDE_REGISTERS else _dot_samples_4


@njit(inline="always", **JIT)
def _forward(g, ws, params, layout):
    """Region l + 1 (O, R) <- act(W.T (O, I) @ region l (I, R) + b) for every layer l, from the
    input in region 0 up to the output region, which ends up holding z: four samples of a unit at a
    time, the four sums sharing each weight. g: the workspace ws as (rows, R)."""
    R = g.shape[1]
    a = 0
    for l in range(layout.shape[0]):
        I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
        w, b = layout[l, W_OFF], layout[l, B_OFF]
        o = a + I  # first row of this layer's output region
        inp, out = g[a:o], g[o:o + O]
        for j in range(O):  # unit j's weights: column j of W, params[w + j], params[w + O + j], ...
            for n in range(0, R, 4):
                _combine4(out[j], n, params[b + j], params, w + j, O, inp)
        activate_range(_vector_span(ws, o * R, O * R), layout[l, ACT])  # the output layer's is IDENTITY
        a = o


@njit(inline="always", **JIT)
def _backward(grads, params, g, ws, layout, d, other, top):
    """Gradients of every layer, from dL/dz of the last (K, R) in rows d.. of the workspace g
    (rows, R): layer l's dL/dz (O, R) in one delta region gives dW (I, O) = its input (I, R) @
    dL/dz.T, db = dL/dz summed over the samples, and, through W and the activation derivative of
    layer l - 1, that layer's dL/dz (I, R) = (W @ dL/dz) * f'(its output) in the other region.
    ``top``: the output region's first row, where layer L - 1's input region ends."""
    R = g.shape[1]
    a = top
    for l in range(layout.shape[0] - 1, -1, -1):
        I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
        w, b = layout[l, W_OFF], layout[l, B_OFF]
        a -= I  # this layer's input region: rows a .. a + I
        inp, dz = g[a:a + I], g[d:d + O]
        for k in range(I):
            x = inp[k]
            for j in range(O):
                grads[w + k * O + j] = _dot_samples(x, dz[j])
        for j in range(O):
            e = dz[j]
            s = 0.0
            for n in range(R):
                s += e[n]
            grads[b + j] = s
        if l > 0:
            dinp = g[other:other + I]
            for k in range(I):  # input unit k's coefficients: row k of W, params[w + k O + j]
                for n in range(0, R, 4):
                    _combine4(dinp[k], n, 0.0, params, w + k * O, 1, dz)
            activation_grad_range(ws[other * R:(other + I) * R], ws[a * R:(a + I) * R], layout[l - 1, ACT])
            d, other = other, d


@njit(inline="always", **JIT)
def _gather(g, X, idx, lo, rows):
    """Region 0 (I0, R) of the workspace g (rows, R) <- the batch's inputs, transposed: X[idx].T,
    or X[lo:lo + rows].T when idx is empty; zeros in the padding samples."""
    for k in range(X.shape[1]):
        x = g[k]
        if idx.shape[0] > 0:
            for n in range(rows):
                x[n] = X[idx[n], k]
        else:
            for n in range(rows):
                x[n] = X[lo + n, k]
        for n in range(rows, g.shape[1]):
            x[n] = 0.0


@njit(**dict(JIT, _nrt=False))
def train_small(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, hyper, step0):
    """``network.train_batches`` for a network that ``use_small`` accepts, with params, grads and
    opt_state in the Model's layout (nothing to transpose): same arguments, less the extras'. ws is
    ``workspace_size(layout, bmax)`` long (at least)."""
    # (Compiled without numba's reference counting, "_nrt": it allocates nothing and keeps no
    # array, and the counts on every view taken here and on every array handed to an inlined
    # helper took ~50 of ~460 ns per step of the XOR run.)
    K = layout[layout.shape[0] - 1, FAN_OUT]
    R = padded_rows(bmax)
    z, delta_a, delta_b, total_rows = _regions(layout)
    g = _grid(ws, total_rows, R)
    out = ws[z * R:(z + K) * R]  # z (K, R), flat: output j of sample n at j * R + n
    delta = ws[delta_a * R:(delta_a + K) * R]  # dL/dz, the same way
    p, dp = params[:n_trainable].reshape((1, n_trainable)), grads[:n_trainable].reshape((1, n_trainable))
    # An element-wise output transform under mse (the XOR network's sigmoid) is applied to the whole
    # output region at once, before the per-sample loss: 190 instead of 214 ns per XOR step, since
    # one sample's lone exponential otherwise waits on its own chain of operations.
    transformed = out_code != SOFTMAX and loss_code == MSE
    for t in range(bounds.shape[0] - 1):
        idx = order[bounds[t]:bounds[t + 1]]
        rows = idx.shape[0]
        _gather(g, X, idx, 0, rows)
        _forward(g, ws, params, layout)

        # output transform and loss, sample by sample (see output.py), down the columns of the
        # output region
        denom = batch_weight(idx, weights)
        if transformed and out_code == OUT_SIGMOID:
            activate_range(_vector_span(ws, z * R, K * R), SIGMOID)
        total = 0.0
        for n in range(rows):
            total += loss_row(delta, n, out, n, K, idx[n], y_int, y_float, weights, denom, out_code,
                              loss_code, R, transformed)
        batch_losses[t] = total / denom
        for j in range(K):
            dz = g[delta_a + j]
            for n in range(rows, R):
                dz[n] = 0.0

        _backward(grads, params, g, ws, layout, delta_a, delta_b, z)
        update_rows_inline(p, dp, opt_state, 0, hyper, opt, lrs[t], step0 + t + 1, 0, 1)


@njit(**dict(JIT, _nrt=False))
def predict_small(out, params, ws, X, layout, out_code, bmax):
    """``network.predict_batches`` for a network that ``use_small`` accepts: out (N, K) <- the
    outputs for X (N, I0), bmax rows at a time; False, with out incomplete, if X holds a NaN or an
    infinity."""
    N, K = X.shape[0], out.shape[1]
    R = padded_rows(bmax)
    z, _, _, total_rows = _regions(layout)
    g = _grid(ws, total_rows, R)
    zs = ws[z * R:(z + K) * R]
    for lo in range(0, N, bmax):
        rows = min(bmax, N - lo)
        if nonfinite_in(X, lo, lo + rows):
            return False
        _gather(g, X, layout[0, :0], lo, rows)  # (no index array: rows lo, lo + 1, ...)
        _forward(g, ws, params, layout)
        for n in range(rows):
            output_row(zs, n, K, out_code, R)
            for j in range(K):
                out[lo + n, j] = zs[j * R + n]
    return True
