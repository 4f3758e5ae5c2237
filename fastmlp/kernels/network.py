"""Whole-network passes built from the layer kernels. (``train_batches`` and ``predict_batches``
send tiny plain networks to ``small.py`` instead, and everything else to ``train_blocked`` and
``predict_blocked`` here.)

The network is described by ``layout``, an int64 array of shape (L, 8), one row per layer:
    fan_in, fan_out, offset of W in params, offset of b in params, activation code,
    offset of gamma in params (beta follows it), offset in the running statistics, flags
The last layer's activation is IDENTITY: its output transform (softmax, sigmoid, identity) is
applied by ``output.py`` together with the loss. ``rates`` (L,) holds each layer's dropout rate.

A hidden layer flagged EXTRAS runs batch normalization, residual connection and dropout
(``layers.py``) between its product and the next layer; then the layer above passes it the raw
gradient dL/d(out) and it applies its own activation derivative. A plain network keeps the fused
path: the activation derivative is folded into the input gradient of the layer above.

Every array the kernels need is passed in, so a call allocates nothing. The workspace ``ws`` is one
flat buffer, carved into views (``workspace_size`` gives its length for a largest batch ``bmax``):
    region 0          (bmax, fan_in[0])    the gathered input batch
    region l, l >= 1  (bmax, fan_in[l])    the activations of layer l-1 (= the input of layer l)
    region L          (bmax, fan_out[L-1]) the network's output
    delta_a, delta_b  (bmax, widest)       dL/dz of the layer being back-propagated, ping-ponged
    sample_loss       (bmax,)              each sample's loss
    work              (P,)                 the parameters while ``train_blocked`` runs (below);
                                           while ``predict_blocked`` runs, what
                                           ``for_prediction`` copies there
    per EXTRAS layer  y, zhat, fy, dskip, dy (bmax, fan_out) and mean, inv_std (fan_out,)

Training works on the transposed layout: ``train_blocked`` copies params into ``work`` with every
weight matrix transposed to (fan_out, fan_in) (``to_transposed``), trains there, and copies back
once at the end, so no step pays for a transpose (see ``dense.py`` for why this layout suits all
three products). Gradients and optimizer state use the same layout while training. Prediction reads
params as they are, but for the layers it computes as dot products (``dense.infers_by_dots``: the
narrow ones, and with AVX2 every one in large calls), whose transposed weights it copies into
``work``.
"""

from numba import njit, prange

from .activations import IDENTITY
from .config import ACT, B_OFF, BN_OFF, FAN_IN, FAN_OUT, FLAGS, JIT, PARALLEL_MIN_WORK, RUN_OFF, W_OFF, jit_pair
from .dense import dense_backward, dense_forward, dense_infer, infers_by_dots, transpose
from .layers import batchnorm_backward, batchnorm_forward, hidden_output, hidden_output_backward
from .optim import update_rows
from .output import output_forward, output_loss_backward
from .small import predict_small, train_small, use_small
from .small import workspace_size as small_workspace_size

# flags
EXTRAS = 1      # batch normalization, residual or dropout follow this hidden layer's product
BATCHNORM = 2
RESIDUAL = 4
AUX_MATRICES = 5  # y, zhat, fy, dskip, dy

# From this many rows per batch, training also keeps params' weights (the Model's layout) current:
# one transpose per layer and step, 25-35 us for 784 x 128 on 2 threads, buys the faster forward
# product (row combinations of W, ``dense_infer``). Measured on the seed network (ms per epoch,
# reading WT / keeping W): batch 128, 207-212 / 227-233; 256, 201-217 / 208-216; 512, 187-202 /
# 199-211; 1024, 201-278 / 195-268. (Before the dot products moved to 4 x 4 tiles aligned on cache
# lines, W paid from batch 128 on: at 256, 260 instead of 381 us for the first layer's forward.)
FORWARD_FROM_W_ROWS = 1024
AUX_VECTORS = 2   # mean, inv_std


def workspace_size(layout, bmax):
    """Length of the flat workspace for batches of at most ``bmax`` samples: long enough for the
    layer kernels' carving (the module docstring) and for the small path's (``small.py``)."""
    widths = [int(r[FAN_IN]) for r in layout] + [int(layout[-1][FAN_OUT])]
    aux = sum((AUX_MATRICES * bmax + AUX_VECTORS) * int(r[FAN_OUT]) for r in layout if r[FLAGS] & EXTRAS)
    blocked = bmax * (sum(widths) + 2 * max(widths) + 1) + int(n_params(layout)) + aux
    return max(blocked, small_workspace_size(layout, bmax))


@njit(inline="always", **JIT)
def output_start(layout, bmax):
    """Offset of the output region in the workspace, and the widest layer width, which sizes the
    delta buffers that follow it."""
    L = layout.shape[0]
    start, widest = 0, layout[L - 1, FAN_OUT]
    for l in range(L):
        start += bmax * layout[l, FAN_IN]
        widest = max(widest, layout[l, FAN_IN])
    return start, widest


@njit(inline="always", **JIT)
def n_params(layout):
    """Length of the flat parameter buffer: the last layer's biases come last."""
    L = layout.shape[0]
    return layout[L - 1, B_OFF] + layout[L - 1, FAN_OUT]


@njit(inline="always", **JIT)
def _n_weights(layout):
    """Length of the weight matrices, which come first in params."""
    L = layout.shape[0]
    return layout[L - 1, W_OFF] + layout[L - 1, FAN_IN] * layout[L - 1, FAN_OUT]


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
    """Offset in ws where delta_a begins (after the output region), and the widest layer width."""
    start, widest = output_start(layout, bmax)
    return start + bmax * layout[layout.shape[0] - 1, FAN_OUT], widest


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
def _work(ws, layout, bmax):
    """View of ``work``, the parameters in the transposed layout, shape (P,)."""
    start, widest = _scratch_start(layout, bmax)
    start += 2 * bmax * widest + bmax
    return ws[start:start + n_params(layout)]


@njit(inline="always", **JIT)
def _aux_start(layout, bmax, l):
    """Offset in ws of layer l's extras buffers."""
    start, widest = _scratch_start(layout, bmax)
    start += 2 * bmax * widest + bmax + n_params(layout)
    for m in range(l):
        if layout[m, FLAGS] & EXTRAS:
            start += (AUX_MATRICES * bmax + AUX_VECTORS) * layout[m, FAN_OUT]
    return start


@njit(inline="always", **JIT)
def _aux(ws, layout, bmax, l, which, rows):
    """Layer l's extras buffer ``which``: 0 y, 1 zhat, 2 fy, 3 dskip, 4 dy, each (rows, fan_out)."""
    O = layout[l, FAN_OUT]
    start = _aux_start(layout, bmax, l) + which * bmax * O
    return ws[start:start + rows * O].reshape((rows, O))


@njit(inline="always", **JIT)
def _aux_vector(ws, layout, bmax, l, which):
    """Layer l's batch-normalization statistics: which 0 mean, 1 inv_std, each (fan_out,)."""
    O = layout[l, FAN_OUT]
    start = _aux_start(layout, bmax, l) + AUX_MATRICES * bmax * O + which * O
    return ws[start:start + O]


@njit(inline="always", **JIT)
def _batchnorm_params(params, layout, l):
    """gamma, beta of layer l (fan_out,) each, views into params (or grads)."""
    O, off = layout[l, FAN_OUT], layout[l, BN_OFF]
    return params[off:off + O], params[off + O:off + 2 * O]


@njit(inline="always", **JIT)
def _running(running, layout, l):
    """running mean, running variance of layer l (fan_out,) each."""
    O, off = layout[l, FAN_OUT], layout[l, RUN_OFF]
    return running[0, off:off + O], running[1, off:off + O]


@njit(inline="always", **JIT)
def _matrix_and_bias(buf, layout, l, rows, cols):
    """Layer l's weight matrix as a (rows, cols) view into a flat buffer, and its biases (fan_out,)."""
    W = buf[layout[l, W_OFF]:layout[l, W_OFF] + rows * cols].reshape((rows, cols))
    b = buf[layout[l, B_OFF]:layout[l, B_OFF] + layout[l, FAN_OUT]]
    return W, b


@njit(inline="always", **JIT)
def _weights(params, layout, l):
    """(W, b) of layer l as views into the flat parameter buffer: W (fan_in, fan_out), b (fan_out,)."""
    return _matrix_and_bias(params, layout, l, layout[l, FAN_IN], layout[l, FAN_OUT])


@njit(inline="always", **JIT)
def _weights_t(work, layout, l):
    """(WT, b) of layer l in the transposed layout: WT (fan_out, fan_in), b (fan_out,)."""
    return _matrix_and_bias(work, layout, l, layout[l, FAN_OUT], layout[l, FAN_IN])


@njit(**JIT)
def _convert(dst, src, layout, to_transposed):
    """dst <- src, every weight matrix transposed: (fan_in, fan_out) -> (fan_out, fan_in) if
    to_transposed, else back; the rest (batch-norm parameters, biases) copied."""
    for l in range(layout.shape[0]):
        W, _ = _weights(src if to_transposed else dst, layout, l)
        WT, _ = _weights_t(dst if to_transposed else src, layout, l)
        if to_transposed:
            transpose(WT, W)
        else:
            transpose(W, WT)
    n = _n_weights(layout)
    dst[n:] = src[n:]


@njit(**JIT)
def to_transposed(dst, src, layout):
    """dst <- src in the transposed layout. src, dst (N,) with N >= the weights' length: a parameter
    buffer, its gradient, or a row of optimizer state (which may stop before bias-free biases)."""
    _convert(dst, src, layout, bool(True))  # (bool(): see predict_blocked)


@njit(**JIT)
def from_transposed(dst, src, layout):
    """The inverse of ``to_transposed``."""
    _convert(dst, src, layout, bool(False))


def _gather_rows(dst, src, idx):
    for r in prange(idx.shape[0]):
        dst[r, :] = src[idx[r], :]


_gather_rows_mt, _gather_rows_1t = jit_pair(_gather_rows)


@njit(**JIT)
def gather_rows(dst, src, idx):
    """dst[r, :] = src[idx[r], :] for r < len(idx).   dst (B, D), src (N, D), idx (B,)"""
    # A copied row mostly waits on memory (rows of X are scattered over the data set); two threads
    # fetching rows overlap those waits. Measured (seed network, Fashion-MNIST): batch 16, 350-360
    # instead of 367-388 ms per epoch; batch 64, 259-261 instead of 287-291.
    if idx.shape[0] * src.shape[1] * 32 >= PARALLEL_MIN_WORK:
        _gather_rows_mt(dst, src, idx)
    else:
        _gather_rows_1t(dst, src, idx)


@njit(**JIT)
def _dense(out, inp, params, weights, layout, l, act, bmax, data):
    """out = act(inp @ W_l + b_l), b_l from params. The weights come from ``weights`` in the Model's
    layout (I, O), or, when ``weights`` is empty, from params in the transposed layout (O, I); a
    layer computed by dot products (``dense.infers_by_dots`` for chunks of bmax rows) reads both
    (params as ``for_prediction`` or ``to_transposed`` leaves them). ``data``: inp is the caller's
    data, checked for NaN and inf on the way (``dense.dense_infer``; weights given): returns the
    number of blocks of rows holding one, else 0."""
    if weights.shape[0] == 0:
        WT, b = _weights_t(params, layout, l)
        dense_forward(out, inp, WT, b, act)
        return 0
    W, _ = _weights(weights, layout, l)
    WT, b = _weights_t(params, layout, l)
    return dense_infer(out, inp, W, WT if infers_by_dots(layout[l, FAN_OUT], bmax) else WT[:0], b, act,
                       data)


@njit(**JIT)
def layer_forward(params, weights, ws, layout, bmax, rows, l, inp, rates, running, training, seed,
                  step):
    """Layer l: from its input inp (rows, fan_in) into activation region l + 1. params holds the
    biases and batch-norm parameters, weights the weight matrices (see ``_dense``). Returns, for the
    first layer of prediction, the number of blocks of rows of inp that hold a NaN or an infinity;
    else 0."""
    out = _region(ws, layout, bmax, l + 1, rows)
    flags = layout[l, FLAGS]
    extras = flags & EXTRAS != 0
    # With extras, the product goes to their buffer y without activation; they apply it. (One call
    # with a variable activation: numba compiles a separate copy of a function, and of everything
    # it calls, for each constant argument it is called with.)
    y = _aux(ws, layout, bmax, l, 0, rows) if extras else out
    bad = _dense(y, inp, params, weights, layout, l, IDENTITY if extras else layout[l, ACT], bmax,
                 l == 0 and not training)
    if not extras:
        return bad
    if flags & BATCHNORM:
        gamma, beta = _batchnorm_params(params, layout, l)
        running_mean, running_var = _running(running, layout, l)
        batchnorm_forward(y, _aux(ws, layout, bmax, l, 1, rows), _aux_vector(ws, layout, bmax, l, 0),
                          _aux_vector(ws, layout, bmax, l, 1), gamma, beta, running_mean,
                          running_var, training)
    hidden_output(out, _aux(ws, layout, bmax, l, 2, rows), y, inp, layout[l, ACT],
                  flags & RESIDUAL != 0, rates[l] if training else 0.0, seed, step, l)
    return bad


@njit(**JIT)
def forward_layers(params, weights, ws, layout, bmax, rows, rates, running, training, seed, step, X):
    """Run every layer on the input batch X (rows, fan_in[0]) — region 0 when training, rows of
    the caller's data when predicting; return the last layer's view (rows, K) holding
    pre-activations z, and, when predicting, the number of blocks of rows of X that hold a NaN or
    an infinity (the first layer checks them as it reads them: ``dense.dense_infer``; z is then
    meaningless), else 0. params: biases and batch-norm parameters; weights: the weight matrices in
    the Model's layout, or empty to read them from params in the transposed layout (see
    ``_dense``). ``training`` selects batch statistics and dropout; seed and step choose dropout's
    masks."""
    L = layout.shape[0]
    bad = 0
    for l in range(L):
        inp = X if l == 0 else _region(ws, layout, bmax, l, rows)
        bad += layer_forward(params, weights, ws, layout, bmax, rows, l, inp, rates, running, training,
                             seed, step)
    return _region(ws, layout, bmax, L, rows), bad


@njit(**JIT)
def backward_layers(grads, params, ws, layout, bmax, rows, rates, seed, step, n_trainable, state,
                    hyper, opt, lr):
    """Back-propagate from delta_a (rows, K) = dL/dz of the last layer; write every layer's
    gradients into ``grads`` and update params[:n_trainable] with the optimizer (state (S,
    n_trainable), hyper, opt, lr; see ``optim.py``) layer by layer, as soon as a layer's weights
    are no longer needed: the dense kernels update their rows as they compute their gradient (see
    ``dense.dense_backward``). params, grads and state are in the transposed layout."""
    L = layout.shape[0]
    which = 0
    update = bool(True)  # (a value, not a constant: see predict_blocked)
    for l in range(L - 1, -1, -1):
        I, O = layout[l, FAN_IN], layout[l, FAN_OUT]
        flags = layout[l, FLAGS]
        WT, b = _weights_t(params, layout, l)
        dWT, db = _weights_t(grads, layout, l)
        dout = _delta(ws, layout, bmax, which, rows, O)
        if flags & EXTRAS:  # dout holds dL/d(out): turn it into dL/dz of this layer's product
            dskip = _aux(ws, layout, bmax, l, 3, rows)
            fy = _aux(ws, layout, bmax, l, 2, rows)
            if flags & BATCHNORM:
                dy = _aux(ws, layout, bmax, l, 4, rows)
                hidden_output_backward(dy, dskip, dout, fy, layout[l, ACT], flags & RESIDUAL != 0,
                                       rates[l], seed, step, l)
                gamma, _ = _batchnorm_params(params, layout, l)
                dgamma, dbeta = _batchnorm_params(grads, layout, l)
                batchnorm_backward(dout, dgamma, dbeta, dy, _aux(ws, layout, bmax, l, 1, rows), gamma,
                                   _aux_vector(ws, layout, bmax, l, 1))
                bn = layout[l, BN_OFF]  # gamma and beta, (fan_out,) each
                update_rows(params[bn:bn + 2 * O].reshape((1, 2 * O)), grads[bn:bn + 2 * O].reshape((1, 2 * O)),
                            state, bn, hyper, opt, lr, step, 0, 1)
            else:  # dy is written over dout, element by element
                hidden_output_backward(dout, dskip, dout, fy, layout[l, ACT], flags & RESIDUAL != 0,
                                       rates[l], seed, step, l)
        # The first layer's input is data: there is no gradient to pass further down.
        dinp = _delta(ws, layout, bmax, 1 - which, rows if l > 0 else 0, I)
        below_act = IDENTITY
        if l > 0 and not layout[l - 1, FLAGS] & EXTRAS:
            below_act = layout[l - 1, ACT]  # fused: dinp comes out as dL/dz of the layer below
        w, b_off = layout[l, W_OFF], layout[l, B_OFF]
        dense_backward(dinp, dWT, db, dout, _region(ws, layout, bmax, l, rows), WT, below_act,
                       b, max(0, min(O, n_trainable - b_off)), state, w, b_off, hyper, opt, lr, step,
                       update)
        if flags & RESIDUAL:  # out = f(y) + inp: the gradient reaches inp directly as well
            for n in range(rows):
                for k in range(I):
                    dinp[n, k] += dskip[n, k]
        which = 1 - which


def train_batches(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                  layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, opt_work, hyper,
                  step0, rates, running, seed):
    """Mini-batch training over a sequence of batches, all in one compiled call.

    batch_losses (T,)    out: each batch's mean loss, measured before its update
    params       (P,)    in/out: all weights and biases (see ``_weights``)
    grads        (P,)    out: the last batch's gradient, same layout
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
    opt_work     (S, n_trainable) workspace: opt_state in the transposed layout
    rates        (L,)    dropout rate of each layer
    running      (2, R)  batch normalization's running means and variances (updated)
    seed                 dropout's seed for this fit call (masks hash seed, step, layer, sample, unit)
    """
    # (Python, not compiled: a network that takes the small path, such as the article's XOR net,
    # never compiles the layer kernels: a cold start takes seconds instead of minutes.)
    if use_small(layout, bmax):  # tiny networks: one loop nest per step (see ``small.py``)
        train_small(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                    layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, hyper, step0)
    else:
        train_blocked(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                      layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, opt_work, hyper,
                      step0, rates, running, seed)


@njit(**JIT)
def train_blocked(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                  layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, opt_work, hyper,
                  step0, rates, running, seed):
    """``train_batches`` through the layer kernels: any network, any size."""
    work = _work(ws, layout, bmax)
    to_transposed(work, params, layout)
    # Large batches: keep params' weights current after every step and run the forward pass as row
    # combinations of W (see FORWARD_FROM_W_ROWS); smaller ones read WT (weights_w empty).
    forward_from_w = bmax >= FORWARD_FROM_W_ROWS
    weights_w = params if forward_from_w else params[:0]
    for r in range(opt_state.shape[0]):
        to_transposed(opt_work[r], opt_state[r], layout)
    for t in range(bounds.shape[0] - 1):
        idx = order[bounds[t]:bounds[t + 1]]
        rows = idx.shape[0]
        batch = _region(ws, layout, bmax, 0, rows)
        gather_rows(batch, X, idx)
        step = step0 + t + 1
        z, _ = forward_layers(work, weights_w, ws, layout, bmax, rows, rates, running, bool(True), seed,
                              step, batch)  # (bool(): a value, not a constant: see predict_blocked)
        K = z.shape[1]
        delta = _delta(ws, layout, bmax, 0, rows, K)
        sample_loss = _sample_loss(ws, layout, bmax, rows)
        batch_losses[t] = output_loss_backward(delta, sample_loss, z, idx, y_int, y_float, weights,
                                               out_code, loss_code)
        backward_layers(grads, work, ws, layout, bmax, rows, rates, seed, step, n_trainable, opt_work,
                        hyper, opt, lrs[t])  # (and the update)
        if forward_from_w:
            for l in range(layout.shape[0]):
                W, _ = _weights(params, layout, l)
                WT, _ = _weights_t(work, layout, l)
                transpose(W, WT)
    from_transposed(params, work, layout)
    for r in range(opt_state.shape[0]):
        from_transposed(opt_state[r], opt_work[r], layout)
    work[:] = grads  # (work is free again: the scratch for putting grads back in params' layout)
    from_transposed(grads, work, layout)


def predict_batches(out, params, ws, X, layout, out_code, bmax, rates, running):
    """out (N, K) <- the network's outputs for X (N, I0), bmax rows at a time. Returns False, with
    out incomplete, if X holds a NaN or an infinity: the first layer checks the rows as it reads
    them (``dense.dense_infer``; the small path, each chunk before it), rather than all of X in a
    pass of its own."""
    if use_small(layout, bmax):
        return predict_small(out, params, ws, X, layout, out_code, bmax)
    return predict_blocked(out, params, ws, X, layout, out_code, bmax, rates, running)


@njit(**JIT)
def for_prediction(dst, params, layout, bmax):
    """dst <- what ``forward_layers`` reads from its ``params`` when its ``weights`` are params, in
    chunks of bmax rows: the biases and batch-norm parameters, and the weights of each layer that it
    computes as dot products (``dense.infers_by_dots``) transposed, in their place in the transposed
    layout. The other layers' places are left as they were: their weights are read from params."""
    for l in range(layout.shape[0]):
        if infers_by_dots(layout[l, FAN_OUT], bmax):
            W, _ = _weights(params, layout, l)
            WT, _ = _weights_t(dst, layout, l)
            transpose(WT, W)
    n = _n_weights(layout)
    dst[n:] = params[n:]


@njit(**JIT)
def predict_blocked(out, params, ws, X, layout, out_code, bmax, rates, running):
    """``predict_batches`` through the layer kernels: any network, any size."""
    N = X.shape[0]
    work = _work(ws, layout, bmax)
    for_prediction(work, params, layout, bmax)
    for lo in range(0, N, bmax):
        hi = min(lo + bmax, N)
        # bool() and int() make plain values of the constants, so that this call has the types of
        # train_blocked's and the forward pass is compiled once for both: numba compiles a separate
        # copy of a function for each constant argument (measured: ~24 s more on a cold start).
        z, bad = forward_layers(work, params, ws, layout, bmax, hi - lo, rates, running, bool(False),
                                int(0), int(0), X[lo:hi])
        if bad:
            return False
        output_forward(z, out_code)
        out[lo:hi] = z
    return True
