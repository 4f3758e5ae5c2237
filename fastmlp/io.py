"""Model files: ``.npz`` archives of plain arrays plus a JSON header. Never pickle.

Layout of a file:
    header   uint8 array: UTF-8 JSON {"format": "fastmlp-model", "version": 1, "layers": [...],
             "activations": [...], "output", "loss", "bias", "dtype", "init"}
    W0..W{L-1}  (fan_in, fan_out) weights;  b0..b{L-1}  (fan_out,) biases

Loading checks the header, then every array's name, shape and dtype against it, and that every
value is finite, before any of it reaches a model. Any problem is a ``ModelFileError``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import FastMLPError
from .fileio import atomic_open

FORMAT = "fastmlp-model"
VERSION = 1
# A header larger than this is not a fastmlp header (it is read before anything is trusted).
MAX_HEADER_BYTES = 1 << 20


class ModelFileError(FastMLPError):
    """A model file that cannot be used: unreadable, corrupt, from a newer version, or inconsistent."""


def _header(model) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "layers": list(model.layers),
        "activations": list(model.activations),
        "output": model.output,
        "loss": model.loss,
        "bias": model.bias,
        "init": model.init,
        "dtype": model.dtype.name,
    }


def save_model(model, path) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, fsync, rename)."""
    if not np.isfinite(model._params).all():
        raise FastMLPError("refusing to save: the model's weights contain NaN or inf")
    arrays = {"header": np.frombuffer(json.dumps(_header(model)).encode(), dtype=np.uint8)}
    for i, (W, b) in enumerate(zip(model.weights, model.biases)):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_model(path, engine="numba"):
    """Read and check a model file; return a new ``Model``."""
    from .model import Model

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ModelFileError(f"{path}: not a fastmlp model file (a single .npy array, not an .npz archive)")
        with archive:
            names = set(archive.files)
            if "header" not in names:
                raise ModelFileError(f"{path}: not a fastmlp model file (no header)")
            header = _read_header(path, archive["header"])
            arrays = {name: archive[name] for name in names if name != "header"}
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile,
            NotImplementedError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None

    try:
        model = Model(header["layers"], activation=header["activations"], output=header["output"],
                      loss=header["loss"], init=header["init"], bias=header["bias"],
                      dtype=header["dtype"], engine=engine)
    except FastMLPError as exc:
        raise ModelFileError(f"{path}: the header describes an invalid model: {exc}") from None
    expected = {f"{k}{i}" for i in range(len(model.layers) - 1) for k in "Wb"}
    if set(arrays) != expected:
        raise ModelFileError(f"{path}: expected arrays {sorted(expected)}, found {sorted(arrays)}")
    for kind, views in (("W", model._views("weights")), ("b", model._views("biases"))):
        for i, view in enumerate(views):
            arr = arrays[f"{kind}{i}"]
            if arr.shape != view.shape or arr.dtype != model.dtype:
                raise ModelFileError(f"{path}: array {kind}{i} is {arr.dtype}{list(arr.shape)}, the "
                                     f"header says {model.dtype}{list(view.shape)}")
            if not np.isfinite(arr).all():
                raise ModelFileError(f"{path}: array {kind}{i} contains NaN or inf")
            if kind == "b" and not model.bias and arr.any():
                raise ModelFileError(f"{path}: the model has no biases, but b{i} is not zero")
    for i, W in enumerate(model._views("weights")):
        W[...] = arrays[f"W{i}"]
    for i, b in enumerate(model._views("biases")):
        if model.bias:
            b[...] = arrays[f"b{i}"]
    return model


def _read_header(path, raw) -> dict:
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: the header is not a JSON byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastmlp model file (header format is not {FORMAT!r})")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path}: the header's format version {version!r} is not valid")
    if version > VERSION:
        raise ModelFileError(f"{path}: written by a newer fastmlp (model format version {version}); "
                             f"this version reads format {VERSION}. Upgrade fastmlp to load it.")
    required = {"layers": list, "activations": list, "output": str, "loss": str, "bias": bool,
                "init": str, "dtype": str}
    for key, kind in required.items():
        if not isinstance(header.get(key), kind):
            raise ModelFileError(f"{path}: the header's {key!r} is missing or not a {kind.__name__}")
    if header["dtype"] not in ("float32", "float64"):
        raise ModelFileError(f"{path}: the header's dtype {header['dtype']!r} is not float32 or float64")
    layers = header["layers"]
    if len(layers) > 1000 or any(not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= 1 << 20
                                 for s in layers) or sum(a * b for a, b in zip(layers, layers[1:])) > 1 << 31:
        raise ModelFileError(f"{path}: the header's layer sizes are not a plausible model")
    return header
