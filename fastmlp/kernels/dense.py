"""A fully connected layer: ``dense_forward`` / ``dense_backward`` for training, ``dense_infer``
for prediction.

Shapes, for a batch of B samples through a layer with I inputs and O outputs:
    inp  (B, I)   the layer's input: the data, or the previous layer's activations
    W    (I, O)   weights; row k holds the weights leaving input unit k (the Model's layout)
    WT   (O, I)   the same weights transposed; row j holds the weights entering output unit j
                  (torch's layout). Training works on this layout: see below.
    b    (O,)     biases
    out  (B, O)   f(inp @ W + b), the activations this layer passes on

Every product here is one of three loop shapes, and each pass picks the one whose operands are read
along contiguous rows:

* dot products, C = A @ Bt.T (``_dot_columns``): each output is a dot product of two contiguous
  rows. A tile of 4 x 4 outputs (4 x 2 on AVX2, see ``DOT_COLUMNS``) is held in scalar
  accumulators, so every value loaded feeds 4 (or 2-4) multiply-adds, and LLVM vectorises the
  shared inner loop over the reduction.
* row combinations, C = A @ Bm (``_combine_rows``): row i of C is a weighted sum of rows of Bm.
  Four rows of C are updated together from four rows of Bm and a 4 x 4 block of A's coefficients
  (16 scalars held in registers): 16 multiply-adds per element for 8 loads and 4 stores.
* outer products, C = A.T @ Bm (``_combine_rows`` of A.T): the same update, with the 4 x 4 block
  taken from A transposed. Used for the weight gradient, whose sum runs over the samples.

Training reads and writes the transposed weights WT, which makes all three passes fast without a
per-step copy: the forward pass is dot rows of inp and WT, the input gradient dout @ WT combines
rows of WT, and the weight gradient dWT = dout.T @ inp is a sum of outer products into rows of dWT
as long as the layer's input (784 for an image). Prediction has no backward pass; it reads the
Model's own W and combines rows of W, which is the fastest form of the forward product, except for
a narrow layer (fewer than ``NARROW`` outputs, such as the 10 classes of the output layer), whose
short rows of W vectorise poorly: it takes dot products with a transposed copy of W. (With AVX2,
every layer does, in calls of enough rows: see ``DOT_ROWS``.)

Every loop that runs in parallel owns disjoint outputs (a block of units of ``out``, rows of ``dWT``
or rows of ``dinp``) and sums its reductions in an order fixed by the code, so results are bit-identical on
any number of threads. Loops run on one thread below ``PARALLEL_MIN_WORK`` multiply-adds (see
``jit_pair``).
"""

from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .activations import activate, activation_grad
from .checks import nonfinite_in
from .config import JIT, PARALLEL_MIN_WORK, WIDE_REGISTERS, jit_pair
from .optim import update_rows

TILE = 4  # rows of C computed together by every product below
COLUMNS = 8  # output units per parallel block of the training forward pass
# Columns of a dot-product tile. Each of its 4 x DOT_COLUMNS outputs is a vector accumulator while
# the loop runs, beside 4 + DOT_COLUMNS vectors of operands: 16 + 8 for a 4 x 4 tile, which fits
# AVX-512's 32 vector registers, but not AVX2's 16, where the tile spills to the stack. Measured on
# one core of an AVX2 machine (scratch/tiles.py, us, 4 x 4 / 4 x 2): 16 x 784 x 128 69-87 / 55-62,
# 64 x 784 x 128 286-293 / 180-194, 16 x 128 x 64 6.8-7.6 / 4.4-5.3. (With AVX-512, 16 x 784 x 128
# on two threads: 4 x 4 17-19 us, 4 x 2 21 us.)
DOT_COLUMNS = 4 if WIDE_REGISTERS else 2


# ---- the three products, four rows of C at a time ----------------------------------------------


@njit(**JIT)
def _dot(a, b):
    """a (K,) . b (K,)"""
    s = a.dtype.type(0)  # a zero of the arrays' dtype, so a float32 sum stays float32
    for k in range(a.shape[0]):
        s += a[k] * b[k]
    return s


@njit(inline="always", **JIT)
def _dot_tile_4x4(C, A, Bt, i, j):
    """C[i:i+4, j:j+4] = A[i:i+4, :] @ Bt[j:j+4, :].T

    C (M, N), A (M, K), Bt (N, K). The 4 x 4 tile is 16 running sums over k: each step loads 4
    values of A and 4 of Bt and does 16 multiply-adds. The loop starts at k = 0, so that its vector
    loads start where the rows do, on a cache-line boundary when a row starts on one (rows of 784
    float32 are 49 lines). (Measured on 2 threads: starting at k = 1, with the first products as
    initial sums, shifted every load by one element across two lines; 4 x 2 tiles from k = 1 took
    24 us for 16 x 784 x 128, 4 x 2 from k = 0 21 us, 4 x 4 from k = 0 17-19 us.)
    """
    K = A.shape[1]
    a0, a1, a2, a3 = A[i], A[i + 1], A[i + 2], A[i + 3]
    b0, b1, b2, b3 = Bt[j], Bt[j + 1], Bt[j + 2], Bt[j + 3]
    z = A.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = z
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = z
    for k in range(K):
        x0, x1, x2, x3 = b0[k], b1[k], b2[k], b3[k]
        y0, y1, y2, y3 = a0[k], a1[k], a2[k], a3[k]
        s00 += y0 * x0
        s01 += y0 * x1
        s02 += y0 * x2
        s03 += y0 * x3
        s10 += y1 * x0
        s11 += y1 * x1
        s12 += y1 * x2
        s13 += y1 * x3
        s20 += y2 * x0
        s21 += y2 * x1
        s22 += y2 * x2
        s23 += y2 * x3
        s30 += y3 * x0
        s31 += y3 * x1
        s32 += y3 * x2
        s33 += y3 * x3
    C[i, j], C[i, j + 1], C[i, j + 2], C[i, j + 3] = s00, s01, s02, s03
    C[i + 1, j], C[i + 1, j + 1], C[i + 1, j + 2], C[i + 1, j + 3] = s10, s11, s12, s13
    C[i + 2, j], C[i + 2, j + 1], C[i + 2, j + 2], C[i + 2, j + 3] = s20, s21, s22, s23
    C[i + 3, j], C[i + 3, j + 1], C[i + 3, j + 2], C[i + 3, j + 3] = s30, s31, s32, s33


@njit(inline="always", **JIT)
def _dot_tile_4x2(C, A, Bt, i, j):
    """C[i:i+4, j:j+2] = A[i:i+4, :] @ Bt[j:j+2, :].T: ``_dot_tile_4x4`` with two columns, for
    AVX2's 16 vector registers. C (M, N), A (M, K), Bt (N, K)."""
    K = A.shape[1]
    a0, a1, a2, a3 = A[i], A[i + 1], A[i + 2], A[i + 3]
    b0, b1 = Bt[j], Bt[j + 1]
    z = A.dtype.type(0)
    s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = z
    for k in range(K):
        x0, x1 = b0[k], b1[k]
        y0, y1, y2, y3 = a0[k], a1[k], a2[k], a3[k]
        s00 += y0 * x0
        s01 += y0 * x1
        s10 += y1 * x0
        s11 += y1 * x1
        s20 += y2 * x0
        s21 += y2 * x1
        s30 += y3 * x0
        s31 += y3 * x1
    C[i, j], C[i, j + 1] = s00, s01
    C[i + 1, j], C[i + 1, j + 1] = s10, s11
    C[i + 2, j], C[i + 2, j + 1] = s20, s21
    C[i + 3, j], C[i + 3, j + 1] = s30, s31


# (Chosen here, in Python: numba compiles only the tile the target's registers fit.)
_dot_tile = _dot_tile_4x4 if DOT_COLUMNS == 4 else _dot_tile_4x2


@njit(**JIT)
def _dot_columns(C, A, Bt, j0, j1):
    """C[:, j0:j1] = A @ Bt[j0:j1, :].T, in 4 x DOT_COLUMNS tiles (single dot products at the
    edges).

    C (M, N), A (M, K), Bt (N, K): each output is the dot product of a row of A and a row of Bt.
    """
    M = C.shape[0]
    M4 = M - M % TILE
    j4 = j1 - (j1 - j0) % DOT_COLUMNS
    for i in range(0, M4, TILE):
        for j in range(j0, j4, DOT_COLUMNS):
            _dot_tile(C, A, Bt, i, j)
    for j in range(j4, j1):  # the last (j1 - j0) % DOT_COLUMNS columns
        for r in range(M4):
            C[r, j] = _dot(A[r], Bt[j])
    for r in range(M4, M):  # the last M % 4 rows
        for j in range(j0, j1):
            C[r, j] = _dot(A[r], Bt[j])


@njit(inline="always", **JIT)
def _add_4x4(C, i, Bm, s, x):
    """C[i + a, :] += sum over c < 4 of x[a, c] * Bm[s + c, :], for a < 4.

    C (M, K), Bm (S, K), x (4, 4). The 16 coefficients are copied to locals first, so that the
    compiler keeps them in registers through the loop over k."""
    x00, x01, x02, x03 = x[0, 0], x[0, 1], x[0, 2], x[0, 3]
    x10, x11, x12, x13 = x[1, 0], x[1, 1], x[1, 2], x[1, 3]
    x20, x21, x22, x23 = x[2, 0], x[2, 1], x[2, 2], x[2, 3]
    x30, x31, x32, x33 = x[3, 0], x[3, 1], x[3, 2], x[3, 3]
    c0, c1, c2, c3 = C[i], C[i + 1], C[i + 2], C[i + 3]
    b0, b1, b2, b3 = Bm[s], Bm[s + 1], Bm[s + 2], Bm[s + 3]
    for k in range(C.shape[1]):
        g0, g1, g2, g3 = b0[k], b1[k], b2[k], b3[k]
        c0[k] += x00 * g0 + x01 * g1 + x02 * g2 + x03 * g3
        c1[k] += x10 * g0 + x11 * g1 + x12 * g2 + x13 * g3
        c2[k] += x20 * g0 + x21 * g1 + x22 * g2 + x23 * g3
        c3[k] += x30 * g0 + x31 * g1 + x32 * g2 + x33 * g3


@njit(inline="always", **JIT)
def _add_row(c, a, brow):
    """c (K,) += a * brow (K,)"""
    if a != 0:
        for k in range(c.shape[0]):
            c[k] += a * brow[k]


@intrinsic
def _prefetch(typingctx, row, k):
    """Start loading the cache line that holds row[k] (row 1-D, k a valid index), so that a read of
    it a little later finds it in cache. A hint to the processor (LLVM's ``llvm.prefetch``: a read,
    kept in every cache level); it changes no value."""
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])  # read, keep, data
        return context.get_dummy_value()
    return types.void(row, k), codegen


@njit(**JIT)
def _combine_rows(C, A, Bm, i, ahead):
    """C[i:i+4, :] = A[i:i+4, :] @ Bm  (fewer rows when fewer remain).

    C (M, K), A (M, S), Bm (S, K): row r of C is the combination of Bm's rows with weights A[r, :].
    Given A = D.T (a transposed view), this is the outer-product form D.T @ Bm: a sum over s of
    D[s, i:i+4] times Bm[s, :].

    ``ahead`` (A C-contiguous): rows i+4 .. i+7 of A come next, from memory (the data, in the first
    layer of prediction). As the loop reaches each cache line of rows i .. i+3, it prefetches the
    same line of those four rows, so that they arrive while these are being combined.
    """
    M, S = C.shape[0], A.shape[1]
    if i + TILE > M:
        for r in range(i, M):
            C[r, :] = 0
            for t in range(S):
                _add_row(C[r], A[r, t], Bm[t])
        return
    C[i:i + TILE] = 0
    S4 = S - S % 4
    fetch = ahead and i + 2 * TILE <= A.shape[0]
    line = 64 // A.itemsize  # elements per 64-byte cache line: 16 float32, 8 float64
    for s in range(0, S4, 4):
        if fetch and s & (line - 1) == 0:
            for r in range(i + TILE, i + 2 * TILE):
                _prefetch(A[r], s)
        _add_4x4(C, i, Bm, s, A[i:i + 4, s:s + 4])
    for r in range(i, i + TILE):  # the last S % 4 terms
        for t in range(S4, S):
            _add_row(C[r], A[r, t], Bm[t])


# ---- the layer passes, each a loop over disjoint blocks of 4 rows ------------------------------


def _forward(out, inp, WT, b, act):
    """out (B, O) = f(inp (B, I) @ WT (O, I).T + b): a thread owns blocks of 8 output units (columns
    of out, rows of WT). Splitting by units rather than samples gives small batches work for every
    thread, and each thread reads only its own rows of WT: the rows whose gradient it computes too
    (``_weight_grad`` splits the same way), so they stay in its cache."""
    B, O = out.shape
    for blk in prange((O + COLUMNS - 1) // COLUMNS):
        j0 = blk * COLUMNS
        j1 = min(j0 + COLUMNS, O)
        _dot_columns(out, inp, WT, j0, j1)
        bj = b[j0:j1]
        for r in range(B):
            row = out[r, j0:j1]  # (a view indexed from 0, so that the loop vectorises)
            for j in range(row.shape[0]):
                row[j] = activate(row[j] + bj[j], act)


def _infer(out, inp, W, WT, b, act, data):
    """out (B, O) = f(inp (B, I) @ W (I, O) + b): a thread owns blocks of 4 rows of out, which it
    computes as row combinations of W, or, when WT (O, I) = W.T is given (not empty), as dot
    products of rows of inp and WT: the form for narrow layers (see ``dense_infer``). With ``data``,
    returns the number of blocks whose rows of inp hold a NaN or an infinity (see ``dense_infer``);
    else 0."""
    B, O = out.shape
    bad = 0
    for blk in prange((B + TILE - 1) // TILE):
        i = blk * TILE
        i1 = min(i + TILE, B)
        if WT.shape[0] == 0:
            _combine_rows(out, inp, W, i, data)
        else:
            _dot_columns(out[i:i1], inp[i:i1], WT, 0, O)
        # (a reduction into a scalar: numba gives each thread a count of its own, then adds them)
        bad += nonfinite_in(inp, i, i1) if data else 0
        for r in range(i, i1):
            row = out[r]  # (a view indexed from 0, so that the loop vectorises)
            for j in range(O):
                row[j] = activate(row[j] + b[j], act)
    return bad


def _weight_grad(dWT, db, dout, inp, WT, b, nb, state, sw, sb, hyper, opt, lr, step, update):
    """dWT (O, I) = dout (B, O).T @ inp (B, I) and db (O,) = column sums of dout: a thread owns
    blocks of 4 units j (rows of dWT, entries of db). ``update`` 1: the thread then applies the
    optimizer to the same rows of WT (O, I) and entries of b[:nb], while they are in its cache (see
    ``dense_backward``); 2: the optimizer runs over all of WT and b[:nb] after the loop (one long
    stream, faster on one thread: at batch 1, 16 instead of 20 us for 784 x 128); 0: no update."""
    B, O = dout.shape
    for blk in prange((O + TILE - 1) // TILE):
        j = blk * TILE
        j1 = min(j + TILE, O)
        _combine_rows(dWT, dout.T, inp, j, False)  # outer products: dout[n, j:j+4] times inp[n, :]
        for u in range(j, j1):
            s = dout[0, u]
            for n in range(1, B):
                s += dout[n, u]
            db[u] = s
        if update == 1:
            _update_units(WT, dWT, b, db, nb, state, sw, sb, hyper, opt, lr, step, j, j1)
    if update == 2:
        _update_units(WT, dWT, b, db, nb, state, sw, sb, hyper, opt, lr, step, 0, O)


@njit(inline="always", **JIT)
def _update_units(WT, dWT, b, db, nb, state, sw, sb, hyper, opt, lr, step, j0, j1):
    """The optimizer step for units j0:j1: rows of WT (O, I) and, below nb, entries of b (O,), whose
    state starts at columns sw and sb of state."""
    O = b.shape[0]
    update_rows(WT, dWT, state, sw, hyper, opt, lr, step, j0, j1)
    update_rows(b.reshape((O, 1)), db.reshape((O, 1)), state, sb, hyper, opt, lr, step, j0, min(j1, nb))


def _input_grad(dinp, dout, WT, inp, inp_act):
    """dinp (B, I) = (dout (B, O) @ WT (O, I)) * f'(inp): a thread owns blocks of 4 rows."""
    B, I = dinp.shape
    for blk in prange((B + TILE - 1) // TILE):
        i = blk * TILE
        _combine_rows(dinp, dout, WT, i, False)
        for r in range(i, min(i + TILE, B)):
            for k in range(I):
                dinp[r, k] *= activation_grad(inp[r, k], inp_act)


def _transpose(dst, src):
    """dst (N, M) = src (M, N).T, in 16 x 16 tiles (each read and written a cache line at a time; the
    fixed trip counts let the compiler unroll them); a thread owns a band of 16 rows of src, so the
    columns of dst it writes are its own."""
    M, N = src.shape
    N16 = N - N % 16
    for band in prange((M + 15) // 16):
        r0 = band * 16
        if r0 + 16 <= M:
            for c0 in range(0, N16, 16):
                for c in range(16):
                    for r in range(16):
                        dst[c0 + c, r0 + r] = src[r0 + r, c0 + c]
            for c in range(N16, N):
                for r in range(16):
                    dst[c, r0 + r] = src[r0 + r, c]
        else:  # the last M % 16 rows
            for c in range(N):
                for r in range(r0, M):
                    dst[c, r] = src[r, c]


_forward_mt, _forward_1t = jit_pair(_forward)
_infer_mt, _infer_1t = jit_pair(_infer)
_weight_grad_mt, _weight_grad_1t = jit_pair(_weight_grad)
_input_grad_mt, _input_grad_1t = jit_pair(_input_grad)
_transpose_mt, _transpose_1t = jit_pair(_transpose)


@njit(**JIT)
def transpose(dst, src):
    """dst (N, M) = src (M, N).T"""
    if src.shape[0] * src.shape[1] * 4 >= PARALLEL_MIN_WORK:
        _transpose_mt(dst, src)
    else:
        _transpose_1t(dst, src)


# ---- the layer -----------------------------------------------------------------------------------


@njit(inline="always", **JIT)
def threaded(rows, fan_in, fan_out):
    """Whether a layer's product over ``rows`` rows runs on every thread: from PARALLEL_MIN_WORK
    multiply-adds (see ``jit_pair``)."""
    return rows * fan_in * fan_out >= PARALLEL_MIN_WORK


@njit(**JIT)
def dense_forward(out, inp, WT, b, act):
    """out (B, O) <- f(inp (B, I) @ WT (O, I).T + b (O,)), f given by the activation code ``act``."""
    B, I = inp.shape
    if threaded(B, I, out.shape[1]):
        _forward_mt(out, inp, WT, b, act)
    else:
        _forward_1t(out, inp, WT, b, act)


@njit(**JIT)
def dense_backward(dinp, dWT, db, dout, inp, WT, inp_act, b, nb, state, sw, sb, hyper, opt, lr, step,
                   update):
    """Backward pass of ``dense_forward``, and with ``update`` the optimizer step on this layer.

    dout  (B, O)  in: dL/dz for this layer's pre-activations z = inp @ WT.T + b
    inp   (B, I)  in: this layer's input, as in the forward pass
    WT    (O, I)  in: weights, transposed; updated if ``update``
    dWT   (O, I)  out: dL/dWT = dout.T @ inp
    db    (O,)    out: dL/db = column sums of dout
    dinp  (B, I)  out: dL/dz of the layer below = (dout @ WT) * f'(inp), where f is that layer's
                  activation ``inp_act``; pass an array with 0 rows to skip it (first layer)
    b     (O,)    biases; b[:nb] are updated if ``update`` (nb = 0: a bias-free layer)
    state (S, N), sw, sb, hyper, opt, lr, step: the optimizer and its state (see ``optim.py``),
                  WT's at state[:, sw:sw + O * I] and b's at state[:, sb:sb + O]; unused unless
                  ``update``

    The update is fused into the weight gradient: the thread that computes rows of dWT updates the
    same rows of WT at once, while both are in its cache, rather than in a pass of its own over every
    parameter afterwards. The forward pass splits WT by the same rows, so a row of weights stays
    with one core from step to step. (Measured on the seed network at batch 16: a separate pass over
    the whole buffer cost ~15 us of a ~94 us step.) When the layer runs on one thread, the update
    follows the whole gradient instead. The input gradient is computed first: it reads the weights
    as they were in the forward pass.
    """
    B, O = dout.shape
    I = inp.shape[1]
    parallel = threaded(B, I, O)
    if dinp.shape[0] > 0:
        if parallel:
            _input_grad_mt(dinp, dout, WT, inp, inp_act)
        else:
            _input_grad_1t(dinp, dout, WT, inp, inp_act)
    if parallel:
        _weight_grad_mt(dWT, db, dout, inp, WT, b, nb, state, sw, sb, hyper, opt, lr, step, 1 if update else 0)
    else:
        _weight_grad_1t(dWT, db, dout, inp, WT, b, nb, state, sw, sb, hyper, opt, lr, step, 2 if update else 0)


# Below this many outputs, prediction computes a layer as dot products (``_dot_columns``) rather
# than row combinations: a row of W this short fills less than one or two vector registers, and the
# loop over it is mostly remainder. Measured, us per 512 rows (combinations / dot products), I = 64:
# O = 1, 18 / 4.3; O = 10, 17 / 9.8; O = 24, 21 / 17; O = 32, 21.5 / 21.6; O = 64, 32 / 40.
# (I = 128: the same crossing, at O = 32.)
NARROW = 32

# With AVX2, whose 16 registers do not hold the 4 x 4 block of coefficients of a row combination
# beside its operands, the 4 x 2 dot tile is faster for every layer of the seed network. Measured on
# an AVX2 machine, two threads, us per 512 rows of 50 % zero inputs (combinations / dot products):
# 784 -> 128, 976-1077 / 691-825; 128 -> 64, 83-108 / 76-99; 64 -> 10, 63-64 / 14-15; all 10,000
# rows through 784 -> 128, 17.6-22.6 / 14.3-14.8 ms (136-140 GFLOP/s, the machine's np.matmul peak).
# But the dot products need W transposed, copied per predict_proba call (``network.for_prediction``),
# which costs ~60 us for the seed network: so there every layer takes dot products only when
# prediction's chunks have at least DOT_ROWS rows. (predict_proba, us, every layer by dot products
# / only the narrow one: 1 row 85 / 24, 16 rows 134 / 56, 128 rows 381 / 372; 10,000 rows 25.0 /
# 32.4 ms.) With AVX-512, never.
DOT_ROWS = 1 << 62 if WIDE_REGISTERS else 256


@njit(inline="always", **JIT)
def infers_by_dots(fan_out, rows):
    """Whether prediction computes a layer with ``fan_out`` outputs, in chunks of ``rows`` rows, as
    dot products with its transposed weights WT, rather than as row combinations of W."""
    return fan_out < NARROW or rows >= DOT_ROWS


@njit(**JIT)
def dense_infer(out, inp, W, WT, b, act, data):
    """out (B, O) <- f(inp (B, I) @ W (I, O) + b (O,)): the forward pass on the Model's layout.
    WT: W transposed (O, I) where ``infers_by_dots``, else empty (0, I).

    ``data``: inp is the caller's data, read from memory (the first layer of prediction), which is
    also checked here for NaN and inf: each block of 4 rows right after its products, while its
    rows are still in cache; in the row-combination form (not for narrow layers, nor with AVX2's
    dot products), the next block's rows are prefetched during those products. Returns
    the number of blocks of inp holding a NaN or an infinity (0 without ``data``); their outputs are
    then meaningless. (Measured on 10,000 Fashion-MNIST images through the seed network, ms, best /
    median of 25 alternating calls: a check pass over each chunk of 512 rows before the layers 12.4
    / 12.8; the check after each block's products 12.0 / 12.3; with the prefetch too, 11.8 / 12.0.)
    """
    B, I = inp.shape
    if threaded(B, I, out.shape[1]):
        return _infer_mt(out, inp, W, WT, b, act, data)
    return _infer_1t(out, inp, W, WT, b, act, data)
