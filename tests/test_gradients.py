"""Finite-difference checks of the Numba kernels' back-propagation, in float64.

The analytic gradient is the one the kernels compute in a full-batch training step (what
``model._grads`` holds afterwards). The oracle is the definition of the derivative: a fourth-order
central difference of the batch loss,
    (-L(p + 2h e_i) + 8 L(p + h e_i) - 8 L(p - h e_i) + L(p - 2h e_i)) / 12h
for every parameter p_i (truncation error O(h^4), so h can be large enough that rounding stays
near 1e-12). The loss value itself is checked against an independent NumPy formula here and
against PyTorch in test_torch.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastmlp import Model
from fastmlp.kernels.small import use_small

from conftest import batch_loss_and_grad, make_targets

ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]
OUTPUT_LOSS = [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"),
               ("sigmoid", "mse"), ("identity", "mse")]
LAYERS = [5, 4, 3, 3]
N = 7
# These layers do 41 multiply-adds per sample, so a batch of up to 49 takes the small path (small.
# SMALL_MAX_WORK = 2048; 7 rows padded to 8 there), and 50 or more the layer kernels' 4 x 4 tiles: 7
# takes the first path, 53 the second (with a partial tile of rows, and odd widths leaving partial
# columns). test_batch_sizes_take_both_paths checks it.
BATCH_SIZES = [7, 53]
H = 1e-4


def test_batch_sizes_take_both_paths():
    layout = _model("relu", "softmax", "cross_entropy")._layout
    assert [use_small(layout, n) for n in BATCH_SIZES] == [True, False]


def _model(activation, output, loss, bias=True, seed=0):
    model = Model(LAYERS, activation=activation, output=output, loss=loss, bias=bias,
                  dtype=np.float64, seed=seed, init="xavier")
    assert model.engine == "numba"
    rng = np.random.default_rng(seed + 100)
    if bias:  # non-zero biases, so their gradients flow through non-trivial activations
        for i in range(len(model.biases)):
            model.biases[i] = rng.normal(0, 0.5, model.biases[i].shape)
    return model


def _data(output, loss, seed=0, n=N):
    rng = np.random.default_rng(seed + 200)
    X = rng.standard_normal((n, LAYERS[0]))
    return X, make_targets(rng, loss, n, LAYERS[-1])


def _numeric_grad(model, X, y, indices):
    p0 = model._params.copy()
    fd = np.zeros(len(indices))
    for j, i in enumerate(indices):
        values = []
        for step in (2, 1, -1, -2):
            p = p0.copy()
            p[i] = p0[i] + step * H
            values.append(batch_loss_and_grad(model, X, y, params=p)[0])
        fd[j] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * H)
    return fd


def _assert_grad_close(analytic, numeric):
    # Element-wise relative error; entries under 1e-5 are compared to 1e-11 absolute, the rounding
    # level of the difference quotient (exact zeros come from dead ReLU units).
    err = np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), 1e-5)
    worst = int(np.argmax(err))
    assert err[worst] < 1e-6, (
        f"parameter {worst}: analytic {analytic[worst]!r} vs finite difference {numeric[worst]!r}")
    assert np.linalg.norm(analytic - numeric) <= 1e-9 * np.linalg.norm(numeric)


def _reference_loss(model, X, y):
    """The batch loss written out from the definitions (PyTorch's conventions)."""
    f = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
         "tanh": np.tanh, "identity": lambda z: z}
    a = X
    for i, (W, b) in enumerate(zip(model.weights, model.biases)):
        z = a @ W + b
        a = f[model.activations[i]](z) if i < len(model.weights) - 1 else z
    if model.loss == "cross_entropy":
        logp = a - a.max(axis=1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()
    p = 1 / (1 + np.exp(-a)) if model.output == "sigmoid" else a
    if model.loss == "binary_cross_entropy":
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    return ((p - y) ** 2).mean()


@pytest.mark.parametrize("n", BATCH_SIZES)
@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_finite_differences(activation, output, loss, n):
    model = _model(activation, output, loss)
    X, y = _data(output, loss, n=n)
    value, grad = batch_loss_and_grad(model, X, y)
    assert value == pytest.approx(_reference_loss(model, X, y), rel=1e-12)
    assert np.abs(grad).max() > 1e-3  # a gradient that is all zeros would prove nothing
    idx = np.arange(model._n_trainable)
    _assert_grad_close(grad[idx], _numeric_grad(model, X, y, idx))


@pytest.mark.parametrize("n", BATCH_SIZES)
@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_gradient_without_biases(activation, output, loss, n):
    model = _model(activation, output, loss, bias=False, seed=3)
    X, y = _data(output, loss, seed=3, n=n)
    assert not model._params[model._n_trainable:].any()
    _, grad = batch_loss_and_grad(model, X, y)
    idx = np.arange(model._n_trainable)  # the weights: the model's only parameters
    assert model._n_trainable == sum(a * b for a, b in zip(LAYERS, LAYERS[1:]))
    _assert_grad_close(grad[idx], _numeric_grad(model, X, y, idx))


def test_gradient_mixed_activations():
    model = Model([5, 6, 4, 3, 3], activation=["tanh", "relu", "sigmoid"], output="softmax",
                  dtype=np.float64, seed=5, init="xavier")
    for i in range(len(model.biases)):
        model.biases[i] = np.random.default_rng(i).normal(0, 0.3, model.biases[i].shape)
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((9, 5)), rng.integers(0, 3, 9)
    value, grad = batch_loss_and_grad(model, X, y)
    assert value == pytest.approx(_reference_loss(model, X, y), rel=1e-12)
    idx = np.arange(model._n_trainable)
    _assert_grad_close(grad, _numeric_grad(model, X, y, idx))


@pytest.mark.parametrize("n", BATCH_SIZES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("output,loss", [("softmax", "cross_entropy"), ("sigmoid", "mse")])
def test_fit_step_applies_the_checked_gradient(output, loss, bias, n):
    """One full-batch fit step with lr moves the parameters by exactly -lr * gradient; a model
    without biases keeps them at zero."""
    model = _model("tanh", output, loss, bias=bias, seed=7)
    X, y = _data(output, loss, seed=7, n=n)
    _, grad = batch_loss_and_grad(model, X, y)
    before = model._params.copy()
    lr = 0.25  # a power of two: before - lr * grad is exact to the last bit in both orders
    history = model.fit(X, y, epochs=1, batch_size=n, lr=lr, shuffle=False)
    n = model._n_trainable
    np.testing.assert_array_equal(model._params[:n], before[:n] - lr * grad[:n])
    np.testing.assert_array_equal(model._params[n:], before[n:])
    if not bias:
        assert not any(b.any() for b in model.biases)
    assert history.loss[0] == pytest.approx(_reference_loss(_model("tanh", output, loss, bias, 7), X, y),
                                            rel=1e-12)


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_batch_gradient_is_mean_of_sample_gradients(n):
    """The batch gradient of a mean loss is the mean of the one-sample gradients (checks the 1/B
    scaling and that samples of a batch do not leak into each other). One-sample batches take the
    small path, so for n = 29 this also compares the two paths."""
    model = _model("sigmoid", "softmax", "cross_entropy", seed=9)
    X, y = _data("softmax", "cross_entropy", seed=9, n=n)
    _, batch = batch_loss_and_grad(model, X, y)
    singles = np.mean([batch_loss_and_grad(model, X[i:i + 1], y[i:i + 1])[1] for i in range(n)], axis=0)
    np.testing.assert_allclose(batch, singles, rtol=1e-12, atol=1e-15)

