"""Parameter updates. All parameters live in one flat buffer, so an update is one loop.

    params (P,)  every weight and bias of the network, layer by layer
    grads  (P,)  dL/dparams, same layout
"""

from numba import njit, prange

from .config import JIT, PARALLEL_MIN_WORK


@njit(parallel=True, **JIT)
def sgd_update(params, grads, lr):
    """params -= lr * grads, element by element (each thread owns a disjoint stretch)."""
    P = params.shape[0]
    if P >= PARALLEL_MIN_WORK:
        for i in prange(P):
            params[i] -= lr * grads[i]
    else:
        for i in range(P):
            params[i] -= lr * grads[i]
