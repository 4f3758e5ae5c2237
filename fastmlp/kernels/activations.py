"""Hidden-layer activations and their derivatives, keyed by a small integer code.

The derivative is written in terms of the activation's *output* a = f(z), which is what the forward
pass stores: relu'(z) = [a > 0], sigmoid'(z) = a (1 - a), tanh'(z) = 1 - a^2, identity'(z) = 1.

The constants are Python floats, so for float32 arrays this element-wise math runs in float64 and is
rounded once when stored. The matrix products, where the time goes, stay in the arrays' dtype.
"""

import math

from numba import njit

from .config import JIT

IDENTITY = 0
RELU = 1
SIGMOID = 2
TANH = 3

# name -> code; the Python layer validates names against this table.
ACTIVATIONS = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}


@njit(inline="always", **JIT)
def sigmoid(z):
    # For z -> -inf, exp(-z) overflows to inf and the result is exactly 0: no NaN.
    return 1.0 / (1.0 + math.exp(-z))


@njit(inline="always", **JIT)
def activate(z, code):
    """f(z) for one element."""
    if code == RELU:
        return 0.0 if z <= 0 else z  # NaN passes through, so divergence stays visible
    if code == SIGMOID:
        return sigmoid(z)
    if code == TANH:
        return math.tanh(z)
    return z


@njit(inline="always", **JIT)
def activation_grad(a, code):
    """f'(z) for one element, from the output a = f(z)."""
    if code == RELU:
        return 1.0 if a > 0 else 0.0
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == TANH:
        return 1.0 - a * a
    return 1.0


@njit(inline="always", **JIT)
def activate_range(buf, start, stop, code):
    """buf[start:stop] <- f(buf[start:stop]), in place: one loop per code, chosen once, so the loop
    holds no branch on it."""
    if code == RELU:
        for i in range(start, stop):
            buf[i] = activate(buf[i], RELU)
    elif code == SIGMOID:
        for i in range(start, stop):
            buf[i] = activate(buf[i], SIGMOID)
    elif code == TANH:
        for i in range(start, stop):
            buf[i] = activate(buf[i], TANH)


@njit(inline="always", **JIT)
def activation_grad_range(delta, d, out, o, count, code):
    """delta[d:d+count] *= f'(z), from the outputs a = f(z) in out[o:o+count] (see
    ``activation_grad``): one loop per code, as in ``activate_range``."""
    if code == RELU:
        for i in range(count):
            delta[d + i] *= activation_grad(out[o + i], RELU)
    elif code == SIGMOID:
        for i in range(count):
            delta[d + i] *= activation_grad(out[o + i], SIGMOID)
    elif code == TANH:
        for i in range(count):
            delta[d + i] *= activation_grad(out[o + i], TANH)
