"""The reference engine: the same network and the same math as the kernels, in vectorised NumPy.

It is the baseline that ``fastmlp compare`` and the benchmarks measure against, and an independent
oracle for the tests: it shares no code with the Numba kernels, only the integer codes that name
activations, outputs and losses, and the calling convention of ``kernels.network``
(``train_batches`` and ``predict_batches`` take the same arguments; ``ws`` is unused here).
"""

import numpy as np

from .kernels.activations import RELU, SIGMOID, TANH
from .kernels.layers import BN_EPS, BN_MOMENTUM
from .kernels.network import (ACT, B_OFF, BATCHNORM, BN_OFF, EXTRAS, FAN_IN, FAN_OUT, FLAGS, RESIDUAL,
                              RUN_OFF, W_OFF)
from .kernels.optim import ADAMW, SGD
from .kernels.output import BINARY_CROSS_ENTROPY, CROSS_ENTROPY
from .kernels.output import SIGMOID as OUT_SIGMOID
from .kernels.output import SOFTMAX
from .validation import all_finite


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
    for row in layout:
        fan_in, fan_out, w_off, b_off = row[FAN_IN], row[FAN_OUT], row[W_OFF], row[B_OFF]
        W = params[w_off:w_off + fan_in * fan_out].reshape(fan_in, fan_out)
        out.append((W, params[b_off:b_off + fan_out]))
    return out


def _keep_mask(seed, step, layer, shape, rate):
    """Dropout's keep/drop decisions: the same hash of (seed, step, layer, sample, unit) as
    ``kernels.layers.dropout_keeps``, vectorised."""
    def mix(x):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))

    with np.errstate(over="ignore"):
        n = np.arange(shape[0], dtype=np.uint64)[:, None]
        j = np.arange(shape[1], dtype=np.uint64)[None, :]
        h = mix(np.uint64(seed) ^ mix(np.uint64(step) ^ mix(np.uint64(layer) ^ mix(n ^ mix(j)))))
    return (h >> np.uint64(11)) * (1.0 / 9007199254740992.0) >= rate


def _forward(params, X, layout, rates, running, training, seed=0, step=0):
    """Every layer's output [X, a_1, ..., z_L] (the last before the output transform), and for
    layers with extras what their backward pass needs."""
    acts, caches = [X], []
    for l, (W, b) in enumerate(_layers(params, layout)):
        row = layout[l]
        z = acts[-1] @ W + b
        if not row[FLAGS] & EXTRAS:
            acts.append(_activate(z, row[ACT]))
            caches.append(None)
            continue
        cache = {}
        y = z
        if row[FLAGS] & BATCHNORM:
            O, off = row[FAN_OUT], row[BN_OFF]
            gamma, beta = params[off:off + O], params[off + O:off + 2 * O]
            run_mean, run_var = running[0, row[RUN_OFF]:row[RUN_OFF] + O], running[1, row[RUN_OFF]:row[RUN_OFF] + O]
            if training:
                B = z.shape[0]
                mean, var = z.mean(axis=0), z.var(axis=0)
                run_mean[...] = (1 - BN_MOMENTUM) * run_mean + BN_MOMENTUM * mean
                run_var[...] = (1 - BN_MOMENTUM) * run_var + BN_MOMENTUM * var * B / (B - 1)
            else:
                mean, var = run_mean, run_var
            cache["inv_std"] = 1 / np.sqrt(var + BN_EPS)
            cache["zhat"] = (z - mean) * cache["inv_std"]
            cache["gamma"] = gamma
            y = gamma * cache["zhat"] + beta
        cache["fy"] = fy = _activate(y, row[ACT])
        out = fy + acts[-1] if row[FLAGS] & RESIDUAL else fy
        if training and rates[l] > 0:
            cache["keep"] = _keep_mask(seed, step, l, out.shape, rates[l])
            out = np.where(cache["keep"], out * (1.0 / (1.0 - rates[l])), 0).astype(out.dtype)
        acts.append(out)
        caches.append(cache)
    return acts, caches


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
                  layout, out_code, loss_code, n_trainable, bmax, opt, opt_state, opt_work, hyper,
                  step0, rates, running, seed):
    """Mini-batch training; the arguments are those of ``kernels.network.train_batches``
    (``ws`` and ``opt_work`` are unused here)."""
    layers = _layers(params, layout)
    grad_layers = _layers(grads, layout)
    for t in range(len(bounds) - 1):
        idx = order[bounds[t]:bounds[t + 1]]
        step = step0 + t + 1
        acts, caches = _forward(params, X[idx], layout, rates, running, True, seed, step)
        w = weights[idx] if len(weights) else np.ones(len(idx), dtype=acts[-1].dtype)
        loss, delta = _loss_and_delta(acts[-1], y_int[idx] if len(y_int) else y_int,
                                      y_float[idx] if len(y_float) else y_float, w, out_code, loss_code)
        batch_losses[t] = loss
        for l in range(len(layers) - 1, -1, -1):
            row, cache = layout[l], caches[l]
            (W, _), (dW, db) = layers[l], grad_layers[l]
            if cache is not None:  # delta is dL/d(out): undo dropout, the residual, f, batch norm
                if "keep" in cache:
                    delta = np.where(cache["keep"], delta * (1.0 / (1.0 - rates[l])), 0).astype(delta.dtype)
                skip = delta
                delta = delta * _activation_grad(cache["fy"], row[ACT])
                if row[FLAGS] & BATCHNORM:
                    O, off = row[FAN_OUT], row[BN_OFF]
                    zhat = cache["zhat"]
                    grads[off:off + O] = (delta * zhat).sum(axis=0)
                    grads[off + O:off + 2 * O] = delta.sum(axis=0)
                    B = delta.shape[0]
                    delta = cache["gamma"] * cache["inv_std"] / B * (
                        B * delta - delta.sum(axis=0) - zhat * (delta * zhat).sum(axis=0))
            dW[...] = acts[l].T @ delta
            db[...] = delta.sum(axis=0)
            if l > 0:
                below = delta @ W.T
                if caches[l - 1] is None:
                    below = below * _activation_grad(acts[l], layout[l - 1, ACT])
                if row[FLAGS] & RESIDUAL:
                    below = below + skip
                delta = below
        _optimizer_step(params[:n_trainable], grads[:n_trainable], opt_state, hyper, opt, lrs[t], step)


def predict_batches(out, params, ws, X, layout, out_code, bmax, rates, running):
    """out (N, K) <- the network's outputs for X; the arguments and the result (False: X holds a
    NaN or an infinity) are those of the kernel."""
    if not all_finite(X):
        return False
    for lo in range(0, X.shape[0], bmax):
        acts, _ = _forward(params, X[lo:lo + bmax], layout, rates, running, False)
        out[lo:lo + bmax] = _output(acts[-1], out_code)
    return True
