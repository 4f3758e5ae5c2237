"""Shared helpers for the engine tests."""

from __future__ import annotations


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
