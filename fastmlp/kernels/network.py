"""Whole-network passes built from the layer kernels.

The network is described by ``layout``, an int64 array of shape (L, 5), one row per layer:
    layout[l] = (fan_in, fan_out, offset of W in params, offset of b in params, activation code)
The last layer's activation is IDENTITY: its output transform (softmax, sigmoid, identity) is
applied by ``output.py`` together with the loss.

Every array the kernels need is passed in, so a call allocates nothing. The workspace ``ws`` is one
flat buffer, carved into views (``workspace_size`` gives its length for a largest batch ``bmax``):
    region 0          (bmax, fan_in[0])    the gathered input batch
    region l, l >= 1  (bmax, fan_in[l])    the activations of layer l-1 (= the input of layer l)
    region L          (bmax, fan_out[L-1]) the network's output
    delta_a, delta_b  (bmax, widest)       dL/dz of the layer being back-propagated, ping-ponged
    sample_loss       (bmax,)              each sample's loss
    trans_a, trans_b  (widest, bmax)       transposed copies of inp and dout for the weight gradient
    WT_l              (fan_out, fan_in)    each layer's weights transposed, for the blocked forward
                                           pass; refreshed from params after every update
"""

from numba import njit, prange

from .activations import IDENTITY
from .config import JIT, PARALLEL_MIN_WORK, jit_pair
from .dense import BLOCKED_MIN_ROWS, dense_backward, dense_forward, transpose
from .optim import optimizer_step
from .output import output_forward, output_loss_backward

FAN_IN, FAN_OUT, W_OFF, B_OFF, ACT = range(5)


def workspace_size(layout, bmax):
    """Length of the flat workspace for batches of at most ``bmax`` samples."""
    widths = [int(r[FAN_IN]) for r in layout] + [int(layout[-1][FAN_OUT])]
    n_weights = sum(int(r[FAN_IN]) * int(r[FAN_OUT]) for r in layout)
    return bmax * (sum(widths) + 4 * max(widths) + 1) + n_weights


@njit(inline="always", **JIT)
def _region(ws, layout, bmax, i, rows):
    """View of activation region i (see the module docstring) with ``rows`` rows."""
    L = layout.shape[0]
    start = 0
    for m in range(i):
        start += bmax * layout[m, FAN_IN]
    width = layout[i, FAN_IN] if i < L else layout[L - 1, FAN_OUT]
    return ws[start:start + rows * width].reshape((rows, width))


@njit(inline="always", **JIT)
def _scratch_start(layout, bmax):
    """Offset in ws where delta_a begins, and the widest layer width."""
    L = layout.shape[0]
    start = bmax * layout[L - 1, FAN_OUT]
    widest = layout[L - 1, FAN_OUT]
    for m in range(L):
        start += bmax * layout[m, FAN_IN]
        widest = max(widest, layout[m, FAN_IN])
    return start, widest


@njit(inline="always", **JIT)
def _delta(ws, layout, bmax, which, rows, width):
    """View of delta_a (which=0) or delta_b (which=1) with shape (rows, width)."""
    start, widest = _scratch_start(layout, bmax)
    start += which * bmax * widest
    return ws[start:start + rows * width].reshape((rows, width))


@njit(inline="always", **JIT)
def _sample_loss(ws, layout, bmax, rows):
    """View of sample_loss, shape (rows,)."""
    start, widest = _scratch_start(layout, bmax)
    start += 2 * bmax * widest
    return ws[start:start + rows]


@njit(inline="always", **JIT)
def _trans(ws, layout, bmax, which, width, rows):
    """View of trans_a (which=0) or trans_b (which=1) with shape (width, rows)."""
    start, widest = _scratch_start(layout, bmax)
    start += 2 * bmax * widest + bmax + which * bmax * widest
    return ws[start:start + width * rows].reshape((width, rows))


@njit(inline="always", **JIT)
def _weights_t(ws, layout, bmax, l):
    """View of WT_l, layer l's weights transposed, shape (fan_out, fan_in)."""
    start, widest = _scratch_start(layout, bmax)
    start += 4 * bmax * widest + bmax + layout[l, W_OFF]  # weights come first in params
    I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
    return ws[start:start + I * O].reshape((O, I))


@njit(**JIT)
def refresh_transposed(params, ws, layout, bmax):
    """WT_l <- W_l.T for every layer (after the weights changed)."""
    for l in range(layout.shape[0]):
        W, _ = _weights(params, layout, l)
        transpose(_weights_t(ws, layout, bmax, l), W)


@njit(inline="always", **JIT)
def _weights(params, layout, l):
    """(W, b) of layer l as views into the flat parameter buffer: W (fan_in, fan_out), b (fan_out,)."""
    I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
    W = params[layout[l, W_OFF]:layout[l, W_OFF] + I * O].reshape((I, O))
    b = params[layout[l, B_OFF]:layout[l, B_OFF] + O]
    return W, b


def _gather_rows(dst, src, idx):
    for r in prange(idx.shape[0]):
        dst[r, :] = src[idx[r], :]


_gather_rows_mt, _gather_rows_1t = jit_pair(_gather_rows)


@njit(**JIT)
def gather_rows(dst, src, idx):
    """dst[r, :] = src[idx[r], :] for r < len(idx).   dst (B, D), src (N, D), idx (B,)"""
    if idx.shape[0] * src.shape[1] >= PARALLEL_MIN_WORK:
        _gather_rows_mt(dst, src, idx)
    else:
        _gather_rows_1t(dst, src, idx)


@njit(**JIT)
def forward_layers(params, ws, layout, bmax, rows):
    """Run the hidden and last dense layers on region 0; return the last layer's view (rows, K)
    holding pre-activations z."""
    L = layout.shape[0]
    for l in range(L):
        W, b = _weights(params, layout, l)
        dense_forward(_region(ws, layout, bmax, l + 1, rows), _region(ws, layout, bmax, l, rows),
                      W, _weights_t(ws, layout, bmax, l), b, layout[l, ACT])
    return _region(ws, layout, bmax, L, rows)


@njit(**JIT)
def backward_layers(grads, params, ws, layout, bmax, rows):
    """Back-propagate from delta_a (rows, K) = dL/dz of the last layer; write every layer's
    dW and db into ``grads`` (same layout as params)."""
    L = layout.shape[0]
    which = 0
    for l in range(L - 1, -1, -1):
        I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
        W, b = _weights(params, layout, l)
        dW, db = _weights(grads, layout, l)
        dout = _delta(ws, layout, bmax, which, rows, O)
        # The first layer's input is data: there is no gradient to pass further down.
        dinp = _delta(ws, layout, bmax, 1 - which, rows if l > 0 else 0, I)
        below_act = layout[l - 1, ACT] if l > 0 else IDENTITY
        dense_backward(dinp, dW, db, dout, _region(ws, layout, bmax, l, rows), W,
                       _trans(ws, layout, bmax, 0, I, rows), _trans(ws, layout, bmax, 1, O, rows),
                       below_act)
        which = 1 - which


@njit(**JIT)
def train_batches(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                  layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, hyper, step0):
    """Mini-batch training over a sequence of batches, all in one compiled call.

    batch_losses (T,)    out: each batch's mean loss, measured before its update
    params       (P,)    in/out: all weights and biases (see ``_weights``)
    grads        (P,)    workspace: the current batch's gradient
    ws                   workspace, ``workspace_size(layout, bmax)`` long
    X            (N, I0) inputs
    y_int        (N,)    integer labels (softmax + cross_entropy); y_float (N, K) otherwise
    weights      (N,)    sample weights (the loss is their weighted mean), or empty
    order        (M,)    sample indices; batch t is order[bounds[t]:bounds[t + 1]]
    bounds       (T + 1,)
    lrs          (T,)    learning rate of each step
    n_trainable          params[:n_trainable] are updated (the biases of a bias-free model,
                         stored after all weights, are not)
    opt, opt_state (S, n_trainable), hyper (6,), step0: the optimizer (see ``optim.py``) and the
                         number of updates it made before this call
    """
    blocked = bmax >= BLOCKED_MIN_ROWS  # the blocked forward pass reads WT: keep it current
    if blocked:
        refresh_transposed(params, ws, layout, bmax)
    for t in range(bounds.shape[0] - 1):
        idx = order[bounds[t]:bounds[t + 1]]
        rows = idx.shape[0]
        gather_rows(_region(ws, layout, bmax, 0, rows), X, idx)
        z = forward_layers(params, ws, layout, bmax, rows)
        K = z.shape[1]
        delta = _delta(ws, layout, bmax, 0, rows, K)
        sample_loss = _sample_loss(ws, layout, bmax, rows)
        batch_losses[t] = output_loss_backward(delta, sample_loss, z, idx, y_int, y_float, weights,
                                               out_code, loss_code)
        backward_layers(grads, params, ws, layout, bmax, rows)
        optimizer_step(params[:n_trainable], grads[:n_trainable], opt_state, hyper, opt, lrs[t],
                       step0 + t + 1)
        if blocked:
            refresh_transposed(params, ws, layout, bmax)


@njit(**JIT)
def predict_batches(out, params, ws, X, layout, out_code, bmax):
    """out (N, K) <- the network's outputs for X (N, I0), bmax rows at a time."""
    N = X.shape[0]
    refresh_transposed(params, ws, layout, bmax)
    for lo in range(0, N, bmax):
        hi = min(lo + bmax, N)
        _region(ws, layout, bmax, 0, hi - lo)[:, :] = X[lo:hi]
        z = forward_layers(params, ws, layout, bmax, hi - lo)
        output_forward(z, out_code)
        out[lo:hi] = z
