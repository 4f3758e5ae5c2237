"""Model files: ``.npz`` archives of plain arrays plus a JSON header. Never pickle.

Layout of a file:
    header   uint8 array: UTF-8 JSON {"format": "fastmlp-model", "version": 1, "layers": [...],
             "activations": [...], "output", "loss", "bias", "dtype", "init"}
    W0..W{L-1}  (fan_in, fan_out) weights;  b0..b{L-1}  (fan_out,) biases

Loading checks the header, then every array's name, shape and dtype against it, and that every
value is finite, before any of it reaches a model. Any problem is a ``ModelFileError``.
"""

from __future__ import annotations

import io
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
        "dropout": list(model.dropout),
        "batchnorm": model.batchnorm,
        "residual": model.residual,
    }


def model_arrays(model) -> dict:
    """Everything a model file holds: the JSON header as bytes, then W0.., b0.. and, with batch
    normalization, gamma0.., beta0.., running_mean0.., running_var0.. (checkpoints reuse it)."""
    arrays = {"header": np.frombuffer(json.dumps(_header(model)).encode(), dtype=np.uint8)}
    for i, (W, b) in enumerate(zip(model.weights, model.biases)):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    for i, ((gamma, beta), (mean, var)) in enumerate(zip(model._batchnorm_views(), model._running_views())):
        arrays[f"gamma{i}"], arrays[f"beta{i}"] = gamma, beta
        arrays[f"running_mean{i}"], arrays[f"running_var{i}"] = mean, var
    return arrays


def save_model(model, path) -> None:
    """Write ``model`` to ``path`` atomically (temporary file, fsync, rename)."""
    if not np.isfinite(model._params).all():
        raise FastMLPError("refusing to save: the model's weights contain NaN or inf")
    with atomic_open(path, "wb") as f:
        np.savez(f, **model_arrays(model))


def load_model(path, engine="numba"):
    """Read and check a model file; return a new ``Model``."""
    path = Path(path)
    header, arrays = read_archive(path, _expected_arrays)
    return model_from_arrays(path, header, arrays, engine)


def model_from_arrays(path, header, arrays, engine="numba", error=ModelFileError):
    """A new Model from a checked header and the arrays ``read_archive`` returned for it."""
    from .model import Model

    try:
        model = Model(header["layers"], activation=header["activations"], output=header["output"],
                      loss=header["loss"], init=header["init"], bias=header["bias"],
                      dtype=header["dtype"], engine=engine, dropout=header["dropout"],
                      batchnorm=header["batchnorm"], residual=header["residual"])
    except FastMLPError as exc:
        raise error(f"{path}: the header describes an invalid model: {exc}") from None
    for kind, views in (("W", model._views("weights")), ("b", model._views("biases"))):
        for i, view in enumerate(views):
            arr = arrays[f"{kind}{i}"]
            if not np.isfinite(arr).all():
                raise error(f"{path}: array {kind}{i} contains NaN or inf")
            if kind == "b" and not model.bias and arr.any():
                raise error(f"{path}: the model has no biases, but b{i} is not zero")
            if view.flags.writeable:
                view[...] = arr
    extras = [(f"gamma{i}", gamma) for i, (gamma, _) in enumerate(model._batchnorm_views())] + \
        [(f"beta{i}", beta) for i, (_, beta) in enumerate(model._batchnorm_views())] + \
        [(f"running_mean{i}", m) for i, (m, _) in enumerate(model._running_views())] + \
        [(f"running_var{i}", v) for i, (_, v) in enumerate(model._running_views())]
    for name, view in extras:
        if not np.isfinite(arrays[name]).all():
            raise error(f"{path}: array {name} contains NaN or inf")
        if name.startswith("running_var") and (arrays[name] < 0).any():
            raise error(f"{path}: array {name} has negative variances")
        view[...] = arrays[name]
    return model


def _expected_arrays(path, header) -> dict:
    """{name: (shape, dtype)} of the arrays a model file with this header must hold."""
    layers, dtype = header["layers"], np.dtype(header["dtype"])
    out = {}
    for i, (fan_in, fan_out) in enumerate(zip(layers[:-1], layers[1:])):
        out[f"W{i}"] = ((fan_in, fan_out), dtype)
        out[f"b{i}"] = ((fan_out,), dtype)
    if header["batchnorm"]:
        for i, width in enumerate(layers[1:-1]):
            for name in ("gamma", "beta", "running_mean", "running_var"):
                out[f"{name}{i}"] = ((width,), dtype)
    return out


def read_archive(path, expected_arrays, header_name="header", error=ModelFileError, kind="model"):
    """Read an .npz archive of fastmlp's (JSON header + plain arrays) without trusting it.

    ``expected_arrays(path, header)`` says which arrays (name -> (shape, dtype)) the checked header
    calls for; the archive must hold exactly those. Each member's size is checked against the
    file's size and its .npy header against the expectation before any data is read or allocated,
    so a small damaged file can never make fastmlp allocate or compute much. Returns
    (header, {name: array}); any problem raises ``error`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {kind} file")
    file_size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise error(f"{path}: unexpected member {info.filename!r} in the archive")
                if info.filename[:-4] in members:
                    raise error(f"{path}: member {info.filename!r} appears twice in the archive")
                members[info.filename[:-4]] = info
            if header_name not in members:
                raise error(f"{path}: not a fastmlp {kind} file (no {header_name} in the archive)")
            raw = _read_member(path, archive, members[header_name], None, np.dtype(np.uint8),
                               file_size, error)
            if raw.size > MAX_HEADER_BYTES:
                raise error(f"{path}: the header is too large to be a fastmlp header")
            header = _read_header(path, raw, error)
            expected = expected_arrays(path, header)
            if set(members) != set(expected) | {header_name}:
                found = sorted(set(members) - {header_name})
                raise error(f"{path}: expected arrays {sorted(expected)}, found {found}")
            arrays = {name: _read_member(path, archive, members[name], shape, dtype, file_size, error)
                      for name, (shape, dtype) in expected.items()}
    except FastMLPError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes means a bad file
        # (zip, zlib and NumPy's .npy header parser raise a wide range of types on damaged input)
        raise error(f"{path}: not a readable {kind} file ({type(exc).__name__}: {exc})") from None
    return header, arrays


def _read_member(path, archive, info, shape, dtype, file_size, error):
    """One .npy member: sizes and header checked first, then the data (a new array)."""
    name = info.filename
    limit = file_size if info.compress_type == zipfile.ZIP_STORED else 1100 * info.compress_size
    if info.file_size > limit:
        raise error(f"{path}: member {name} claims {info.file_size} bytes, more than the file can hold")
    data = archive.read(info)  # zipfile checks the CRC
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise error(f"{path}: member {name} has an unsupported .npy version {version}")
    if fortran or got_dtype != dtype or (shape is not None and tuple(got_shape) != tuple(shape)) \
            or (shape is None and len(got_shape) != 1):
        want = f"{dtype}{list(shape)}" if shape is not None else f"{dtype} 1-D"
        raise error(f"{path}: array {name[:-4]} is {got_dtype}{list(got_shape)}"
                    f"{' (Fortran order)' if fortran else ''}, but the header says {want}")
    nbytes = int(np.prod(got_shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - stream.tell() != nbytes:
        raise error(f"{path}: array {name[:-4]} should hold {nbytes} bytes of data, found "
                    f"{len(data) - stream.tell()}")
    return np.frombuffer(data, dtype=dtype, offset=stream.tell()).reshape(got_shape).copy()


def _read_header(path, raw, error=ModelFileError) -> dict:
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > MAX_HEADER_BYTES:
        raise error(f"{path}: the header is not a JSON byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise error(f"{path}: not a fastmlp model file (header format is not {FORMAT!r})")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise error(f"{path}: the header's format version {version!r} is not valid")
    if version > VERSION:
        raise error(f"{path}: written by a newer fastmlp (model format version {version}); "
                    f"this version reads format {VERSION}. Upgrade fastmlp to load it.")
    required = {"layers": list, "activations": list, "output": str, "loss": str, "bias": bool,
                "init": str, "dtype": str}
    for key, kind in required.items():
        if not isinstance(header.get(key), kind):
            raise error(f"{path}: the header's {key!r} is missing or not a {kind.__name__}")
    # Written before these features existed: a plain network.
    header.setdefault("dropout", [0.0] * max(len(header.get("layers") or []) - 2, 0))
    header.setdefault("batchnorm", False)
    header.setdefault("residual", False)
    extras = {"dropout": list, "batchnorm": bool, "residual": bool}
    for key, kind in extras.items():
        if not isinstance(header[key], kind):
            raise error(f"{path}: the header's {key!r} is not a {kind.__name__}")
    if header["dtype"] not in ("float32", "float64"):
        raise error(f"{path}: the header's dtype {header['dtype']!r} is not float32 or float64")
    layers = header["layers"]
    if len(layers) > 1000 or any(not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= 1 << 20
                                 for s in layers) or sum(a * b for a, b in zip(layers, layers[1:])) > 1 << 31:
        raise error(f"{path}: the header's layer sizes are not a plausible model")
    return header
