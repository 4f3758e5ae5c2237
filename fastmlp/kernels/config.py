"""Compilation settings shared by every kernel, and the columns of a network's layout."""

import types

import numba
from numba import njit
from numba.core.codegen import get_host_cpu_features

# LLVM's fast-math flags, minus the two that assume no NaN/inf ("nnan", "ninf"): fastmlp must see a
# diverging loss become inf or NaN to report it, and sigmoid relies on exp(-z) = inf giving 0.
# "reassoc" lets LLVM vectorise reductions; the order it picks is fixed by the code, not by the
# thread count, so results stay bit-identical on 1 or many threads.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# Below this many multiply-adds a loop runs on one thread. Starting and joining the thread pool
# costs 1-2 us on a quiet machine (measured: an empty parallel loop) and a whole scheduler time
# slice (milliseconds) when another process holds a core; 2^18 multiply-adds take ~3 us on one
# core, so smaller loops gain nothing from a second thread.
PARALLEL_MIN_WORK = 1 << 18

# error_model "numpy": a float division by zero gives inf or NaN, as in NumPy, instead of raising
# ZeroDivisionError. The kernels never divide by zero (their divisors are sums of exponentials, batch
# weights checked nonzero, square roots plus eps), and the check numba otherwise puts before every
# division stops LLVM from vectorising the loop around it (measured: Adam's update of a 784 x 128
# float32 matrix, 405 us with the check, 91 us without).
JIT = dict(cache=True, fastmath=FASTMATH, error_model="numpy")


def _compiles_for_avx512() -> bool:
    """Whether numba compiles for a CPU with AVX-512 (32 vector registers of 16 floats) rather than
    AVX2 (16 registers of 8): the features numba's own compiler targets, NUMBA_CPU_FEATURES if set.
    (A virtual machine may hide AVX-512 from a processor that has it: what counts is what is
    exposed.)"""
    features = numba.config.CPU_FEATURES
    if features is None:
        features = get_host_cpu_features()
    return "+avx512f" in features.split(",")


# dense.py sizes its dot-product tiles by the vector registers: see DOT_COLUMNS there. (Numba's
# on-disk cache is keyed by the CPU and its features too, so a cached kernel always matches.)
WIDE_REGISTERS = _compiles_for_avx512()

# Columns of ``layout`` (L, 8), one row per layer: see network.py (small.py reads it too).
FAN_IN, FAN_OUT, W_OFF, B_OFF, ACT, BN_OFF, RUN_OFF, FLAGS = range(8)


def jit_pair(fn):
    """Compile one kernel source twice: multi-threaded (``prange`` runs in parallel) and
    single-threaded (``prange`` is a plain ``range``), for callers to pick by the size of the work.

    Merely calling a parallel-compiled function costs about a microsecond even when its loop is
    short, which dominates tiny layers. The single-threaded copy is a separate function object
    with its own name, so numba's on-disk cache keeps the two compilations apart.
    """
    single = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_1t",
                                fn.__defaults__, fn.__closure__)
    single.__qualname__ = fn.__qualname__ + "_1t"
    single.__doc__ = fn.__doc__
    return njit(parallel=True, **JIT)(fn), njit(**JIT)(single)
