"""Each dense-layer kernel against a naive NumPy product (fastmlp/kernels/dense.py).

The shapes cover every edge of the 4-row blocks and 4-term groups (sizes 1 to 9 and 17), the
threaded and the single-threaded compilation of each loop (called directly, so small shapes run the
threaded code too), both dtypes and every activation. The engine-level tests (test_gradients,
test_engines, test_torch) check the same kernels again inside whole networks.
"""

import numba
import numpy as np
import pytest
from numba import njit

from fastmlp import reference
from fastmlp.kernels import config, dense, network
from fastmlp.kernels.activations import ACTIVATIONS, exp
from fastmlp.kernels.config import JIT
from fastmlp.kernels.optim import ADAM, ADAMW, SGD

SIZES = [(1, 1, 1), (3, 2, 5), (4, 4, 4), (5, 7, 3), (8, 9, 6), (17, 33, 10), (9, 8, 17)]
TOL = {np.float64: 1e-12, np.float32: 2e-5}


def _act(z, name):
    return {"identity": z, "relu": np.maximum(z, 0), "sigmoid": 1 / (1 + np.exp(-z)),
            "tanh": np.tanh(z)}[name]


def _grad_from_output(a, name):
    return {"identity": np.ones_like(a), "relu": (a > 0).astype(a.dtype), "sigmoid": a * (1 - a),
            "tanh": 1 - a * a}[name]


def _case(B, I, O, dtype, seed=0, sparse=False):
    rng = np.random.default_rng(seed + 1000 * B + 100 * I + O)
    inp = rng.standard_normal((B, I)).astype(dtype)
    if sparse:  # exact zeros, as ReLU outputs and image borders have
        inp[rng.random((B, I)) < 0.6] = 0
    W = rng.standard_normal((I, O)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    dout = rng.standard_normal((B, O)).astype(dtype)
    return inp, W, b, dout


def _no_update(WT, b):
    """The optimizer arguments of ``_weight_grad`` / ``dense_backward`` when they only compute
    gradients: b, nb, state, sw, sb, hyper, opt, lr, step, update."""
    O, I = WT.shape
    return (b, 0, np.zeros((0, O * I + O), WT.dtype), 0, O * I, np.zeros(6), SGD, 0.0, 1, 0)


def _check(actual, expected, dtype):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,I,O", SIZES)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_forward_and_infer_match_numpy(B, I, O, dtype, act):
    inp, W, b, _ = _case(B, I, O, dtype, sparse=True)
    expected = _act(inp.astype(np.float64) @ W + b, act)
    for kernel in (dense._forward_mt, dense._forward_1t, dense.dense_forward):
        out = np.full((B, O), np.nan, dtype)
        kernel(out, inp, np.ascontiguousarray(W.T), b, ACTIVATIONS[act])
        _check(out, expected, dtype)
    WT = np.ascontiguousarray(W.T)
    for kernel in (dense._infer_mt, dense._infer_1t, dense.dense_infer):
        for wt in (WT[:0], WT):  # row combinations of W; dot products with WT (narrow layers)
            out = np.full((B, O), np.nan, dtype)
            kernel(out, inp, W, wt, b, ACTIVATIONS[act], False)
            _check(out, expected, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_infer_on_data_counts_the_blocks_with_nan_or_inf_and_changes_no_output(dtype):
    """The first layer of prediction (``data``: the next block's rows prefetched, each block of 4
    rows checked after its products) gives the plain pass's bits on finite rows, and counts exactly
    the blocks of 4 rows that hold a NaN or an infinity."""
    B, I, O = 41, 50, 23
    inp, W, b, _ = _case(B, I, O, dtype, seed=5, sparse=True)
    bad = inp.copy()
    bad[[0, 2, 13, 40], [0, 49, 7, 3]] = [np.nan, np.inf, -np.inf, np.nan]
    blocks = int(np.any(~np.isfinite(np.pad(bad, ((0, 3), (0, 0)))).reshape(-1, 4 * I), axis=1).sum())
    assert blocks == 3  # rows 0 and 2, row 13, row 40 (the last block, of one row)
    WT = np.ascontiguousarray(W.T)
    for kernel in (dense._infer_mt, dense._infer_1t, dense.dense_infer):
        for wt in (WT[:0], WT):
            plain, checked = np.empty((B, O), dtype), np.empty((B, O), dtype)
            assert kernel(plain, inp, W, wt, b, ACTIVATIONS["relu"], False) == 0
            assert kernel(checked, inp, W, wt, b, ACTIVATIONS["relu"], True) == 0
            np.testing.assert_array_equal(checked, plain)
            assert kernel(checked, bad, W, wt, b, ACTIVATIONS["relu"], True) == blocks
            assert kernel(checked, bad, W, wt, b, ACTIVATIONS["relu"], False) == 0


def test_the_register_width_is_numbas_target(monkeypatch):
    """The tile follows the features numba compiles for: NUMBA_CPU_FEATURES when set, else the
    host's as numba reads them."""
    from numba.core.codegen import get_host_cpu_features
    assert config.WIDE_REGISTERS == ("+avx512f" in get_host_cpu_features().split(","))
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx,+avx2,+fma,-avx512f")
    assert not config._compiles_for_avx512()
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx,+avx2,+fma,+avx512f,+avx512dq")
    assert config._compiles_for_avx512()


def _tiles_of(tile, rows, cols):
    @njit(**JIT)
    def every_tile(C, A, Bt):
        for i in range(0, C.shape[0] - C.shape[0] % rows, rows):
            for j in range(0, C.shape[1] - C.shape[1] % cols, cols):
                tile(C, A, Bt, i, j)
    return every_tile


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tile,cols", [("_dot_tile_4x4", 4), ("_dot_tile_4x2", 2)])
def test_both_dot_tiles_match_numpy(tile, cols, dtype):
    """Only the tile that the machine's vector registers fit (dense.DOT_COLUMNS) is compiled into
    the kernels, so the other is checked here on its own, whatever machine runs the tests."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((8, 37)).astype(dtype)
    Bt = rng.standard_normal((12, 37)).astype(dtype)
    C = np.full((8, 12), np.nan, dtype)
    _tiles_of(getattr(dense, tile), 4, cols)(C, A, Bt)
    _check(C, A.astype(np.float64) @ Bt.T, dtype)
    assert dense._dot_tile is getattr(dense, f"_dot_tile_4x{dense.DOT_COLUMNS}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,I,O", SIZES)
def test_backward_matches_numpy(B, I, O, dtype):
    inp, W, _, dout = _case(B, I, O, dtype, seed=1, sparse=True)
    for act in sorted(ACTIVATIONS):
        a = _act(inp, act).astype(dtype)  # the layer's input is the layer below's output
        WT = np.ascontiguousarray(W.T)
        dWT_expected = dout.T.astype(np.float64) @ a
        dinp_expected = (dout.astype(np.float64) @ WT) * _grad_from_output(a.astype(np.float64), act)
        for grad, inp_grad in ((dense._weight_grad_mt, dense._input_grad_mt),
                               (dense._weight_grad_1t, dense._input_grad_1t)):
            dWT, db = np.full((O, I), np.nan, dtype), np.full(O, np.nan, dtype)
            grad(dWT, db, dout, a, WT, *_no_update(WT, db))
            _check(dWT, dWT_expected, dtype)
            _check(db, dout.astype(np.float64).sum(axis=0), dtype)
            dinp = np.full((B, I), np.nan, dtype)
            inp_grad(dinp, dout, WT, a, ACTIVATIONS[act])
            _check(dinp, dinp_expected, dtype)
        dWT, db, dinp = np.full((O, I), np.nan, dtype), np.full(O, np.nan, dtype), np.full((B, I), np.nan, dtype)
        dense.dense_backward(dinp, dWT, db, dout, a, WT, ACTIVATIONS[act], *_no_update(WT, db))
        _check(dWT, dWT_expected, dtype)
        _check(dinp, dinp_expected, dtype)
        # the first layer: no input gradient asked for, none written
        untouched = np.full((B, I), 7.0, dtype)
        dense.dense_backward(untouched[:0], dWT, db, dout, a, WT, ACTIVATIONS[act], *_no_update(WT, db))
        assert (untouched == 7.0).all()


def test_threaded_and_single_threaded_kernels_agree_bit_for_bit():
    """Each row's sums run in an order the code fixes, whoever computes the row."""
    inp, W, b, dout = _case(37, 50, 23, np.float32, seed=3, sparse=True)
    WT = np.ascontiguousarray(W.T)
    results = []
    for fwd, inf, grad, inp_grad in ((dense._forward_mt, dense._infer_mt, dense._weight_grad_mt, dense._input_grad_mt),
                                     (dense._forward_1t, dense._infer_1t, dense._weight_grad_1t, dense._input_grad_1t)):
        out, out2 = np.empty((37, 23), np.float32), np.empty((37, 23), np.float32)
        fwd(out, inp, WT, b, 1)
        inf(out2, inp, W, WT[:0], b, 1, False)
        dWT, db, dinp = np.empty((23, 50), np.float32), np.empty(23, np.float32), np.empty((37, 50), np.float32)
        grad(dWT, db, dout, inp, WT, *_no_update(WT, db))
        inp_grad(dinp, dout, WT, inp, 1)
        results.append((out, out2, dWT, db, dinp))
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


def test_nan_in_the_input_reaches_the_output():
    """Divergence must stay visible: a NaN is never skipped as if it were a zero."""
    inp, W, b, dout = _case(8, 8, 4, np.float64)
    inp[5, 2] = np.nan
    out = np.zeros((8, 4))
    for WT in (W.T[:0], np.ascontiguousarray(W.T)):
        out[:] = 0
        dense.dense_infer(out, inp, W, np.ascontiguousarray(WT), b, ACTIVATIONS["relu"], False)
        assert np.isnan(out[5]).all() and np.isfinite(np.delete(out, 5, axis=0)).all()
    dense.dense_forward(out, inp, np.ascontiguousarray(W.T), b, ACTIVATIONS["relu"])
    assert np.isnan(out[5]).all() and np.isfinite(np.delete(out, 5, axis=0)).all()
    dWT, db = np.zeros((4, 8)), np.zeros(4)
    WT = np.ascontiguousarray(W.T)
    dense.dense_backward(np.zeros((8, 8)), dWT, db, dout, inp, WT, 0, *_no_update(WT, db))
    assert np.isnan(dWT[:, 2]).all() and np.isfinite(np.delete(dWT, 2, axis=1)).all()


# (opt, momentum, nesterov, weight_decay): torch.optim's rules, as in test_optimizers
RULES = [(SGD, 0.0, 0, 0.0), (SGD, 0.0, 0, 0.01), (SGD, 0.9, 0, 0.0), (SGD, 0.9, 1, 0.01),
         (ADAM, 0.0, 0, 0.0), (ADAM, 0.0, 0, 0.01), (ADAMW, 0.0, 0, 0.01)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,I,O", [(5, 7, 3), (17, 33, 10), (9, 8, 17)])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("bias", [True, False])
def test_backward_with_update_matches_numpy_gradient_then_optimizer(B, I, O, dtype, rule, bias):
    """The fused update: every row of WT and entry of b gets the optimizer's step from its own
    gradient, the input gradient sees the weights from before the step, and a bias-free layer
    (nb = 0) keeps its biases."""
    opt, mu, nesterov, wd = rule
    inp, W, b, dout = _case(B, I, O, dtype, seed=2, sparse=True)
    a = np.maximum(inp, 0)
    WT0 = np.ascontiguousarray(W.T)
    hyper = np.array([mu, nesterov, wd, 0.9, 0.999, 1e-8])
    S = 0 if opt == SGD and mu == 0 else (1 if opt == SGD else 2)
    rng = np.random.default_rng(B * I * O)
    # a later step's state; the layer's stretch starts at column 5 of a wider buffer, as in a network
    pad = 5
    state0 = (np.abs(rng.standard_normal((S, pad + O * I + O + 3))) * 0.1).astype(dtype)
    lr, step = 0.05, 3
    # the oracle: NumPy gradients, then the reference engine's optimizer on [WT, b] flattened
    dWT_ref = dout.T.astype(np.float64) @ a
    db_ref = dout.astype(np.float64).sum(axis=0)
    dinp_ref = (dout.astype(np.float64) @ WT0) * (a > 0)
    n = O * I + (O if bias else 0)
    params = np.concatenate([WT0.ravel(), b]).astype(np.float64)
    state = state0[:, pad:pad + O * I + O].astype(np.float64)
    reference._optimizer_step(params[:n], np.concatenate([dWT_ref.ravel(), db_ref])[:n], state[:, :n],
                              hyper, opt, lr, step)
    # the weight-gradient kernels with the update per block (1) and after the loop (2)
    for kernel, mode in ((dense._weight_grad_mt, 1), (dense._weight_grad_1t, 1), (dense._weight_grad_mt, 2),
                         (dense._weight_grad_1t, 2), (dense.dense_backward, True)):
        WT, b_, st = WT0.copy(), b.copy(), state0.copy()
        dWT, db = np.full((O, I), np.nan, dtype), np.full(O, np.nan, dtype)
        args = (b_, O if bias else 0, st, pad, pad + O * I, hyper, opt, lr, step, mode)
        if kernel is dense.dense_backward:
            dinp = np.full((B, I), np.nan, dtype)
            kernel(dinp, dWT, db, dout, a, WT, ACTIVATIONS["relu"], *args)
            _check(dinp, dinp_ref, dtype)
        else:
            kernel(dWT, db, dout, a, WT, *args)
        _check(dWT, dWT_ref, dtype)
        _check(db, db_ref, dtype)
        _check(WT.ravel(), params[:O * I], dtype)
        _check(b_, params[O * I:] if bias else b, dtype)
        if S:
            _check(st[:, pad:pad + n], state[:, :n], dtype)
            np.testing.assert_array_equal(st[:, :pad], state0[:, :pad])  # outside the layer's stretch
            np.testing.assert_array_equal(st[:, pad + n:], state0[:, pad + n:])


@pytest.mark.parametrize("M,N", [(1, 1), (3, 17), (16, 16), (33, 20), (784, 128), (10, 64)])
def test_transpose(M, N):
    src = np.random.default_rng(M * N).standard_normal((M, N))
    for kernel in (dense._transpose_mt, dense._transpose_1t, dense.transpose):
        dst = np.full((N, M), np.nan)
        kernel(dst, src)
        np.testing.assert_array_equal(dst, src.T)


def test_to_and_from_the_transposed_layout():
    """to_transposed turns every weight matrix of a flat buffer to (fan_out, fan_in) and copies the
    rest; from_transposed undoes it exactly (also for optimizer-state rows without bias-free
    biases)."""
    from fastmlp import Model
    model = Model([7, 5, 6, 3], batchnorm=True, seed=4, dtype=np.float64)
    P = model._params.size
    src = np.random.default_rng(5).standard_normal(P)
    work = np.full(P, np.nan)
    network.to_transposed(work, src, model._layout)
    for l, row in enumerate(model._layout):
        I, O, off = int(row[0]), int(row[1]), int(row[2])
        np.testing.assert_array_equal(work[off:off + I * O].reshape(O, I), src[off:off + I * O].reshape(I, O).T)
    n_weights = sum(int(r[0]) * int(r[1]) for r in model._layout)
    np.testing.assert_array_equal(work[n_weights:], src[n_weights:])
    back = np.full(P, np.nan)
    network.from_transposed(back, work, model._layout)
    np.testing.assert_array_equal(back, src)
    shorter = np.full(n_weights + 2, np.nan)  # a state row that stops early
    network.to_transposed(shorter, src[:n_weights + 2], model._layout)
    np.testing.assert_array_equal(shorter, work[:n_weights + 2])


@njit(**dict(JIT, cache=False))  # (a cache here would not see changes to exp)
def _exp_loop(out, x):
    """activations.exp over an array: one loop, which the compiler vectorises."""
    for i in range(x.shape[0]):
        out[i] = exp(x[i])


@njit(**dict(JIT, cache=False))
def _exp_scalar(x):
    return exp(x)


def test_exp_is_within_one_ulp_of_numpy_and_keeps_its_special_values():
    """``activations.exp`` (the sigmoid's, a polynomial instead of libm's call) against np.exp:
    over the whole range, where the result is a normal number, at most 1 ulp apart; subnormal
    results within one subnormal step; and nan, +-inf, overflow and underflow as NumPy has them.
    The vectorised loop and a lone call (the scalar code) give the same bits."""
    rng = np.random.default_rng(0)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, -1e-300, 709.78, 709.79, 710.0,
                        1e300, -708.3, -708.4, -744.4, -745.2, -746.0, -1e300, 0.5 * np.log(2)])
    x = np.concatenate([rng.uniform(-746, 710, 200_000), rng.uniform(-40, 40, 200_000),
                        rng.uniform(-1, 1, 100_000), special])
    got = np.empty_like(x)
    _exp_loop(got, x)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    normal = np.isfinite(want) & (want >= np.finfo(np.float64).tiny)
    ulps = np.abs(got[normal] - want[normal]) / np.spacing(want[normal])
    assert ulps.max() <= 1.0, ulps.max()
    assert ulps.mean() < 0.2
    sub = ~normal & np.isfinite(want)
    assert np.abs(got[sub] - want[sub]).max() <= np.spacing(0.0)
    np.testing.assert_array_equal(got[-len(special):], want[-len(special):])  # nan == nan here
    lone = np.array([_exp_scalar(v) for v in x[::997]])
    np.testing.assert_array_equal(lone, got[::997])
