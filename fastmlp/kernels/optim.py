"""Parameter updates. All parameters live in one flat buffer, so every optimizer is one loop over a
stretch of it.

    params (P,)     every trainable weight and bias, layer by layer
    grads  (P,)     dL/dparams of the current batch, same layout
    state  (S, P)   the optimizer's running buffers: none for plain SGD, the velocity for SGD with
                    momentum, the first and second moments for Adam and AdamW
    hyper  (6,)     float64: momentum, nesterov (0/1), weight_decay, beta1, beta2, eps
    step            1 for the first update (Adam's bias correction counts from it)

The rules are PyTorch's (torch.optim.SGD, Adam, AdamW with their default flags):
    SGD:    g = grad + wd p;  v = mu v + g;  p -= lr (g + mu v if nesterov else v)
            (with mu = 0 this is p -= lr g)
    Adam:   g = grad + wd p;  m = b1 m + (1 - b1) g;  s = b2 s + (1 - b2) g^2
            p -= lr m / (1 - b1^t) / (sqrt(s / (1 - b2^t)) + eps)
    AdamW:  p -= lr wd p first (decoupled decay), then Adam with g = grad
Each element is independent: the update of a stretch of the buffer can run wherever and whenever its
gradient is ready, on the thread that computed it.
"""

import math

from numba import njit

from .config import JIT

SGD = 0
ADAM = 1
ADAMW = 2
OPTIMIZERS = {"sgd": SGD, "adam": ADAM, "adamw": ADAMW}

MOMENTUM, NESTEROV, WEIGHT_DECAY, BETA1, BETA2, EPS = range(6)


def state_rows(name, momentum):
    """How many state buffers (rows of ``state``) an optimizer needs."""
    if name == "sgd":
        return 1 if momentum > 0 else 0
    return 2


@njit(inline="always", **JIT)
def update_rows_inline(params, grads, state, s0, hyper, opt, lr, step, r0, r1):
    """The optimizer's rule (see the module docstring) on rows r0:r1 of params, on the calling thread.

    params, grads (R, C): a weight matrix, or a flat buffer seen as (1, P) or (P, 1); state (S, N),
    C-contiguous: element [r, k]'s state at column s0 + r * C + k (the state of one layer is a
    stretch of the whole buffer's, passed with its offset). The dense kernels call it (as
    ``update_rows``) on the rows of a weight matrix right after computing their gradient, while
    those rows are in the thread's cache (see ``dense.dense_backward``); the small path calls it on
    the whole buffer. (Two-dimensional,
    because LLVM vectorises the loop over a row of a matrix inside a parallel kernel, but not the same
    loop over a flat range of a reshaped view. Each row's stretch of the state is taken as a view of
    a contiguous row: through a column slice of state, or indexing state[0, s0 + r * C + k] in the
    loop, Adam's update stayed scalar, 3-4x slower. Its division vectorises only because the kernels
    use numba's "numpy" error model: see config.py.)
    """
    C = params.shape[1]
    if opt == SGD:
        mu, wd = hyper[MOMENTUM], hyper[WEIGHT_DECAY]
        nesterov = hyper[NESTEROV] != 0
        for r in range(r0, r1):
            if mu == 0 and wd == 0:  # plain SGD: the article's rule
                for k in range(C):
                    params[r, k] -= lr * grads[r, k]
            elif mu == 0:
                for k in range(C):
                    params[r, k] -= lr * (grads[r, k] + wd * params[r, k])
            else:
                p, g, v = params[r], grads[r], state[0, s0 + r * C:s0 + (r + 1) * C]
                for k in range(C):
                    gk = g[k] + wd * p[k]
                    vk = mu * v[k] + gk
                    v[k] = vk
                    p[k] -= lr * (gk + mu * vk if nesterov else vk)
        return
    b1, b2, eps, wd = hyper[BETA1], hyper[BETA2], hyper[EPS], hyper[WEIGHT_DECAY]
    decoupled = opt == ADAMW
    correction1 = 1.0 - b1 ** step
    root_correction2 = math.sqrt(1.0 - b2 ** step)
    for r in range(r0, r1):
        p_r, g_r = params[r], grads[r]
        i = s0 + r * C
        m_r, s_r = state[0, i:i + C], state[1, i:i + C]
        for k in range(C):
            p = p_r[k]
            g = g_r[k]
            if decoupled:
                p -= lr * wd * p
            else:
                g += wd * p
            m = b1 * m_r[k] + (1.0 - b1) * g
            s = b2 * s_r[k] + (1.0 - b2) * g * g
            m_r[k] = m
            s_r[k] = s
            p_r[k] = p - (lr / correction1) * m / (math.sqrt(s) / root_correction2 + eps)


@njit(**JIT)
def update_rows(params, grads, state, s0, hyper, opt, lr, step, r0, r1):
    """``update_rows_inline``, compiled once as a function of its own and called, not inlined: the
    layer kernels call it on a few rows at a time, and every kernel that inlined it compiled all the
    rules again, in its multi-threaded and single-threaded copies (the image network's cold start,
    ``fastmlp train --task fashion-mnist --epochs 1``: 69.3 instead of 78.6 s). The call costs
    nothing measurable there (a weight gradient with its update, batch 16, 784 -> 128, in one
    process: 25.2-25.3 us called, 25.1-25.2 inlined; with Adam 67.6 / 67.9). The small path inlines
    it: there a call lies on every step's critical path (XOR, ns per step in seven alternating
    pairs: called 208-269, inlined 198-213; slower in six)."""
    update_rows_inline(params, grads, state, s0, hyper, opt, lr, step, r0, r1)
