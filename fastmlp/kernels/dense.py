"""A fully connected layer: ``dense_forward`` and ``dense_backward``.

Shapes, for a batch of B samples through a layer with I inputs and O outputs:
    inp  (B, I)   the layer's input: the data, or the previous layer's activations
    W    (I, O)   weights; row k holds the weights leaving input unit k
    b    (O,)     biases
    out  (B, O)   f(inp @ W + b), the activations this layer passes on

Every loop that runs in parallel owns disjoint outputs (a row of ``out``, a row of ``dW``, a row
of ``dinp``) and sums its reductions in a fixed order, so the result is bit-identical on any
number of threads. Small layers run on one thread (see ``config.PARALLEL_MIN_WORK``).
"""

from numba import njit, prange

from .activations import activate, activation_grad
from .config import JIT, PARALLEL_MIN_WORK


@njit(**JIT)
def _forward_row(out, inp, W, b, act, n):
    """out[n, :] = f(inp[n, :] @ W + b), one sample."""
    I, O = W.shape
    for j in range(O):
        out[n, j] = b[j]
    for k in range(I):
        x = inp[n, k]
        if x != 0:  # ReLU outputs and image pixels are often exactly 0: skip their row of W
            for j in range(O):
                out[n, j] += x * W[k, j]
    for j in range(O):
        out[n, j] = activate(out[n, j], act)


@njit(parallel=True, **JIT)
def dense_forward(out, inp, W, b, act):
    """out (B, O) <- f(inp (B, I) @ W (I, O) + b (O,)), f given by the activation code ``act``."""
    B = inp.shape[0]
    I, O = W.shape
    if B * I * O >= PARALLEL_MIN_WORK:
        for n in prange(B):  # each thread owns whole rows of out
            _forward_row(out, inp, W, b, act, n)
    else:
        for n in range(B):
            _forward_row(out, inp, W, b, act, n)


@njit(**JIT)
def _weight_grad_row(dW, dout, inp, k):
    """dW[k, :] = sum over samples n of inp[n, k] * dout[n, :]."""
    B, O = dout.shape
    for j in range(O):
        dW[k, j] = 0
    for n in range(B):
        x = inp[n, k]
        if x != 0:
            for j in range(O):
                dW[k, j] += x * dout[n, j]


@njit(**JIT)
def _input_grad_row(dinp, dout, W, inp, inp_act, n):
    """dinp[n, k] = (dout[n, :] . W[k, :]) * f'(inp[n, k]) for every input unit k."""
    I, O = W.shape
    for k in range(I):
        s = dout[n, 0] * W[k, 0]  # start from the first term: keeps the dtype of the arrays
        for j in range(1, O):
            s += dout[n, j] * W[k, j]
        dinp[n, k] = s * activation_grad(inp[n, k], inp_act)


@njit(parallel=True, **JIT)
def dense_backward(dinp, dW, db, dout, inp, W, inp_act):
    """Backward pass of ``dense_forward``.

    dout (B, O)  in: dL/dz for this layer's pre-activations z = inp @ W + b
    inp  (B, I)  in: this layer's input, as in the forward pass
    W    (I, O)  in: weights
    dW   (I, O)  out: dL/dW = inp^T @ dout
    db   (O,)    out: dL/db = column sums of dout
    dinp (B, I)  out: dL/dz of the layer below = (dout @ W^T) * f'(inp), where f is that layer's
                 activation ``inp_act``; pass an array with 0 rows to skip it (first layer).
    """
    B, O = dout.shape
    I = W.shape[0]
    parallel = B * I * O >= PARALLEL_MIN_WORK
    # Weight gradient: a thread owns whole rows k of dW and sums over samples in order.
    if parallel:
        for k in prange(I):
            _weight_grad_row(dW, dout, inp, k)
    else:
        for k in range(I):
            _weight_grad_row(dW, dout, inp, k)
    # Bias gradient: O sums of B terms, too little work to share out.
    for j in range(O):
        db[j] = 0
    for n in range(B):
        for j in range(O):
            db[j] += dout[n, j]
    # Input gradient: a thread owns whole rows n of dinp.
    if dinp.shape[0] > 0:
        if parallel:
            for n in prange(B):
                _input_grad_row(dinp, dout, W, inp, inp_act, n)
        else:
            for n in range(B):
                _input_grad_row(dinp, dout, W, inp, inp_act, n)
