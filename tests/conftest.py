"""Shared helpers for the engine tests."""

from __future__ import annotations

import numpy as np
import pytest


def batch_loss_and_grad(model, X, y, params=None):
    """(mean loss, gradient) of one batch holding all of X, as the model's engine computes them.

    Runs one full-batch ``fit`` step: its history holds the batch loss measured before the update,
    and ``model._grads`` the batch gradient (layout of ``model._params``: all weights, then all
    biases). The model's parameters are restored afterwards. ``params``, if given, replaces the
    parameters for this evaluation.
    """
    saved = model._params.copy()
    try:
        if params is not None:
            model._params[...] = params
        history = model.fit(X, y, epochs=1, batch_size=len(X), lr=1.0, shuffle=False)
        return history.loss[0], model._grads.copy()
    finally:
        model._params[...] = saved


def make_targets(rng, loss, n, k):
    """Random targets suited to ``loss``: class labels, values in [0, 1], or reals."""
    if loss == "cross_entropy":
        return rng.integers(0, k, n)
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, (n, k))
    return rng.standard_normal((n, k))


def fit_batch_losses(model, X, y, batch, epochs=1, **fit_kwargs):
    """fit(shuffle=False) over len(X) // batch equal batches per epoch (at most 50, so that progress
    reports after every batch); returns (the loss of every batch, recovered from progress's running
    mean, the History)."""
    n_batches = len(X) // batch
    assert n_batches * batch == len(X) and n_batches <= 50
    reports = []
    history = model.fit(X, y, epochs=epochs, batch_size=batch, shuffle=False,
                        progress=lambda e, done, total, loss: reports.append((e, done, loss)),
                        **fit_kwargs)
    assert [(e, d) for e, d, _ in reports] == [(e, d) for e in range(epochs) for d in range(1, n_batches + 1)]
    running = np.array([loss for _, _, loss in reports]).reshape(epochs, n_batches)
    summed = running * np.arange(1, n_batches + 1)
    losses = np.diff(np.concatenate([np.zeros((epochs, 1)), summed], axis=1), axis=1)
    assert history.loss == pytest.approx(losses.mean(axis=1).tolist(), rel=1e-12)
    return losses.ravel(), history
