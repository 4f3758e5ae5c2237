"""The small-network path (kernels/small.py) against the blocked layer kernels and the NumPy engine.

``train_small`` and ``network.train_blocked`` take the same arguments; run on the same network,
data, batch order and learning rates they must give the same losses, gradients, weights and
optimizer state up to rounding (their sums run in different orders). Each is also an oracle for the
other's derivatives: a wrong term in either shows as a difference far above the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastmlp import Model, xor
from fastmlp.kernels import network, small
from fastmlp.kernels.optim import OPTIMIZERS, state_rows
from fastmlp.kernels.output import LOSSES, OUTPUTS

from conftest import make_targets

PAIRS = [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"), ("sigmoid", "mse"),
         ("identity", "mse")]
OPTIMIZER_CASES = [  # (name, momentum, nesterov, weight_decay)
    ("sgd", 0.0, False, 0.0), ("sgd", 0.0, False, 0.01), ("sgd", 0.9, False, 0.0), ("sgd", 0.9, True, 0.01),
    ("adam", 0.0, False, 0.01), ("adamw", 0.0, False, 0.01)]


def _run(kernel, model, X, y, batch, steps, opt_case, weights, seed=0):
    """Train ``steps`` batches of ``batch`` rows (the last one shorter) with ``kernel``; return
    (batch losses, params, grads, optimizer state)."""
    name, momentum, nesterov, wd = opt_case
    rng = np.random.default_rng(seed)
    n = len(X)
    sizes = [batch] * (steps - 1) + [max(1, batch // 2)]
    order = rng.integers(0, n, sum(sizes)).astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    lrs = np.linspace(0.05, 0.02, steps).astype(model.dtype)
    losses = np.zeros(steps)
    params, grads = model._params.copy(), np.zeros_like(model._params)
    ws = np.zeros(network.workspace_size(model._layout, batch), model.dtype)
    state = np.zeros((state_rows(name, momentum), model._n_trainable), model.dtype)
    hyper = np.array([momentum, nesterov, wd, 0.9, 0.999, 1e-8])
    if model.loss == "cross_entropy":
        y_int, y_float = y.astype(np.int64), np.zeros((0, model.n_outputs), model.dtype)
    else:
        y_int, y_float = np.zeros(0, np.int64), y.astype(model.dtype)
    args = (losses, params, grads, ws, X.astype(model.dtype), y_int, y_float, weights.astype(model.dtype),
            order, bounds, lrs, model._layout, OUTPUTS[model.output], LOSSES[model.loss],
            model._n_trainable, batch, OPTIMIZERS[name], state)
    if kernel == "small":
        small.train_small(*args, hyper, 3)
    else:
        network.train_blocked(*args, np.empty_like(state), hyper, 3, model._rates, model._running, 0)
    return losses, params, grads, state


@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
@pytest.mark.parametrize("bias", [True, False])
def test_small_path_matches_blocked_kernels(output, loss, activation, bias):
    rng = np.random.default_rng(1)
    model = Model([3, 5, 4, 2], activation=activation, output=output, loss=loss, bias=bias,
                  dtype=np.float64, seed=2)
    if bias:  # nonzero biases, so that their use in the forward pass is checked too
        for b in model.biases:
            b[...] = rng.normal(0, 0.5, b.shape)
    X, y = rng.standard_normal((40, 3)), make_targets(rng, loss, 40, 2)
    weights = rng.uniform(0.0, 2.0, 40)
    for opt_case in OPTIMIZER_CASES[:1] + OPTIMIZER_CASES[3:]:
        for w in (np.zeros(0), weights):
            a = _run("small", model, X, y, 4, 12, opt_case, w)
            b = _run("blocked", model, X, y, 4, 12, opt_case, w)
            for name, u, v in zip(("losses", "params", "grads", "state"), a, b):
                np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12, err_msg=f"{name} {opt_case}")
            assert np.abs(a[1] - model._params).max() > 1e-3  # the steps did move the weights
            if not bias:  # bias-free: biases stay zero
                assert not a[1][model._n_trainable:].any()


@pytest.mark.parametrize("layers", [[2, 3, 1], [3, 5, 3], [4, 3, 5, 1]])
@pytest.mark.parametrize("batch", [3, 4, 12])
def test_small_path_with_regions_of_4_mod_8_elements(layers, batch):
    """Regions of 4 (mod 8) elements: each activation's loop runs over 4 more elements, in the region
    that follows (``small._vector_span``), which must come out exactly as the layer kernels' own."""
    rng = np.random.default_rng(3)
    model = Model(layers, activation="sigmoid", output="sigmoid", loss="mse", dtype=np.float64, seed=5)
    assert small.use_small(model._layout, batch)
    X, y = rng.standard_normal((30, layers[0])), make_targets(rng, "mse", 30, layers[-1])
    a = _run("small", model, X, y, batch, 20, OPTIMIZER_CASES[0], np.zeros(0))
    b = _run("blocked", model, X, y, batch, 20, OPTIMIZER_CASES[0], np.zeros(0))
    for name, u, v in zip(("losses", "params", "grads", "state"), a, b):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("opt_case", OPTIMIZER_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_path_optimizers_and_dtypes(opt_case, dtype):
    rng = np.random.default_rng(3)
    model = Model([2, 6, 3], activation="tanh", output="softmax", dtype=dtype, seed=4)
    X, y = rng.standard_normal((30, 2)), rng.integers(0, 3, 30)
    a = _run("small", model, X, y, 5, 15, opt_case, np.zeros(0))
    b = _run("blocked", model, X, y, 5, 15, opt_case, np.zeros(0))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for name, u, v in zip(("losses", "params", "grads", "state"), a, b):
        np.testing.assert_allclose(u, v, **tol, err_msg=name)


def test_which_networks_take_the_small_path():
    xor_net = xor.article_model()
    assert small.use_small(xor_net._layout, 4)
    assert not small.use_small(xor_net._layout, small.SMALL_MAX_WORK)  # 12 weights x that many rows
    assert not small.use_small(Model([784, 128, 64, 10])._layout, 1)
    for extras in (dict(dropout=0.1), dict(batchnorm=True)):  # extras go through the layer kernels
        assert not small.use_small(Model([2, 4, 1], **extras)._layout, 4)


@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("batch", [1, 3, 4, 7])
def test_fit_on_the_small_path_matches_the_numpy_engine(output, loss, batch):
    """Model.fit end to end (batches through a 2-5-2 network: the small path, whose workspace pads
    a batch to a multiple of 4 samples; 24 samples leave a shorter last batch for 7) against the
    reference engine, with sample weights and momentum; then predict_proba on 11 rows."""
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((24, 2)), make_targets(rng, loss, 24, 2)
    kw = dict(activation="sigmoid", output=output, loss=loss, dtype=np.float64)
    fast, ref = Model([2, 5, 2], seed=6, engine="numba", **kw), Model([2, 5, 2], seed=7, engine="numpy", **kw)
    ref._params[...] = fast._params
    assert small.use_small(fast._layout, batch)
    fit = dict(epochs=5, batch_size=batch, lr=0.1, momentum=0.9, seed=8, sample_weight=rng.uniform(0.5, 1.5, 24))
    h_fast, h_ref = fast.fit(X, y, **fit), ref.fit(X, y, **fit)
    np.testing.assert_allclose(h_fast.loss, h_ref.loss, rtol=1e-10)
    np.testing.assert_allclose(fast._params, ref._params, rtol=1e-9, atol=1e-12)
    X_new = rng.standard_normal((11, 2))
    assert small.use_small(fast._layout, 11)  # predict_proba's batch: all 11 rows, padded to 12
    np.testing.assert_allclose(fast.predict_proba(X_new), ref.predict_proba(X_new), rtol=1e-12, atol=1e-15)



def _called(form):
    from numba import njit
    from fastmlp.kernels.config import JIT

    @njit(**JIT)
    def call(x, e):
        return form(x, e)
    return call


def test_both_forms_of_the_sample_sums_match_numpy():
    """small._dot_samples is one of two forms, by the machine's vector registers; both are checked
    here, whatever machine runs the tests."""
    from fastmlp.kernels.config import WIDE_REGISTERS
    rng = np.random.default_rng(5)
    for form in (small._dot_samples_loop, small._dot_samples_4):
        call = _called(form)
        for R in (4, 8, 20):
            x, e = rng.standard_normal(R), rng.standard_normal(R)
            np.testing.assert_allclose(call(x, e), np.dot(x, e), rtol=1e-13, atol=1e-15)
    assert small._dot_samples is (small._dot_samples_loop if WIDE_REGISTERS else small._dot_samples_4)
