"""Training checkpoints: a model plus everything needed to resume training exactly. Never pickle.

A checkpoint is one ``.npz`` archive, written atomically (see :mod:`fastmlp.fileio`):

    header, W0.., b0..     the model, exactly as :func:`fastmlp.io.save_model` writes it
    checkpoint             uint8 array: UTF-8 JSON {"format": "fastmlp-checkpoint", "version": 1,
                           "epoch", "rng", "history", "fit", "arrays"}
    state.<name>           one 1-D array of the model's dtype per entry of ``state["arrays"]``

The ``state`` dict given to :func:`save_checkpoint` and returned by :func:`load_checkpoint`:

    epoch    int >= 0, epochs completed
    rng      a numpy bit generator's ``.state`` dict (a Generator or BitGenerator is accepted on
             save); default: the model's own generator, the one ``fit`` shuffles with when it gets
             no seed. Loading restores the model's generator from it, so ``fit`` resumes with the
             same sample orders an uninterrupted run would have used.
    history  dict of per-epoch lists of finite floats (or of lists of them, e.g. per-layer gradient
             norms), e.g. {"loss": [...]}; a ``History`` is accepted on save (its list fields)
    fit      dict of fit arguments (epochs, batch_size, lr, shuffle, seed, ...): JSON scalars; the
             ones ``Model.fit`` knows are checked as ``fit`` checks them
    arrays   dict name -> 1-D finite array of the model's dtype (optimizer state, e.g. momentum)

Loading reads the archive without trusting it (with :func:`fastmlp.io.read_archive`: every member's
size and .npy header are checked before its data is read), then checks the JSON, every field's type
and value, every array's name, shape, dtype and finiteness, before any of it is used. Any problem is
a :class:`CheckpointError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np

from .errors import FastMLPError
from .fileio import atomic_open
from .io import model_arrays, model_from_arrays, read_archive
from .io import _expected_arrays as _expected_model_arrays
from .model import FIT_PARAMS, History

FORMAT = "fastmlp-checkpoint"
VERSION = 1
# The checkpoint header is read before anything is trusted; a larger one is not ours.
MAX_HEADER_BYTES = 64 << 20
ARRAY_PREFIX = "state."
ARRAY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}\Z")
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")
STATE_KEYS = ("epoch", "rng", "history", "fit", "arrays")


class CheckpointError(FastMLPError):
    """A checkpoint that cannot be written or used: bad state, unreadable, corrupt, or too new."""


# ---- saving ---------------------------------------------------------------------------------------

def save_checkpoint(path, model, state: dict) -> None:
    """Write ``model`` and the training ``state`` (see the module docstring) to ``path`` atomically.

    Everything is checked as ``load_checkpoint`` will check it, so a checkpoint that was written can
    be read back; a model with NaN or inf weights is refused.
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"state must be a dict, got {type(state).__name__}")
    unknown = set(state) - set(STATE_KEYS)
    if unknown:
        raise CheckpointError(f"state has unknown keys {sorted(map(str, unknown))}; known: {list(STATE_KEYS)}")
    if "epoch" not in state:
        raise CheckpointError("state needs 'epoch', the number of epochs completed")
    if not np.isfinite(model._params).all():
        raise CheckpointError("refusing to save a checkpoint: the model's weights contain NaN or inf")
    where = "state"
    epoch = _check_epoch(where, _plain(state["epoch"]))
    rng = _check_rng(where, _rng_state(state.get("rng", model._rng)))
    history = state.get("history", {})
    if isinstance(history, History):  # its per-epoch lists; scalars such as seconds are not kept
        history = {f.name: getattr(history, f.name) for f in dataclasses.fields(history)
                   if isinstance(getattr(history, f.name), list)}
    history = _check_history(where, _plain(history))
    fit = _check_fit(where, _plain(state.get("fit", {})))
    arrays = _check_arrays(where, state.get("arrays", {}), model.dtype)

    header = {"format": FORMAT, "version": VERSION, "epoch": epoch, "rng": rng, "history": history,
              "fit": fit, "arrays": sorted(arrays)}
    raw = json.dumps(header, allow_nan=False).encode()
    if len(raw) > MAX_HEADER_BYTES:
        raise CheckpointError(f"the checkpoint header would be {len(raw)} bytes (limit {MAX_HEADER_BYTES}); "
                              f"keep the history and fit arguments smaller")
    members = _model_arrays(model)
    members["checkpoint"] = np.frombuffer(raw, dtype=np.uint8)
    for name, arr in arrays.items():
        members[ARRAY_PREFIX + name] = arr
    with atomic_open(path, "wb") as f:
        np.savez(f, **members)


def _rng_state(rng):
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    if isinstance(rng, np.random.BitGenerator):
        return rng.state
    return rng


def _plain(value):
    """numpy scalars and arrays inside dicts and lists -> Python ints, floats, bools and lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- loading --------------------------------------------------------------------------------------

def load_checkpoint(path, engine="numba"):
    """Read and check a checkpoint; return ``(model, state)``.

    The model's random generator is restored from ``state["rng"]``. ``state["arrays"]`` holds new,
    writable arrays of the model's dtype.
    """
    path = Path(path)
    header, members = read_archive(path, _expected_members, error=CheckpointError, kind="checkpoint")
    checkpoint = _read_header(path, members.pop("checkpoint"))
    where = f"{path}: the checkpoint's"
    epoch = _check_epoch(where, checkpoint["epoch"])
    rng = _check_rng(where, checkpoint["rng"])
    history = _check_history(where, checkpoint["history"])
    fit = _check_fit(where, checkpoint["fit"])
    names = checkpoint["arrays"]
    if (not isinstance(names, list) or not all(isinstance(n, str) and ARRAY_NAME.match(n) for n in names)
            or len(set(names)) != len(names)):
        raise CheckpointError(f"{path}: the checkpoint's 'arrays' is not a list of distinct array names")
    stored = {key[len(ARRAY_PREFIX):] for key in members if key.startswith(ARRAY_PREFIX)}
    if stored != set(names):
        raise CheckpointError(f"{path}: the checkpoint lists arrays {sorted(names)}, the file holds "
                              f"{sorted(stored)}")
    arrays = _check_arrays(where, {name: members.pop(ARRAY_PREFIX + name) for name in names},
                           np.dtype(header["dtype"]))
    model = _model_from_arrays(path, header, members, engine)  # everything left is the model's
    model._rng = rng_from_state(rng)
    state = {"epoch": epoch, "rng": rng, "history": history, "fit": fit, "arrays": arrays}
    return model, state


def rng_from_state(state: dict) -> np.random.Generator:
    """A new ``numpy.random.Generator`` in the bit generator state ``state`` (as saved)."""
    state = _check_rng("rng", state)
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _expected_members(path, header) -> dict:
    """{name: (shape or None for any 1-D, dtype)} of the members a checkpoint whose model header is
    ``header`` must hold: the model's arrays, the checkpoint header, and its ``state.*`` arrays
    (their names are the archive's, checked here and against the checkpoint header later)."""
    expected = _expected_model_arrays(path, header)
    with zipfile.ZipFile(path) as archive:
        names = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    if len(set(names)) != len(names):
        raise CheckpointError(f"{path}: the archive holds two members of the same name")
    if "checkpoint" not in names:
        raise CheckpointError(f"{path}: a model file, not a checkpoint (no checkpoint header)")
    expected["checkpoint"] = (None, np.dtype(np.uint8))
    for name in names:
        if name.startswith(ARRAY_PREFIX):
            if not ARRAY_NAME.match(name[len(ARRAY_PREFIX):]):
                raise CheckpointError(f"{path}: the archive member {_short(name)} is not a valid array name")
            expected[name] = (None, np.dtype(header["dtype"]))
    return expected


def _read_header(path, raw) -> dict:
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: the checkpoint header is not a JSON byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{path}: the checkpoint header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fastmlp checkpoint (header format is not {FORMAT!r})")
    version = header.get("version")
    if not _is_int(version) or version < 1:
        raise CheckpointError(f"{path}: the checkpoint's format version {version!r} is not valid")
    if version > VERSION:
        raise CheckpointError(f"{path}: written by a newer fastmlp (checkpoint format version {version}); "
                              f"this version reads format {VERSION}. Upgrade fastmlp to load it.")
    missing = [key for key in STATE_KEYS if key not in header]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint header lacks {missing}")
    return header


def _no_constant(name):
    raise ValueError(f"{name} is not allowed")


def _model_from_arrays(path, header, arrays, engine):
    """A Model from its checked ``header`` and ``arrays``."""
    return model_from_arrays(path, header, arrays, engine, error=CheckpointError)


def _model_arrays(model) -> dict:
    """The arrays ``save_model`` writes for ``model`` (header first)."""
    return model_arrays(model)


# ---- checks shared by saving and loading ----------------------------------------------------------

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value):
    """An int or float (not a bool) that is a finite float (a huge int is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_epoch(where, epoch):
    if not _is_int(epoch) or not 0 <= epoch < 2 ** 63:
        raise CheckpointError(f"{where} 'epoch' must be an integer >= 0 (epochs completed), got {epoch!r}")
    return epoch


def _check_rng(where, state):
    """A valid numpy bit generator state, returned as plain JSON data (lists, ints, strings)."""
    state = _plain(state)
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise CheckpointError(f"{where} 'rng' must be a numpy bit generator's state dict "
                              f"(bit_generator one of {', '.join(BIT_GENERATORS)}), got {_short(state)}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        raise CheckpointError(f"{where} 'rng' is not a valid {name} state ({type(exc).__name__}: {exc})") from None
    if not _identical(_plain(bit_generator.state), state):  # e.g. floats the setter would truncate
        raise CheckpointError(f"{where} 'rng' is not a valid {name} state: its values are not "
                              f"the generator's own")
    return state


def _identical(a, b):
    """Equal, and of the same types throughout (``2.0 == 2`` and ``True == 1`` are not identical)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_identical, a, b))
    return a == b


def _check_history(where, history):
    """A dict of per-epoch lists; an entry is a finite number or a list of them (e.g. one per layer)."""
    if not isinstance(history, dict):
        raise CheckpointError(f"{where} 'history' must be a dict of lists of numbers, got {_short(history)}")
    out = {}
    for key, values in history.items():
        if not isinstance(key, str) or not isinstance(values, list):
            raise CheckpointError(f"{where} 'history'[{_short(key)}] must be a list of finite numbers")
        entries = []
        for v in values:
            if _is_real(v):
                entries.append(float(v))
            elif isinstance(v, list) and all(map(_is_real, v)):
                entries.append([float(x) for x in v])
            else:
                raise CheckpointError(f"{where} 'history'[{key!r}] must hold finite numbers (or lists of "
                                      f"them, one per epoch), found {_short(v)}")
        out[key] = entries
    return out


def _check_fit(where, fit):
    if not isinstance(fit, dict) or not all(isinstance(k, str) for k in fit):
        raise CheckpointError(f"{where} 'fit' must be a dict of fit arguments, got {_short(fit)}")
    for key, value in fit.items():
        if not (value is None or isinstance(value, (bool, str)) or _is_real(value)):
            raise CheckpointError(f"{where} 'fit'[{key!r}] must be a number, string, bool or None, "
                                  f"got {_short(value)}")
        if key in FIT_PARAMS:
            try:
                FIT_PARAMS[key].check(f"{where} 'fit'[{key!r}]", value)
            except FastMLPError as exc:
                raise CheckpointError(str(exc)) from None
            except (TypeError, OverflowError):  # validation's Real rejects huge ints this way
                raise CheckpointError(f"{where} 'fit'[{key!r}] is out of range: {_short(value)}") from None
    return dict(fit)


def _check_arrays(where, arrays, dtype):
    if not isinstance(arrays, dict):
        raise CheckpointError(f"{where} 'arrays' must be a dict of named arrays, got {_short(arrays)}")
    for name, arr in arrays.items():
        if not isinstance(name, str) or not ARRAY_NAME.match(name):
            raise CheckpointError(f"{where} array name {name!r} is not allowed (letters, digits, _ . -; "
                                  f"at most 100 characters, not starting with a digit)")
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype != dtype:
            got = f"{arr.dtype}{list(arr.shape)}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise CheckpointError(f"{where} array {name!r} must be a 1-D array of the model's dtype "
                                  f"{dtype}, got {got}")
        if not np.isfinite(arr).all():
            raise CheckpointError(f"{where} array {name!r} contains NaN or inf")
    return dict(arrays)


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
