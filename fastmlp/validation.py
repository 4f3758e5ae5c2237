"""Checks at the Python boundary. The kernels trust their arguments; these make that safe.

Parameters are validated declaratively: a table maps each name to a constraint, and
``validate_params`` checks them all before any work starts. Arrays are checked for shape, dtype,
finiteness and label range, and converted to what the kernels expect (C-contiguous, the model's
dtype) without touching the caller's data.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .errors import FastMLPError


@dataclass(frozen=True)
class Integer:
    """An int (not a bool) with ``low <= value`` (and ``value <= high`` if given)."""
    low: int | None = None
    high: int | None = None

    def check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise FastMLPError(f"{name} must be an integer, got {value!r}")
        if self.low is not None and value < self.low:
            raise FastMLPError(f"{name} must be >= {self.low}, got {value}")
        if self.high is not None and value > self.high:
            raise FastMLPError(f"{name} must be <= {self.high}, got {value}")


@dataclass(frozen=True)
class Real:
    """A finite real number in an interval; ``low_open``/``high_open`` exclude the ends."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite(value):
            raise FastMLPError(f"{name} must be a finite number, got {value!r}")
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            raise FastMLPError(f"{name} must be {'>' if self.low_open else '>='} {self.low}, got {value}")
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            raise FastMLPError(f"{name} must be {'<' if self.high_open else '<='} {self.high}, got {value}")


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values (names of activations, losses, ...)."""
    choices: tuple

    def check(self, name, value):
        if not isinstance(value, (str, bool, type(None))) or value not in self.choices:
            options = ", ".join(repr(c) for c in self.choices)
            raise FastMLPError(f"unknown {name} {value!r}: choose one of {options}")


@dataclass(frozen=True)
class Optional:
    """None, or a value satisfying ``inner``."""
    inner: object

    def check(self, name, value):
        if value is not None:
            self.inner.check(name, value)


def _finite(value) -> bool:
    """math.isfinite that also takes ints too large for a float (they are not finite settings)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


# For the numba engine, arrays of at least this many elements are checked by the compiled,
# multi-threaded loop; smaller ones (the XOR rows, a few predictions) by NumPy, which needs no
# compilation. The NumPy engine always checks with NumPy: after a parallel numba loop, numba's
# OpenMP threads spin for a few milliseconds before they sleep, and a BLAS call in that window
# shares the cores with them (measured: the NumPy engine's predict_proba on 10,000 images, 17.6 ms
# after NumPy's check, 23.8 ms after the compiled one).
COMPILED_CHECK_MIN = 1 << 16
CHECK_BLOCKS = 64  # row blocks of the compiled check: several per thread, to balance the load


def all_finite(arr: np.ndarray, compiled: bool = False) -> bool:
    """``np.isfinite(arr).all()`` without its temporary (a bool per element: 47 MB for 60,000
    images). With ``compiled``, a large C-contiguous 2-D float array is read once by
    ``kernels.checks.nonfinite_blocks`` on every thread. Otherwise: a sum of finite numbers is
    finite, or inf when it overflows, while a single NaN or inf makes it NaN or inf, so only a sum
    that is not finite needs the element-wise check. (Measured on 60,000 x 784 float32: compiled
    4.8-5.3 ms, sum 7.4 ms, isfinite 15 ms.)"""
    if arr.dtype.kind != "f" or arr.size < COMPILED_CHECK_MIN:
        # (small arrays: one ufunc call, whose temporary is at most 64 kB, costs less than the
        # sum's floating-point error state; the XOR run checks four arrays per fit call)
        return bool(np.isfinite(arr).all())
    if compiled and arr.ndim == 2 and arr.flags.c_contiguous and arr.dtype in (np.float32, np.float64):
        from .kernels.checks import nonfinite_blocks
        flags = np.zeros(min(CHECK_BLOCKS, arr.shape[0]), np.int8)
        nonfinite_blocks(flags, arr)
        return not flags.any()
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    return bool(np.isfinite(total)) or bool(np.isfinite(arr).all())


def validate_params(constraints: dict, values: dict) -> None:
    """Check every ``values[name]`` against ``constraints[name]``; raise on the first failure."""
    for name, constraint in constraints.items():
        constraint.check(name, values[name])


def check_X(X, n_features: int, dtype: np.dtype, name: str = "X", compiled: bool = False,
            finite: bool = True) -> np.ndarray:
    """A finite 2-D array of shape (n >= 1, n_features), returned C-contiguous in ``dtype``.
    ``compiled``: check finiteness with the compiled loop (see ``all_finite``); ``finite=False``:
    leave finiteness to the caller (prediction checks it on its way through X).

    The caller's array is never modified; a copy is made only when its dtype or layout differ.
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and other non-arrays
        raise FastMLPError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype.kind == "c":
        raise FastMLPError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":  # bool, signed and unsigned integers, floats
        raise FastMLPError(f"{name} must hold numbers, got an array of dtype {arr.dtype}")
    if arr.ndim != 2:
        raise FastMLPError(f"{name} must be 2-D (samples, features), got {arr.ndim}-D with shape {arr.shape}")
    if arr.shape[0] == 0:
        raise FastMLPError(f"{name} is empty: it has 0 samples")
    if arr.shape[1] != n_features:
        raise FastMLPError(f"{name} has {arr.shape[1]} features per sample, but the model's input "
                           f"layer has {n_features}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if finite and not all_finite(out, compiled):
        bad = np.argwhere(~np.isfinite(out))[0]
        kind = "NaN" if np.isnan(out[tuple(bad)]) else "inf"
        raise FastMLPError(f"{name} contains {kind} (first at row {bad[0]}, column {bad[1]}): "
                           "every input must be finite")
    return out


def check_labels(y, n_samples: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Integer class labels, shape (n_samples,), each in [0, n_classes), returned as int64."""
    arr = _as_numeric(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise FastMLPError(f"{name} must be 1-D class labels, got shape {arr.shape}")
    _check_length(arr, n_samples, name)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise FastMLPError(f"{name} must hold integer class labels, got non-integer values")
    if arr.min() < 0 or arr.max() >= n_classes:
        bad = arr[(arr < 0) | (arr >= n_classes)][0].item()
        raise FastMLPError(f"{name} has label {bad} outside [0, {n_classes}): the output layer "
                           f"has {n_classes} units")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_targets(y, n_samples: int, n_outputs: int, dtype: np.dtype, low=None, high=None,
                  name: str = "y", compiled: bool = False) -> np.ndarray:
    """Float targets of shape (n_samples, n_outputs) ((n_samples,) when n_outputs is 1);
    ``compiled`` as in ``check_X``."""
    arr = _as_numeric(y, name)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise FastMLPError(f"{name} must have shape (n_samples, {n_outputs}) to match the output "
                           f"layer, got {arr.shape}")
    _check_length(arr, n_samples, name)
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not all_finite(out, compiled):
        raise FastMLPError(f"{name} contains NaN or inf: every target must be finite")
    if low is not None and (out.min() < low or out.max() > high):
        raise FastMLPError(f"{name} must lie in [{low}, {high}] for this loss, got values in "
                           f"[{out.min()}, {out.max()}]")
    return out


def _as_numeric(y, name):
    try:
        arr = np.asarray(y)
    except Exception as exc:
        raise FastMLPError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype.kind not in "biuf":  # bool, signed and unsigned integers, floats
        raise FastMLPError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _check_length(arr, n_samples, name):
    if arr.shape[0] != n_samples:
        raise FastMLPError(f"X and {name} have different lengths: X has {n_samples} samples, "
                           f"{name} has {arr.shape[0]}")
