"""Batch normalization, residual connections and dropout (fastmlp/kernels/layers.py).

Oracles: PyTorch (nn.BatchNorm1d, autograd, SGD) with identical weights and batches; central finite
differences of the batch loss; binomial statistics for dropout's masks; the NumPy engine for the
numba one; and bit-exact equality where the design promises it (dropout 0, thread counts, save/load).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from conftest import batch_loss_and_grad, fit_batch_losses
from torch_oracle import torch_batch_losses
from fastmlp import Model
from fastmlp.kernels import network
from fastmlp.kernels.activations import IDENTITY
from fastmlp.kernels.layers import hidden_output

torch.set_num_threads(1)

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-9, atol=1e-12)}


# ---- helpers ------------------------------------------------------------------------------------


class TorchMLP(nn.Module):
    """Linear -> [BatchNorm1d] -> ReLU [-> + input of the layer, from the second hidden layer on],
    for every hidden layer, then a final Linear (logits)."""

    def __init__(self, layers, batchnorm=False, residual=False):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(i, o) for i, o in zip(layers[:-1], layers[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(o) for o in layers[1:-1]) if batchnorm else None
        self.residual = residual

    def forward(self, x):
        for l, lin in enumerate(self.linears[:-1]):
            y = lin(x)
            if self.norms is not None:
                y = self.norms[l](y)
            a = torch.relu(y)
            x = a + x if self.residual and l > 0 else a
        return self.linears[-1](x)


def _running_of(model):
    """[(running_mean, running_var), ...] per batch-normalised hidden layer, views into
    model._running, located through the layout's running-statistics offsets."""
    out = []
    for row in model._layout:
        if row[network.FLAGS] & network.BATCHNORM:
            off, width = row[network.RUN_OFF], row[network.FAN_OUT]
            out.append((model._running[0, off:off + width], model._running[1, off:off + width]))
    return out


def _randomise_extras(model, rng):
    """Non-zero biases and gamma/beta away from 1/0, so that a mix-up of any of them shows."""
    for i, b in enumerate(model.biases):
        model.biases[i] = rng.normal(0, 0.2, b.shape)
    for gamma, beta in model._batchnorm_views():
        gamma[...] = rng.uniform(0.5, 1.5, gamma.shape)
        beta[...] = rng.normal(0, 0.3, beta.shape)


def _torch_copy(model):
    """A TorchMLP in the model's dtype holding exactly the model's parameters and running stats."""
    net = TorchMLP(model.layers, model.batchnorm, model.residual).to(TORCH_DTYPE[model.dtype.type])
    with torch.no_grad():
        for lin, W, b in zip(net.linears, model.weights, model.biases, strict=True):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        if model.batchnorm:
            for bn, (gamma, beta), (mean, var) in zip(net.norms, model._batchnorm_views(),
                                                      _running_of(model), strict=True):
                assert bn.momentum == 0.1 and bn.eps == 1e-5  # torch's defaults, fastmlp's constants
                bn.weight.copy_(torch.from_numpy(gamma.copy()))
                bn.bias.copy_(torch.from_numpy(beta.copy()))
                bn.running_mean.copy_(torch.from_numpy(mean.copy()))
                bn.running_var.copy_(torch.from_numpy(var.copy()))
    return net


def _torch_train(net, X, y, batch, lr, epochs=1):
    """SGD over every parameter (linears, gamma, beta), batches in order; each batch's loss."""
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    return np.array([loss for _ in range(epochs) for loss in torch_batch_losses(net, opt, X, y, batch)])


def _softmax_eval(net, X):
    net.eval()
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(X)), 1).numpy()


def _compare_training_with_torch(model, X, y, batch, lr, epochs=1):
    """Train the model and its torch twin on identical batches; everything must agree."""
    dtype = model.dtype.type
    tol = TOL[dtype]
    net = _torch_copy(model)
    start = model._params.copy()
    Xt = torch.from_numpy(X.astype(dtype))
    torch_losses = _torch_train(net, Xt, torch.from_numpy(y), batch, lr, epochs)
    losses, history = fit_batch_losses(model, X.astype(dtype), y, batch, epochs, lr=lr)
    assert np.abs(model._params - start).max() > 1e-2  # moved far beyond the tolerances

    loss_rtol = max(tol["rtol"], 1e-12)
    np.testing.assert_allclose(losses, torch_losses, rtol=loss_rtol, err_msg="per-batch losses")
    np.testing.assert_allclose(history.loss, torch_losses.reshape(epochs, -1).mean(axis=1), rtol=loss_rtol)
    for l, (lin, W, b) in enumerate(zip(net.linears, model.weights, model.biases, strict=True)):
        np.testing.assert_allclose(W, lin.weight.detach().numpy().T, **tol, err_msg=f"W{l}")
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), **tol, err_msg=f"b{l}")
    if model.batchnorm:
        for l, (bn, (gamma, beta), (mean, var)) in enumerate(zip(net.norms, model._batchnorm_views(),
                                                                 _running_of(model), strict=True)):
            np.testing.assert_allclose(gamma, bn.weight.detach().numpy(), **tol, err_msg=f"gamma{l}")
            np.testing.assert_allclose(beta, bn.bias.detach().numpy(), **tol, err_msg=f"beta{l}")
            np.testing.assert_allclose(mean, bn.running_mean.numpy(), **tol, err_msg=f"running_mean{l}")
            np.testing.assert_allclose(var, bn.running_var.numpy(), **tol, err_msg=f"running_var{l}")
            assert np.abs(mean).max() > 1e-2 and np.abs(var - 1).max() > 1e-2  # they did move
    return net


def _data(seed, n, d, k):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d) + rng.normal(0, 0.5, d)
    return X, rng.integers(0, k, n)


# ---- 1. batch normalization against torch.nn.BatchNorm1d -------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_training_matches_torch(dtype):
    """16 SGD steps through Linear-BN-ReLU-Linear-BN-ReLU-Linear: the same per-batch losses, weights,
    gamma/beta and running mean/variance as torch (momentum 0.1, unbiased running variance)."""
    rng = np.random.default_rng(11)
    model = Model([12, 16, 16, 4], batchnorm=True, dtype=dtype, seed=12)
    _randomise_extras(model, rng)
    X, y = _data(13, 256, 12, 4)
    net = _compare_training_with_torch(model, X, y, batch=16, lr=0.1)

    # (b) inference uses the running statistics, as torch's eval mode
    X_new = _data(14, 50, 12, 4)[0].astype(dtype)
    np.testing.assert_allclose(model.predict_proba(X_new), _softmax_eval(net, X_new), **TOL[dtype])
    # and a single row can be predicted (no batch statistics at inference)
    np.testing.assert_allclose(model.predict_proba(X_new[:1]), _softmax_eval(net, X_new[:1]), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_inference_uses_running_statistics(dtype):
    """With arbitrary running statistics (not the batch's), predict_proba equals torch's eval mode,
    and differs from what batch statistics would give."""
    rng = np.random.default_rng(21)
    model = Model([10, 12, 8, 3], batchnorm=True, dtype=dtype, seed=22)
    _randomise_extras(model, rng)
    for mean, var in _running_of(model):
        mean[...] = rng.normal(0, 1, mean.shape)
        var[...] = rng.uniform(0.2, 3.0, var.shape)
    net = _torch_copy(model)
    X = _data(23, 70, 10, 3)[0].astype(dtype)
    before = model._running.copy()
    p = model.predict_proba(X)
    np.testing.assert_array_equal(model._running, before)  # inference leaves the statistics alone
    np.testing.assert_allclose(p, _softmax_eval(net, X), **TOL[dtype])
    net.train()
    with torch.no_grad():
        p_batch = torch.softmax(net(torch.from_numpy(X)), 1).numpy()
    assert np.abs(p - p_batch).max() > 1e-2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_gradients_match_autograd(dtype):
    """One full batch: the loss and dL/dW, dL/db, dL/dgamma, dL/dbeta equal torch autograd's."""
    rng = np.random.default_rng(31)
    model = Model([9, 14, 11, 5], batchnorm=True, dtype=dtype, seed=32)
    _randomise_extras(model, rng)
    X, y = _data(33, 24, 9, 5)
    X = X.astype(dtype)
    net = _torch_copy(model)
    net.train()
    loss_t = nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y))
    loss_t.backward()
    loss, grads = batch_loss_and_grad(model, X, y)
    tol = TOL[dtype]
    assert loss == pytest.approx(loss_t.item(), rel=max(tol["rtol"], 1e-12))
    for l, (lin, dW, db) in enumerate(zip(net.linears, model._views("weights", grads),
                                          model._views("biases", grads), strict=True)):
        np.testing.assert_allclose(dW, lin.weight.grad.numpy().T, **tol, err_msg=f"dW{l}")
        np.testing.assert_allclose(db, lin.bias.grad.numpy(), **tol, err_msg=f"db{l}")
    for l, (bn, (dgamma, dbeta)) in enumerate(zip(net.norms, model._batchnorm_views(grads), strict=True)):
        np.testing.assert_allclose(dgamma, bn.weight.grad.numpy(), **tol, err_msg=f"dgamma{l}")
        np.testing.assert_allclose(dbeta, bn.bias.grad.numpy(), **tol, err_msg=f"dbeta{l}")
        assert np.abs(dgamma).max() > 1e-3 and np.abs(dbeta).max() > 1e-3


def test_batchnorm_layout_of_flat_params():
    """gamma, beta sit after all weights and before the biases, per hidden layer; n_params counts them."""
    model = Model([5, 7, 6, 3], batchnorm=True, dtype=np.float64, seed=1)
    n_w = 5 * 7 + 7 * 6 + 6 * 3
    assert model.n_params == n_w + 2 * (7 + 6) + (7 + 6 + 3)
    views = model._batchnorm_views()
    assert [(v[0].shape, v[1].shape) for v in views] == [((7,), (7,)), ((6,), (6,))]
    for gamma, beta in views:  # gamma starts at 1, beta at 0, as torch
        assert (gamma == 1).all() and (beta == 0).all()
    model._params[n_w:n_w + 26] = np.arange(26)
    np.testing.assert_array_equal(views[0][0], np.arange(7))
    np.testing.assert_array_equal(views[0][1], np.arange(7, 14))
    np.testing.assert_array_equal(views[1][0], np.arange(14, 20))
    np.testing.assert_array_equal(views[1][1], np.arange(20, 26))
    assert model._running.shape == (2, 13)
    assert (model._running[0] == 0).all() and (model._running[1] == 1).all()


# ---- 2. dropout ---------------------------------------------------------------------------------


def test_dropout_zero_is_bit_identical_to_a_plain_model():
    X, y = _data(41, 300, 20, 4)
    results = []
    for dropout in (None, 0.0, [0.0, 0.0]):
        kw = {} if dropout is None else dict(dropout=dropout)
        model = Model([20, 32, 16, 4], seed=42, **kw)
        h = model.fit(X, y, epochs=3, batch_size=32, lr=0.05, seed=43)
        results.append((model._params.copy(), h.loss, model.predict_proba(X), model._rng.random()))
    for params, loss, p, r in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        assert loss == results[0][1]
        np.testing.assert_array_equal(p, results[0][2])
        assert r == results[0][3]  # the same random numbers were drawn


@pytest.mark.parametrize("rate", [0.5, 0.2, 0.05])
def test_dropout_kernel_keeps_and_scales(rate):
    """hidden_output with the identity activation: every output is 0 or y / (1 - rate); the kept
    fraction is within 5 sigma of 1 - rate overall and within 6 sigma in every unit's column."""
    B, O = 2000, 300
    y = np.random.default_rng(51).uniform(0.5, 2.0, (B, O))
    out, fy = np.full((B, O), np.nan), np.full((B, O), np.nan)
    hidden_output(out, fy, y, y, IDENTITY, False, rate, 12345, 7, 1)
    np.testing.assert_array_equal(fy, y)
    kept = out != 0
    np.testing.assert_array_equal(out[kept], y[kept] * (1.0 / (1.0 - rate)))
    np.testing.assert_allclose(out[kept], y[kept] / (1 - rate), rtol=1e-15, atol=0)
    n, q = B * O, 1 - rate
    assert abs(kept.sum() - n * q) < 5 * np.sqrt(n * q * rate)
    cols = kept.sum(axis=0)
    assert (np.abs(cols - B * q) < 6 * np.sqrt(B * q * rate)).all()
    rows = kept.sum(axis=1)
    assert (np.abs(rows - O * q) < 6 * np.sqrt(O * q * rate)).all()
    # neighbouring units and samples are independent: P(both kept) = q^2
    for a, b in ((kept[:, 1:], kept[:, :-1]), (kept[1:], kept[:-1])):
        both = (a & b).sum()
        assert abs(both - a.size * q * q) < 6 * np.sqrt(a.size * q * q * (1 - q * q))


def _mask(rate, seed, step, layer, B=400, O=250):
    y = np.ones((B, O))
    out, fy = np.empty((B, O)), np.empty((B, O))
    hidden_output(out, fy, y, y, IDENTITY, False, rate, seed, step, layer)
    return out != 0


def test_dropout_masks_are_a_function_of_seed_step_layer_sample_unit():
    rate = 0.5
    base = _mask(rate, 99, 3, 1)
    np.testing.assert_array_equal(_mask(rate, 99, 3, 1), base)
    # the mask of (n, j) does not depend on the batch's shape
    np.testing.assert_array_equal(_mask(rate, 99, 3, 1, B=17, O=31), base[:17, :31])
    # a different step, layer or seed: independent masks (agreement ~ q^2 + p^2 = 1/2)
    for other in (_mask(rate, 99, 4, 1), _mask(rate, 99, 3, 2), _mask(rate, 100, 3, 1),
                  _mask(rate, 99, 3, 0), _mask(rate, 2**62 - 1, 3, 1)):
        agree = (other == base).mean()
        assert abs(agree - 0.5) < 6 * np.sqrt(0.25 / base.size), agree
    # rate 0: nothing dropped, nothing scaled
    y = np.random.default_rng(0).standard_normal((30, 40))
    out, fy = np.empty_like(y), np.empty_like(y)
    hidden_output(out, fy, y, y, IDENTITY, False, 0.0, 1, 1, 0)
    np.testing.assert_array_equal(out, y)


def _hidden_activations(model, X, training, seed=0, step=0):
    """Run the numba engine's forward pass on X; the first hidden layer's output (what the second
    layer sees), read from the workspace (region 1 follows region 0 of bmax * n_inputs)."""
    bmax = X.shape[0]
    ws = model._workspace(bmax)
    params = model._params
    if training:  # the training pass reads the weights transposed, as train_batches keeps them
        params = np.empty_like(model._params)
        network.to_transposed(params, model._params, model._layout)
    weights = params[:0] if training else model._params  # (empty: read WT from params)
    if not training:  # as predict_blocked: biases and the narrow layers' WT from a copy
        params = np.empty_like(model._params)
        network.for_prediction(params, model._params, model._layout, bmax)
    network.forward_layers(params, weights, ws, model._layout, bmax, bmax, model._rates,
                           model._running, training, seed, step, np.ascontiguousarray(X))
    width = model.layers[1]
    return ws[bmax * X.shape[1]:bmax * X.shape[1] + bmax * width].reshape(bmax, width).copy()


def test_dropout_in_the_network_forward_pass():
    """Training forward pass of a dropout-0.4 model: each first-layer output is 0 or its dropout-free
    value / 0.6; the inference pass (and predict_proba) applies no dropout."""
    rate = 0.4
    model = Model([30, 64, 64, 5], dropout=rate, dtype=np.float64, seed=61)
    plain = Model([30, 64, 64, 5], dtype=np.float64, seed=61)
    np.testing.assert_array_equal(model._params, plain._params)
    X = _data(62, 160, 30, 5)[0]
    ref = np.maximum(X @ model.weights[0] + model.biases[0], 0)
    eval_out = _hidden_activations(model, X, False)
    np.testing.assert_allclose(eval_out, ref, rtol=1e-12, atol=1e-12)
    train_out = _hidden_activations(model, X, True, seed=5, step=1)
    active = ref > 1e-3
    kept = train_out != 0
    np.testing.assert_allclose(train_out[kept], ref[kept] / (1 - rate), rtol=1e-12)
    frac = kept[active].mean()
    assert abs(frac - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / active.sum())
    again = _hidden_activations(model, X, True, seed=5, step=1)
    np.testing.assert_array_equal(again, train_out)
    assert (_hidden_activations(model, X, True, seed=5, step=2) != train_out).any()
    np.testing.assert_array_equal(model.predict_proba(X), plain.predict_proba(X))


def test_dropout_inference_equals_a_dropout_free_model_after_training():
    X, y = _data(71, 256, 16, 3)
    model = Model([16, 32, 32, 3], dropout=[0.5, 0.2], batchnorm=True, dtype=np.float64, seed=72)
    model.fit(X, y, epochs=3, batch_size=32, lr=0.05, seed=73)
    twin = Model([16, 32, 32, 3], batchnorm=True, dtype=np.float64, seed=0)
    twin._params[...] = model._params
    twin._running[...] = model._running
    np.testing.assert_array_equal(model.predict_proba(X), twin.predict_proba(X))
    # and training did use dropout: the same run without it ends elsewhere
    other = Model([16, 32, 32, 3], batchnorm=True, dtype=np.float64, seed=72)
    other.fit(X, y, epochs=3, batch_size=32, lr=0.05, seed=73)
    assert np.abs(other._params - model._params).max() > 1e-3


def test_dropout_training_is_reproducible():
    """Same seeds: bit-identical, whether or not fit reports progress or runs a per-epoch callback
    (which split the training into differently sized compiled calls); another fit seed differs."""
    X, y = _data(81, 200, 12, 3)

    def run(seed=83, **kw):
        model = Model([12, 24, 24, 3], dropout=0.3, seed=82)
        model.fit(X, y, epochs=4, batch_size=8, lr=0.05, seed=seed, **kw)
        return model._params.copy()

    first = run()
    np.testing.assert_array_equal(run(), first)
    np.testing.assert_array_equal(run(progress=lambda *a: None), first)
    np.testing.assert_array_equal(run(callback=lambda e, l: False), first)
    assert not np.array_equal(run(seed=84), first)


THREADS_SCRIPT = textwrap.dedent("""
    import hashlib
    import numba
    import numpy as np
    from fastmlp import Model
    rng = np.random.default_rng(0)
    X = rng.random((1024, 784)).astype(np.float32)
    X[X < 0.5] = 0
    y = rng.integers(0, 10, 1024)
    digest = hashlib.sha256()
    for dtype in (np.float32, np.float64):
        model = Model([784, 384, 384, 10], dropout=0.3, batchnorm=True, residual=True, dtype=dtype, seed=1)
        h = model.fit(X, y, epochs=2, batch_size=256, lr=0.05, seed=2)
        for a in (model._params, model._running, np.array(h.loss), model.predict_proba(X[:300])):
            digest.update(np.ascontiguousarray(a).tobytes())
    print(numba.get_num_threads(), digest.hexdigest())
""")


def test_dropout_batchnorm_training_is_identical_on_1_and_2_threads():
    """Shapes large enough that the dense, batch-norm and dropout kernels all run in parallel
    (256 x 384 x 16 >= 2^20 element-work for the layer kernels): the same bits on 1 and 2 threads."""
    out = {}
    for threads in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        proc = subprocess.run([sys.executable, "-c", THREADS_SCRIPT], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        n, digest = proc.stdout.split()
        assert int(n) == threads
        out[threads] = digest
    assert out[1] == out[2]


# ---- 3. residual connections ------------------------------------------------------------------


@pytest.mark.parametrize("batchnorm", [False, True], ids=["residual", "residual+batchnorm"])
def test_residual_training_matches_torch(batchnorm):
    """out_l = relu(Linear(x)) + x for hidden layers 2 and 3 (with batch norm: relu(BN(Linear(x))) + x);
    10 SGD steps on identical batches agree with torch in float64."""
    rng = np.random.default_rng(91)
    model = Model([12, 16, 16, 16, 4], residual=True, batchnorm=batchnorm, dtype=np.float64, seed=92)
    _randomise_extras(model, rng)
    X, y = _data(93, 160, 12, 4)
    net = _compare_training_with_torch(model, X, y, batch=16, lr=0.1)
    X_new = _data(94, 40, 12, 4)[0]
    np.testing.assert_allclose(model.predict_proba(X_new), _softmax_eval(net, X_new), **TOL[np.float64])


def test_residual_model_differs_from_plain():
    """The skip connection is really there: the same weights without it give other outputs."""
    X = _data(95, 20, 8, 3)[0]
    res = Model([8, 10, 10, 10, 3], residual=True, dtype=np.float64, seed=96)
    plain = Model([8, 10, 10, 10, 3], dtype=np.float64, seed=96)
    np.testing.assert_array_equal(res._params, plain._params)
    net = _torch_copy(res)
    np.testing.assert_allclose(res.predict_proba(X), _softmax_eval(net, X), rtol=1e-10, atol=1e-13)
    assert np.abs(res.predict_proba(X) - plain.predict_proba(X)).max() > 1e-3


def _seeded_loss_and_grad(model, X, y, params):
    """(loss, gradient) of one full-batch step as batch_loss_and_grad, but with fit's seed fixed, so
    that dropout's masks (hashed from the seed fit draws and the step) are the same every time."""
    saved = model._params.copy()
    try:
        model._params[...] = params
        history = model.fit(X, y, epochs=1, batch_size=len(X), lr=1.0, shuffle=False, seed=7)
        return history.loss[0], model._grads.copy()
    finally:
        model._params[...] = saved


@pytest.mark.parametrize("batchnorm,residual,dropout",
                         [(bn, res, 0.0) for bn, res in itertools.product([False, True], [False, True])]
                         + [(False, False, 0.3), (True, True, 0.3)])
def test_finite_difference_gradients(batchnorm, residual, dropout):
    """Central differences of the full-batch loss (float64, tanh so the loss is smooth) against the
    engine's gradient for every parameter, gamma and beta included. With dropout the masks are fixed
    by fit's seed, so the loss is a smooth function of the parameters too (and the backward pass must
    drop the same units as the forward pass)."""
    rng = np.random.default_rng(101)
    model = Model([4, 5, 5, 5, 3], activation="tanh", batchnorm=batchnorm, residual=residual,
                  dropout=dropout, dtype=np.float64, seed=102)
    _randomise_extras(model, rng)
    X, y = _data(103, 7, 4, 3)
    start = model._params.copy()
    loss, grad = _seeded_loss_and_grad(model, X, y, start)
    if not dropout:  # conftest's helper (no fit seed) gives the same
        loss2, grad2 = batch_loss_and_grad(model, X, y)
        assert loss2 == loss and np.array_equal(grad2, grad)
    h = 1e-5
    fd = np.empty_like(grad)
    for i in range(len(grad)):
        p = start.copy()
        p[i] += h
        up = _seeded_loss_and_grad(model, X, y, p)[0]
        p[i] -= 2 * h
        down = _seeded_loss_and_grad(model, X, y, p)[0]
        fd[i] = (up - down) / (2 * h)
    assert np.linalg.norm(fd - grad) / np.linalg.norm(fd) < 1e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-9)
    if batchnorm:  # a bias before batch normalization is cancelled by the mean: zero gradient
        for db in model._views("biases", grad)[:-1]:
            assert np.abs(db).max() < 1e-13
        assert len(model._batchnorm_views(grad)) == 3
    if dropout:  # the masks did drop units: the same network without dropout has another loss
        plain = Model([4, 5, 5, 5, 3], activation="tanh", batchnorm=batchnorm, residual=residual,
                      dtype=np.float64, seed=102)
        assert abs(_seeded_loss_and_grad(plain, X, y, start)[0] - loss) > 1e-3


# ---- 4. numba engine against the NumPy engine ---------------------------------------------------


@pytest.mark.parametrize("batch", [4, 16, 200], ids=["rows", "blocked", "blocked-weight-grad"])
@pytest.mark.parametrize("batchnorm,residual,dropout",
                         list(itertools.product([False, True], [False, True], [False, True])))
def test_numba_and_numpy_engines_agree(batchnorm, residual, dropout, batch):
    """About 50 steps (a partial last batch each epoch), mixed activations and per-layer dropout
    rates: the two engines' losses, weights, running statistics and predictions agree to 1e-10 in
    float64. (Far longer runs with batch norm over 4 samples amplify rounding past 1e-10.)"""
    n, epochs = {4: (102, 2), 16: (410, 2), 200: (410, 3)}[batch]
    X, y = _data(111, n, 20, 5)
    layers = [20, 24, 24, 24, 5] if residual else [20, 24, 16, 12, 5]
    results = []
    for engine in ("numba", "numpy"):
        model = Model(layers, activation=["relu", "tanh", "sigmoid"], batchnorm=batchnorm,
                      residual=residual, dropout=[0.3, 0.1, 0.5] if dropout else 0.0,
                      dtype=np.float64, seed=112, engine=engine)
        _randomise_extras(model, np.random.default_rng(113))
        start = model._params.copy()
        h = model.fit(X, y, epochs=epochs, batch_size=batch, lr=0.05, seed=114)
        assert np.abs(model._params - start).max() > 1e-3
        results.append((model._params.copy(), model._running.copy(), h.loss, model.predict_proba(X[:50])))
    tol = dict(rtol=1e-10, atol=1e-12)
    (p1, r1, l1, q1), (p2, r2, l2, q2) = results
    np.testing.assert_allclose(l1, l2, **tol)
    np.testing.assert_allclose(p1, p2, **tol)
    np.testing.assert_allclose(r1, r2, **tol)
    np.testing.assert_allclose(q1, q2, **tol)


# ---- 5. rejected before training -----------------------------------------------------------------


@pytest.mark.parametrize("kwargs,layers,words", [
    (dict(dropout=-0.1), [6, 8, 8, 3], ["dropout"]),
    (dict(dropout=1.0), [6, 8, 8, 3], ["dropout"]),
    (dict(dropout=1.5), [6, 8, 8, 3], ["dropout"]),
    (dict(dropout=[0.1]), [6, 8, 8, 3], ["dropout", "1", "2"]),
    (dict(dropout=[0.1, 0.2, 0.3]), [6, 8, 8, 3], ["dropout", "3", "2"]),
    (dict(dropout=[0.1, 1.0]), [6, 8, 8, 3], ["dropout"]),
    (dict(residual=True), [6, 32, 16, 3], ["residual", "[32, 16]"]),
    (dict(residual=True), [6, 32, 3], ["residual", "[32]"]),
], ids=["dropout-negative", "dropout-one", "dropout-above-one", "dropout-list-short",
        "dropout-list-long", "dropout-list-one", "residual-widths", "residual-one-hidden"])
def test_invalid_settings_rejected_at_construction(kwargs, layers, words):
    with pytest.raises(ValueError) as info:
        Model(layers, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_valid_extras_settings_accepted():
    Model([6, 8, 8, 3], dropout=0.0)
    Model([6, 8, 8, 3], dropout=[0.0, 0.999])
    Model([6, 8, 8, 8, 3], residual=True)
    Model([6, 3], dropout=[])  # no hidden layers, no rates
    Model([6, 8, 8, 3], batchnorm=True)


@pytest.mark.parametrize("n,batch_size,validation_split", [
    (40, 1, 0.0),          # every batch has one sample
    (33, 32, 0.0),         # 33 % 32 == 1: the last batch has one sample
    (41, 8, 0.0),
    (1, 32, 0.0),          # a single training sample
    (42, 11, 0.2),         # 34 training samples after the split: 34 % 11 == 1
], ids=["batch-1", "last-batch-1", "41-by-8", "one-sample", "after-validation-split"])
def test_batchnorm_batches_of_one_rejected(n, batch_size, validation_split):
    X, y = _data(121, n, 6, 3)
    model = Model([6, 8, 8, 3], batchnorm=True, dtype=np.float64, seed=122)
    params, running = model._params.copy(), model._running.copy()
    with pytest.raises(ValueError) as info:
        model.fit(X, y, batch_size=batch_size, validation_split=validation_split)
    message = str(info.value)
    assert "batch normalization" in message and f"batch_size={batch_size}" in message
    np.testing.assert_array_equal(model._params, params)
    np.testing.assert_array_equal(model._running, running)


@pytest.mark.parametrize("n,batch_size", [(34, 32), (40, 2), (40, 50), (2, 32)])
def test_batchnorm_batches_of_two_or_more_accepted(n, batch_size):
    X, y = _data(123, n, 6, 3)
    model = Model([6, 8, 8, 3], batchnorm=True, dtype=np.float64, seed=124)
    model.fit(X, y, batch_size=batch_size)
    assert np.isfinite(model._params).all() and np.isfinite(model._running).all()


def test_lr_find_with_batchnorm_rejects_batches_of_one():
    """lr_find trains batches too: a batch of one must be refused as fit refuses it (a ValueError
    naming batch normalization), not crash inside the kernel, and leave the model as it was."""
    X, y = _data(125, 40, 6, 3)
    model = Model([6, 8, 8, 3], batchnorm=True, dtype=np.float64, seed=126)
    params, running = model._params.copy(), model._running.copy()
    with pytest.raises(ValueError, match="batch normalization"):
        model.lr_find(X, y, steps=5, batch_size=1, seed=1)
    np.testing.assert_array_equal(model._params, params)
    np.testing.assert_array_equal(model._running, running)


# ---- the running statistics are part of the model's state ---------------------------------------


def test_lr_find_leaves_batchnorm_statistics_alone():
    """lr_find restores the model ('nothing is learned'): its predictions must not change, so the
    running statistics it updated on the way must be restored along with the weights."""
    X, y = _data(131, 128, 6, 3)
    model = Model([6, 8, 8, 3], batchnorm=True, dtype=np.float64, seed=132)
    model.fit(X, y, epochs=2, batch_size=16, lr=0.05, seed=133)
    params, running, p = model._params.copy(), model._running.copy(), model.predict_proba(X)
    model.lr_find(X, y, steps=10, batch_size=16, seed=134)
    np.testing.assert_array_equal(model._params, params)
    np.testing.assert_array_equal(model._running, running)
    np.testing.assert_array_equal(model.predict_proba(X), p)


def test_early_stopping_restores_the_best_epochs_running_statistics():
    """Early stopping keeps the best epoch's model: with batch normalization that is its weights
    and its running statistics, so predictions equal those of the model the best epoch validated."""
    X, y = _data(141, 60, 6, 3)
    model = Model([6, 32, 32, 3], batchnorm=True, dtype=np.float64, seed=1)
    snaps = []
    h = model.fit(X, y, epochs=30, batch_size=15, lr=0.5, seed=3, validation_split=0.25, patience=2,
                  callback=lambda e, l: snaps.append((model._params.copy(), model._running.copy(),
                                                      model.predict_proba(X))))
    best = h.best_epoch
    assert best is not None and best < len(h.loss) - 1  # it did stop after a worse epoch
    np.testing.assert_array_equal(model._params, snaps[best][0])
    np.testing.assert_array_equal(model._running, snaps[best][1])
    np.testing.assert_array_equal(model.predict_proba(X), snaps[best][2])


def test_divergence_restores_running_statistics():
    X, y = _data(151, 64, 6, 3)
    X *= 1e3
    model = Model([6, 16, 16, 3], batchnorm=True, dtype=np.float32, seed=152)
    model.fit(X, y, epochs=1, batch_size=16, lr=0.01, seed=153)
    params, running = model._params.copy(), model._running.copy()
    with pytest.raises(ValueError, match="diverged"):
        model.fit(X, y, epochs=5, batch_size=16, lr=1e30, seed=154)
    np.testing.assert_array_equal(model._params, params)
    np.testing.assert_array_equal(model._running, running)


# ---- 6. files and summary ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip_with_extras(tmp_path, dtype):
    X, y = _data(161, 200, 10, 3)
    model = Model([10, 12, 12, 12, 3], dropout=[0.1, 0.25, 0.0], batchnorm=True, residual=True,
                  dtype=dtype, seed=162)
    model.fit(X, y, epochs=3, batch_size=20, lr=0.05, seed=163)
    assert np.abs(model._running[0]).max() > 1e-3
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = Model.load(path)
    assert loaded.dtype == model.dtype
    assert loaded.dropout == model.dropout == (0.1, 0.25, 0.0)
    assert loaded.batchnorm is True and loaded.residual is True
    np.testing.assert_array_equal(loaded._layout, model._layout)
    assert loaded._params.tobytes() == model._params.tobytes()
    assert loaded._running.tobytes() == model._running.tobytes()
    assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
    # training on continues identically (same dropout rates, flags and statistics)
    model.fit(X, y, epochs=1, batch_size=20, lr=0.05, seed=164)
    loaded.fit(X, y, epochs=1, batch_size=20, lr=0.05, seed=164)
    assert loaded._params.tobytes() == model._params.tobytes()
    assert loaded._running.tobytes() == model._running.tobytes()


def test_summary_mentions_extras():
    model = Model([10, 12, 12, 12, 3], dropout=[0.1, 0.25, 0.0], batchnorm=True, residual=True)
    text = model.summary()
    lines = text.splitlines()
    hidden = [line for line in lines if line.startswith("dense_")][:3]
    assert all("batchnorm" in line for line in hidden)
    assert "residual" not in hidden[0] and "residual" in hidden[1] and "residual" in hidden[2]
    assert "dropout 0.1" in hidden[0] and "dropout 0.25" in hidden[1] and "dropout" not in hidden[2]
    counts = [int(line.split()[-1].replace(",", "")) for line in lines if line.startswith("dense_")]
    assert counts[:3] == [10 * 12 + 12 + 24, 12 * 12 + 12 + 24, 12 * 12 + 12 + 24]
    assert sum(counts) == model.n_params
    assert f"{model.n_params:,}" in lines[-1]
    plain = Model([10, 12, 12, 12, 3]).summary()
    assert "batchnorm" not in plain and "residual" not in plain and "dropout" not in plain
