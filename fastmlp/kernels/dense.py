"""A fully connected layer: ``dense_forward`` and ``dense_backward``.

Shapes, for a batch of B samples through a layer with I inputs and O outputs:
    inp  (B, I)   the layer's input: the data, or the previous layer's activations
    W    (I, O)   weights; row k holds the weights leaving input unit k (the Model's layout)
    WT   (O, I)   the same weights transposed, a copy the network keeps beside W
    b    (O,)     biases
    out  (B, O)   f(inp @ W + b), the activations this layer passes on

Two ways to compute each pass, chosen by the batch size:

* Row by row (B < BLOCKED_MIN_ROWS, e.g. the seed XOR run or online learning with B = 1):
  ``out[n, :] += inp[n, k] * W[k, :]`` sweeps contiguous rows of W. No transposed copy needed.
* Blocked (larger batches): the forward pass and the input gradient are written as
  C = A @ Bt.T, so that both operands are read along contiguous rows, and computed in tiles of
  4 x 2 outputs held in scalar accumulators (``_product_rows``). Each value loaded from memory then
  feeds 4 or 2 multiply-adds instead of 1, and LLVM vectorises the shared inner loop over k. The
  forward pass reads WT, the input gradient reads W.
* The weight gradient, whose sum runs over the (short) batch, is always a sum of outer products
  into rows of dW: four rows and four samples per pass (``_weight_grad_4rows``).

Every loop that runs in parallel owns disjoint outputs (a block of rows of ``out``, ``dW`` or
``dinp``) and sums its reductions in a fixed order, so results are bit-identical on any number of
threads. Loops run on one thread below ``PARALLEL_MIN_WORK`` multiply-adds (see ``jit_pair``).
"""

from numba import njit, prange

from .activations import activate, activation_grad
from .config import JIT, PARALLEL_MIN_WORK, jit_pair

# Batches at least this large take the blocked forward and input-gradient passes (4-row tiles need
# rows to fill them).
BLOCKED_MIN_ROWS = 8
TILE_ROWS = 4


# ---- the blocked product -------------------------------------------------------------------


@njit(**JIT)
def _dot(a, b):
    """a (K,) . b (K,), starting from the first term so the sum keeps the arrays' dtype."""
    s = a[0] * b[0]
    for k in range(1, a.shape[0]):
        s += a[k] * b[k]
    return s


@njit(**JIT)
def _product_rows(C, A, Bt, i):
    """C[i:i+4, :] = A[i:i+4, :] @ Bt.T  (fewer rows when fewer remain).

    C (M, N), A (M, K), Bt (N, K). A 4 x 2 tile of C is 8 running sums over k: each step loads
    4 values of A and 2 of Bt and does 8 multiply-adds.
    """
    M, N = C.shape
    K = A.shape[1]
    if i + TILE_ROWS > M:
        for r in range(i, M):
            for j in range(N):
                C[r, j] = _dot(A[r], Bt[j])
        return
    a0, a1, a2, a3 = A[i], A[i + 1], A[i + 2], A[i + 3]
    j = 0
    while j + 2 <= N:
        b0, b1 = Bt[j], Bt[j + 1]
        s00, s01 = a0[0] * b0[0], a0[0] * b1[0]
        s10, s11 = a1[0] * b0[0], a1[0] * b1[0]
        s20, s21 = a2[0] * b0[0], a2[0] * b1[0]
        s30, s31 = a3[0] * b0[0], a3[0] * b1[0]
        for k in range(1, K):
            x0, x1 = b0[k], b1[k]
            s00 += a0[k] * x0
            s01 += a0[k] * x1
            s10 += a1[k] * x0
            s11 += a1[k] * x1
            s20 += a2[k] * x0
            s21 += a2[k] * x1
            s30 += a3[k] * x0
            s31 += a3[k] * x1
        C[i, j], C[i, j + 1] = s00, s01
        C[i + 1, j], C[i + 1, j + 1] = s10, s11
        C[i + 2, j], C[i + 2, j + 1] = s20, s21
        C[i + 3, j], C[i + 3, j + 1] = s30, s31
        j += 2
    if j < N:  # an odd last column
        for r in range(TILE_ROWS):
            C[i + r, j] = _dot(A[i + r], Bt[j])


def _forward_blocked(out, inp, WT, b, act):
    """out (B, O) = f(inp (B, I) @ WT (O, I).T + b): a thread owns blocks of 4 rows of out."""
    B, O = out.shape
    for blk in prange((B + TILE_ROWS - 1) // TILE_ROWS):
        i = blk * TILE_ROWS
        _product_rows(out, inp, WT, i)
        for r in range(i, min(i + TILE_ROWS, B)):
            for j in range(O):
                out[r, j] = activate(out[r, j] + b[j], act)


def _input_grad_blocked(dinp, dout, W, inp, inp_act):
    """dinp (B, I) = (dout (B, O) @ W (I, O).T) * f'(inp): a thread owns blocks of 4 rows."""
    B, I = dinp.shape
    for blk in prange((B + TILE_ROWS - 1) // TILE_ROWS):
        i = blk * TILE_ROWS
        _product_rows(dinp, dout, W, i)
        for r in range(i, min(i + TILE_ROWS, B)):
            for k in range(I):
                dinp[r, k] *= activation_grad(inp[r, k], inp_act)


def _transpose(dst, src):
    """dst (N, M) = src (M, N).T: read src row by row (contiguous), write dst column by column;
    a thread owns a contiguous block of src's rows, so the columns it writes are its own."""
    M, N = src.shape
    for r in prange(M):
        for c in range(N):
            dst[c, r] = src[r, c]


def _weight_grad_rows(dW, dout, inp):
    """dW (I, O) = inp (B, I).T @ dout (B, O) as sums of outer products: a thread owns blocks of
    four rows of dW (and the last I % 4 rows one by one)."""
    I = dW.shape[0]
    for blk in prange((I + TILE_ROWS - 1) // TILE_ROWS):
        k = blk * TILE_ROWS
        if k + TILE_ROWS <= I:
            _weight_grad_4rows(dW, dout, inp, k)
        else:
            for r in range(k, I):
                _weight_grad_row(dW, dout, inp, r)


_forward_blocked_mt, _forward_blocked_1t = jit_pair(_forward_blocked)
_weight_grad_rows_mt, _weight_grad_rows_1t = jit_pair(_weight_grad_rows)
_input_grad_blocked_mt, _input_grad_blocked_1t = jit_pair(_input_grad_blocked)
_transpose_mt, _transpose_1t = jit_pair(_transpose)


@njit(**JIT)
def transpose(dst, src):
    """dst (N, M) = src (M, N).T"""
    if src.shape[0] * src.shape[1] * 8 >= PARALLEL_MIN_WORK:
        _transpose_mt(dst, src)
    else:
        _transpose_1t(dst, src)


# ---- row by row, for small batches -----------------------------------------------------------


@njit(**JIT)
def _forward_row(out, inp, W, b, act, n):
    """out[n, :] = f(inp[n, :] @ W + b), one sample."""
    I, O = W.shape
    for j in range(O):
        out[n, j] = b[j]
    for k in range(I):
        x = inp[n, k]
        if x != 0:  # ReLU outputs and image pixels are often exactly 0: skip their row of W
            for j in range(O):
                out[n, j] += x * W[k, j]
    for j in range(O):
        out[n, j] = activate(out[n, j], act)


@njit(**JIT)
def _weight_grad_row(dW, dout, inp, k):
    """dW[k, :] = sum over samples n of inp[n, k] * dout[n, :].

    The sum over the batch is the short dimension here, so the row of dW is the accumulator, and
    four samples are added per pass over it: one load and one store of dW[k, j] per four
    multiply-adds instead of per one. Groups of four zero inputs are skipped."""
    B, O = dout.shape
    r = dW[k]
    for j in range(O):
        r[j] = 0
    n = 0
    while n + 4 <= B:
        x0, x1, x2, x3 = inp[n, k], inp[n + 1, k], inp[n + 2, k], inp[n + 3, k]
        if x0 != 0 or x1 != 0 or x2 != 0 or x3 != 0:
            d0, d1, d2, d3 = dout[n], dout[n + 1], dout[n + 2], dout[n + 3]
            for j in range(O):
                r[j] += x0 * d0[j] + x1 * d1[j] + x2 * d2[j] + x3 * d3[j]
        n += 4
    while n < B:
        x = inp[n, k]
        if x != 0:
            for j in range(O):
                r[j] += x * dout[n, j]
        n += 1


@njit(**JIT)
def _weight_grad_4rows(dW, dout, inp, k):
    """dW[k:k+4, :] = inp[:, k:k+4].T @ dout: a 4 x 4 block of inputs per pass over the rows.

    Each pass loads four rows of dout once and adds them, weighted by a 4 x 4 block of inputs
    (16 scalars, copied to locals so the compiler keeps them in registers), into four rows of dW:
    16 multiply-adds per element for 8 loads and 4 stores. Blocks of zero inputs are skipped."""
    B, O = dout.shape
    r0, r1, r2, r3 = dW[k], dW[k + 1], dW[k + 2], dW[k + 3]
    for j in range(O):
        r0[j] = r1[j] = r2[j] = r3[j] = 0
    n = 0
    while n + 4 <= B:
        x = inp[n:n + 4, k:k + 4]
        if x[0, 0] != 0 or x[0, 1] != 0 or x[0, 2] != 0 or x[0, 3] != 0 or \
                x[1, 0] != 0 or x[1, 1] != 0 or x[1, 2] != 0 or x[1, 3] != 0 or \
                x[2, 0] != 0 or x[2, 1] != 0 or x[2, 2] != 0 or x[2, 3] != 0 or \
                x[3, 0] != 0 or x[3, 1] != 0 or x[3, 2] != 0 or x[3, 3] != 0:
            a0, a1, a2, a3 = x[0, 0], x[1, 0], x[2, 0], x[3, 0]  # input k of samples n..n+3
            b0, b1, b2, b3 = x[0, 1], x[1, 1], x[2, 1], x[3, 1]  # input k + 1
            c0, c1, c2, c3 = x[0, 2], x[1, 2], x[2, 2], x[3, 2]  # input k + 2
            e0, e1, e2, e3 = x[0, 3], x[1, 3], x[2, 3], x[3, 3]  # input k + 3
            d0, d1, d2, d3 = dout[n], dout[n + 1], dout[n + 2], dout[n + 3]
            for j in range(O):
                g0, g1, g2, g3 = d0[j], d1[j], d2[j], d3[j]
                r0[j] += a0 * g0 + a1 * g1 + a2 * g2 + a3 * g3
                r1[j] += b0 * g0 + b1 * g1 + b2 * g2 + b3 * g3
                r2[j] += c0 * g0 + c1 * g1 + c2 * g2 + c3 * g3
                r3[j] += e0 * g0 + e1 * g1 + e2 * g2 + e3 * g3
        n += 4
    while n < B:  # the last B % 4 samples
        a0, b0, c0, e0 = inp[n, k], inp[n, k + 1], inp[n, k + 2], inp[n, k + 3]
        d0 = dout[n]
        for j in range(O):
            g0 = d0[j]
            r0[j] += a0 * g0
            r1[j] += b0 * g0
            r2[j] += c0 * g0
            r3[j] += e0 * g0
        n += 1


@njit(**JIT)
def _input_grad_row(dinp, dout, W, inp, inp_act, n):
    """dinp[n, k] = (dout[n, :] . W[k, :]) * f'(inp[n, k]) for every input unit k."""
    for k in range(W.shape[0]):
        dinp[n, k] = _dot(dout[n], W[k]) * activation_grad(inp[n, k], inp_act)


# ---- the layer ---------------------------------------------------------------------------------


@njit(**JIT)
def dense_forward(out, inp, W, WT, b, act):
    """out (B, O) <- f(inp (B, I) @ W (I, O) + b (O,)), f given by the activation code ``act``.

    WT (O, I) must equal W.T when B >= BLOCKED_MIN_ROWS (it is not read otherwise).
    """
    B = inp.shape[0]
    I, O = W.shape
    if B < BLOCKED_MIN_ROWS:
        for n in range(B):
            _forward_row(out, inp, W, b, act, n)
    elif B * I * O >= PARALLEL_MIN_WORK:
        _forward_blocked_mt(out, inp, WT, b, act)
    else:
        _forward_blocked_1t(out, inp, WT, b, act)


@njit(**JIT)
def dense_backward(dinp, dW, db, dout, inp, W, inp_act):
    """Backward pass of ``dense_forward``.

    dout  (B, O)  in: dL/dz for this layer's pre-activations z = inp @ W + b
    inp   (B, I)  in: this layer's input, as in the forward pass
    W     (I, O)  in: weights
    dW    (I, O)  out: dL/dW = inp.T @ dout
    db    (O,)    out: dL/db = column sums of dout
    dinp  (B, I)  out: dL/dz of the layer below = (dout @ W.T) * f'(inp), where f is that layer's
                  activation ``inp_act``; pass an array with 0 rows to skip it (first layer)
    """
    B, O = dout.shape
    I = W.shape[0]
    parallel = B * I * O >= PARALLEL_MIN_WORK
    if parallel:
        _weight_grad_rows_mt(dW, dout, inp)
    else:
        _weight_grad_rows_1t(dW, dout, inp)
    for j in range(O):
        db[j] = 0
    for n in range(B):
        for j in range(O):
            db[j] += dout[n, j]
    if dinp.shape[0] == 0:
        return
    if B < BLOCKED_MIN_ROWS:
        for n in range(B):
            _input_grad_row(dinp, dout, W, inp, inp_act, n)
    elif parallel:
        _input_grad_blocked_mt(dinp, dout, W, inp, inp_act)
    else:
        _input_grad_blocked_1t(dinp, dout, W, inp, inp_act)
