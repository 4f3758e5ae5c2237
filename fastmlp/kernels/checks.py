"""Input checks that read every element, compiled: ``nonfinite_blocks``.

``Model.fit`` and ``predict_proba`` check that every input is finite before any kernel runs. On
60,000 x 784 float32 NumPy's single-threaded sum took 7.4 ms of a 190 ms batch-256 epoch, and 1.3 ms
of a 15 ms ``predict_proba`` on 10,000 images; this loop, on 2 threads, 4.8-5.3 and 0.3-0.4 ms.
"""

from numba import njit, prange

from .config import JIT


@njit(parallel=True, **JIT)
def nonfinite_blocks(flags, X, top):
    """flags[c] <- 1 if block c of X's rows holds a NaN or an infinity, else 0.

    flags (C,) int8, X (N, F) float, C-contiguous, top = the largest finite value of X's dtype.
    Block c is rows [c * S, min(N, (c + 1) * S)) with S = ceil(N / C); each thread writes only its
    own blocks' flags. The test is a comparison, |x| <= top, which is false for +-inf and for NaN
    (every comparison with NaN is false), rather than arithmetic such as x - x, which fast-math
    reassociation may rewrite (summed over a block, into a sum minus itself, which overflows).
    """
    N, C = X.shape[0], flags.shape[0]
    S = (N + C - 1) // C
    for c in prange(C):
        bad = 0
        for i in range(c * S, min(N, (c + 1) * S)):
            row = X[i]
            for k in range(row.shape[0]):
                bad |= not (abs(row[k]) <= top)
        flags[c] = bad
