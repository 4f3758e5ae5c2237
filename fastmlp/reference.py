"""The reference engine: the same network and the same math as the kernels, in vectorised NumPy.

It is the baseline that ``fastmlp compare`` and the benchmarks measure against, and an independent
oracle for the tests: it shares no code with the Numba kernels, only the integer codes that name
activations, outputs and losses, and the calling convention of ``kernels.network``
(``train_batches`` and ``predict_batches`` take the same arguments; ``ws`` is unused here).
"""

import numpy as np

from .kernels.activations import RELU, SIGMOID, TANH
from .kernels.network import ACT
from .kernels.optim import ADAMW, SGD
from .kernels.output import BINARY_CROSS_ENTROPY, CROSS_ENTROPY
from .kernels.output import SIGMOID as OUT_SIGMOID
from .kernels.output import SOFTMAX


def _activate(z, code):
    if code == RELU:
        return np.maximum(z, 0)
    if code == SIGMOID:
        return 1 / (1 + np.exp(-z))
    if code == TANH:
        return np.tanh(z)
    return z


def _activation_grad(a, code):
    """f'(z) from the output a = f(z)."""
    if code == RELU:
        return (a > 0).astype(a.dtype)
    if code == SIGMOID:
        return a * (1 - a)
    if code == TANH:
        return 1 - a * a
    return np.ones_like(a)


def _layers(params, layout):
    """[(W, b), ...] as views into the flat parameter buffer."""
    out = []
    for fan_in, fan_out, w_off, b_off, _ in layout:
        W = params[w_off:w_off + fan_in * fan_out].reshape(fan_in, fan_out)
        out.append((W, params[b_off:b_off + fan_out]))
    return out


def _forward(params, X, layout):
    """Activations of every layer: [X, a_1, ..., z_L] (the last one before the output transform)."""
    acts = [X]
    for (W, b), code in zip(_layers(params, layout), layout[:, ACT]):
        acts.append(_activate(acts[-1] @ W + b, code))
    return acts


def _output(z, out_code):
    if out_code == SOFTMAX:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if out_code == OUT_SIGMOID:
        return 1 / (1 + np.exp(-z))
    return z


def _loss_and_delta(z, y_int, y_float, w, out_code, loss_code):
    """Weighted mean loss over the batch, sum(w_n loss_n) / sum(w_n), and dL/dz."""
    B, K = z.shape
    p = _output(z, out_code)
    if loss_code == CROSS_ENTROPY:
        m = z.max(axis=1)
        per_sample = np.log(np.exp(z - m[:, None]).sum(axis=1)) + m - z[np.arange(B), y_int]
        delta = p.copy()
        delta[np.arange(B), y_int] -= 1
    elif loss_code == BINARY_CROSS_ENTROPY:
        per_sample = np.mean(np.maximum(z, 0) - z * y_float + np.log1p(np.exp(-np.abs(z))), axis=1)
        delta = (p - y_float) / K
    else:
        err = p - y_float
        per_sample = np.mean(err * err, axis=1)
        delta = 2 * err / K
        if out_code == OUT_SIGMOID:
            delta = delta * p * (1 - p)
    return (w @ per_sample) / w.sum(), delta * (w / w.sum())[:, None]


def _optimizer_step(params, grads, state, hyper, opt, lr, step):
    """torch.optim's SGD (momentum, nesterov, L2), Adam and AdamW, vectorised."""
    mu, nesterov, wd, b1, b2, eps = hyper
    if opt == SGD:
        g = grads + wd * params if wd else grads
        if mu:
            state[0] = mu * state[0] + g
            g = g + mu * state[0] if nesterov else state[0]
        params -= lr * g
        return
    g = grads
    if opt == ADAMW:
        params *= 1 - lr * wd
    elif wd:
        g = grads + wd * params
    state[0] = b1 * state[0] + (1 - b1) * g
    state[1] = b2 * state[1] + (1 - b2) * g * g
    denom = np.sqrt(state[1]) / np.sqrt(1 - b2 ** step) + eps
    params -= (lr / (1 - b1 ** step)) * state[0] / denom


def train_batches(batch_losses, params, grads, ws, X, y_int, y_float, weights, order, bounds, lrs,
                  layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, hyper, step0):
    """Mini-batch training; the arguments are those of ``kernels.network.train_batches``."""
    layers = _layers(params, layout)
    grad_layers = _layers(grads, layout)
    for t in range(len(bounds) - 1):
        idx = order[bounds[t]:bounds[t + 1]]
        acts = _forward(params, X[idx], layout)
        w = weights[idx] if len(weights) else np.ones(len(idx), dtype=acts[-1].dtype)
        loss, delta = _loss_and_delta(acts[-1], y_int[idx] if len(y_int) else y_int,
                                      y_float[idx] if len(y_float) else y_float, w, out_code, loss_code)
        batch_losses[t] = loss
        for l in range(len(layers) - 1, -1, -1):
            (W, _), (dW, db) = layers[l], grad_layers[l]
            dW[...] = acts[l].T @ delta
            db[...] = delta.sum(axis=0)
            if l > 0:
                delta = (delta @ W.T) * _activation_grad(acts[l], layout[l - 1, ACT])
        _optimizer_step(params[:n_trainable], grads[:n_trainable], opt_state, hyper, opt, lrs[t],
                        step0 + t + 1)


def predict_batches(out, params, ws, X, layout, out_code, bmax):
    """out (N, K) <- the network's outputs for X; the arguments are those of the kernel."""
    for lo in range(0, X.shape[0], bmax):
        out[lo:lo + bmax] = _output(_forward(params, X[lo:lo + bmax], layout)[-1], out_code)

