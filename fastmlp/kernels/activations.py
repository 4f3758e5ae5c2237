"""Hidden-layer activations and their derivatives, keyed by a small integer code.

The derivative is written in terms of the activation's *output* a = f(z), which is what the forward
pass stores: relu'(z) = [a > 0], sigmoid'(z) = a (1 - a), tanh'(z) = 1 - a^2, identity'(z) = 1.

The constants are Python floats, so for float32 arrays this element-wise math runs in float64 and is
rounded once when stored. The matrix products, where the time goes, stay in the arrays' dtype.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .config import JIT

IDENTITY = 0
RELU = 1
SIGMOID = 2
TANH = 3

# name -> code; the Python layer validates names against this table.
ACTIVATIONS = {"identity": IDENTITY, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH}


# 1.5 * 2 ** 52: adding it to a float64 holding an integer k, |k| < 2 ** 51, leaves k, in two's
# complement, in the low bits of the sum (its exponent is fixed, its unit in the last place is 1).
_SHIFTER = 6755399441055744.0
_SHIFTER_BITS = 0x4338000000000000  # the bits of _SHIFTER


@intrinsic
def _pow2(typingctx, k):
    """2.0 ** k for a float64 k holding an integer in [-1022, 1023], made from bits: k's integer
    read off k + _SHIFTER, biased by 1023 and shifted into the exponent field, with a zero mantissa.
    Only float additions, 64-bit integer subtraction and left shift, and bit casts: all of them
    have vector forms in AVX2, where a conversion between float64 and int64 has none (it needs
    AVX-512), so a loop of exponentials stays vectorised there."""
    def codegen(context, builder, signature, args):
        i64 = context.get_value_type(types.int64)
        shifted = builder.fadd(args[0], context.get_constant(types.float64, _SHIFTER))
        biased = builder.sub(builder.bitcast(shifted, i64),
                             context.get_constant(types.int64, _SHIFTER_BITS - 1023))
        bits = builder.shl(biased, context.get_constant(types.int64, 52))
        return builder.bitcast(bits, context.get_value_type(types.float64))
    return types.float64(types.float64), codegen


LOG2E = 1.4426950408889634  # 1 / ln 2
LN2_HI = 6.93147180369123816490e-01  # ln 2 = LN2_HI + LN2_LO; LN2_HI has 32 significant bits,
LN2_LO = 1.90821492927058770002e-10  # so k * LN2_HI is exact for every k used below


# Compiled on its own, without the kernels' "reassoc" flag: the range reduction must subtract in
# the order written (reassociated, (x - k LN2_HI) - k LN2_LO lost up to 214 ulp). LLVM still
# inlines it into the loops that call it, keeping these flags on its instructions.
@njit(cache=True, fastmath={"nsz", "arcp", "contract"}, error_model="numpy")
def exp(x):
    """e ** x in float64, within 1 ulp of libm's ``exp`` (checked against NumPy in the tests), with
    exp(nan) = nan, exp(inf) = inf, exp(-inf) = 0, overflow to inf and underflow to 0 (gradually,
    through the subnormals), as libm.

    Unlike a call to libm, it has no branch: a loop of these vectorises (measured over the 16
    hidden activations of the XOR network: ~2.3 instead of ~5 ns each). x = k ln 2 + r with k the
    integer nearest x / ln 2 and |r| <= ln 2 / 2; e ** r by its Taylor series to r ** 13 / 13!
    (the next term is below 2 ** -53 of the sum), and 2 ** k as two halves, each a power of two
    built from its bits, so that k may run past the exponent range without wrapping around.
    """
    xc = min(max(x, -1500.0), 1500.0)  # beyond +-1500 the result is inf or 0 anyway
    # (np.floor, not math.floor: numba's math.floor returns an int64, and converting it back to a
    # float made the AVX2 loop scalar: 3.6 instead of 2.6 ns per sigmoid in a loop of 16, the
    # same bits)
    k = np.floor(xc * LOG2E + 0.5)
    r = (xc - k * LN2_HI) - k * LN2_LO
    # e ** r = 1 + (r + r^2 q(r)), q(r) = sum of r ** (i - 2) / i! for 2 <= i <= 13. q is summed in
    # Estrin's scheme (pairs c_i + c_{i+1} r, then pairs of pairs in r^2, and so on) so that the
    # longest chain of dependent operations is 6, not 13 (a lone exponential, such as one sample's
    # output, waits on that chain); the last two additions, in this order, keep r's low bits.
    r2 = r * r
    r4 = r2 * r2
    q = ((0.5 + r * (1.0 / 6.0)) + r2 * (1.0 / 24.0 + r * (1.0 / 120.0))
         + r4 * ((1.0 / 720.0 + r * (1.0 / 5040.0)) + r2 * (1.0 / 40320.0 + r * (1.0 / 362880.0)))
         + (r4 * r4) * ((1.0 / 3628800.0 + r * (1.0 / 39916800.0))
                        + r2 * (1.0 / 479001600.0 + r * (1.0 / 6227020800.0))))
    p = 1.0 + (r + r2 * q)
    k1 = np.floor(k * 0.5)
    k2 = k - k1
    return p * _pow2(min(max(k1, -1022.0), 1023.0)) * _pow2(min(max(k2, -1022.0), 1023.0))


@njit(inline="always", **JIT)
def sigmoid(z):
    # For z -> -inf, exp(-z) overflows to inf and the result is exactly 0: no NaN.
    return 1.0 / (1.0 + exp(-z))


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
def activate_range(buf, code):
    """buf <- f(buf), in place, buf 1-D: one loop per code, chosen once, so the loop holds no branch
    on it (and the sigmoid's vectorises: see ``exp``)."""
    if code == RELU:
        for i in range(buf.shape[0]):
            buf[i] = activate(buf[i], RELU)
    elif code == SIGMOID:
        for i in range(buf.shape[0]):
            buf[i] = activate(buf[i], SIGMOID)
    elif code == TANH:
        for i in range(buf.shape[0]):
            buf[i] = activate(buf[i], TANH)


@njit(inline="always", **JIT)
def activation_grad_range(delta, out, code):
    """delta *= f'(z), from the outputs a = f(z) in out (both 1-D, as long; see
    ``activation_grad``): one loop per code, as in ``activate_range``."""
    if code == RELU:
        for i in range(delta.shape[0]):
            delta[i] *= activation_grad(out[i], RELU)
    elif code == SIGMOID:
        for i in range(delta.shape[0]):
            delta[i] *= activation_grad(out[i], SIGMOID)
    elif code == TANH:
        for i in range(delta.shape[0]):
            delta[i] *= activation_grad(out[i], TANH)

