"""Shared helpers for the engine tests: run one batch through an engine without changing weights."""

from __future__ import annotations

import numpy as np

from fastmlp.kernels import network
from fastmlp.kernels.output import LOSSES, OUTPUTS


def batch_loss_and_grad(model, X, y, params=None, engine=network):
    """(mean loss, gradient) of one batch holding all of X, computed by ``engine.train_batches``
    (the Numba kernels by default) with learning rate 0, so nothing is updated.

    ``params`` replaces the model's parameters for this evaluation (the model is not touched).
    The gradient has the layout of ``model._params`` (all weights, then all biases).
    """
    X = model._check_X(X)
    y_int, y_float = model._check_y(y, X.shape[0])
    n = X.shape[0]
    p = (model._params if params is None else params).astype(model.dtype, copy=True)
    grads = np.zeros_like(p)
    ws = np.zeros(network.workspace_size(model._layout, n), model.dtype)
    losses = np.zeros(1, np.float64)
    engine.train_batches(losses, p, grads, ws, X, y_int, y_float,
                         np.arange(n, dtype=np.int64), np.array([0, n], np.int64),
                         np.zeros(1, model.dtype), model._layout, OUTPUTS[model.output],
                         LOSSES[model.loss], model._n_trainable, n)
    return float(losses[0]), grads


def make_targets(rng, loss, n, k):
    """Random targets suited to ``loss``: class labels, {0,1}-ish values in [0, 1], or reals."""
    if loss == "cross_entropy":
        return rng.integers(0, k, n)
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, (n, k))
    return rng.standard_normal((n, k))
