"""The compiled core: explicit-loop Numba kernels.

Each operation is a forward/backward pair, written as plain loops with a comment giving the shape
of every argument. Arguments come in the order outputs, inputs, sizes/flags. The kernels trust
their arguments: the Python layer (``fastmlp.model``) validates everything before calling them.

- ``activations``: the hidden-layer nonlinearities and their derivatives.
- ``dense``:       ``dense_forward`` / ``dense_backward``, a fully connected layer, and
                   ``dense_infer``, its forward pass for prediction.
- ``output``:      the output transform (softmax, sigmoid, identity) fused with its loss.
- ``optim``:       the optimizers' rules (``update_rows``), applied inside the weight-gradient
                   kernels and the small path.
- ``network``:     whole-network passes: ``train_batches`` runs many SGD steps in one call.
- ``small``:       ``train_small``, the same steps as one loop nest, for tiny networks (XOR).
- ``checks``:      ``nonfinite_in`` and ``nonfinite_blocks``, the finiteness checks of large inputs.
"""

import hashlib
import os
import shutil
import time
from pathlib import Path

import numba


# A kernel cache folder of another version, unused for this long, is removed (see _prune).
STALE_CACHE_DAYS = 30


def _default_cache_base() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                        "fastmlp")


def _kernel_cache_dir() -> str:
    """Where numba caches the compiled kernels: a folder named by a hash of every kernel source.

    Numba's own cache checks only the source file of the function it loads, not the kernels that
    function calls from other files, so after an edit (or an upgrade that keeps some files) it
    could load a network-level kernel compiled against an older layer kernel. One folder per
    version of the whole kernels package rules that out.
    """
    sources = sorted(Path(__file__).parent.glob("*.py"))
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources)).hexdigest()[:16]
    base = os.environ.get("NUMBA_CACHE_DIR") or _default_cache_base()
    return os.path.join(base, f"kernels-{digest}")


def _prune(current: str, now: float | None = None) -> None:
    """Mark ``current`` as used now, and remove the kernel folders of other versions that no process
    has used for STALE_CACHE_DAYS days (each version leaves 20-40 MB, so upgrades would otherwise
    pile them up). Only in fastmlp's own cache folder, never in a NUMBA_CACHE_DIR the user chose,
    and only folders named kernels-*. Best effort: a failure leaves things as they were."""
    base = os.path.dirname(current)
    if os.path.abspath(base) != os.path.abspath(_default_cache_base()):
        return
    now = time.time() if now is None else now
    try:
        os.makedirs(current, exist_ok=True)
        os.utime(current, (now, now))
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith("kernels-") or entry.path == current:
            continue
        try:
            stale = entry.is_dir(follow_symlinks=False) and \
                now - entry.stat(follow_symlinks=False).st_mtime > STALE_CACHE_DAYS * 86400
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)


def on_disk(kernel) -> bool:
    """Whether numba's cache holds a compiled copy of ``kernel`` (a compiled function, any
    signature) for this version of the kernels: if not, its first call compiles it (seconds for the
    small path, about a minute for the layer kernels). True when that cannot be told."""
    module = kernel.py_func.__module__.rsplit(".", 1)[-1]
    prefix = f"{module}.{kernel.py_func.__qualname__}-"
    try:
        folder = kernel._cache.cache_path  # (numba's, not a documented attribute)
    except AttributeError:
        return True
    try:
        names = os.listdir(folder)
    except OSError:  # not created yet: nothing was compiled into it
        return False
    return any(name.startswith(prefix) and name.endswith(".nbi") for name in names)


# The cache folder is read when each kernel is decorated: set it while the kernel modules are
# imported, then give numba back its own setting for everybody else.
_previous = numba.config.CACHE_DIR
numba.config.CACHE_DIR = _kernel_cache_dir()
_prune(numba.config.CACHE_DIR)
try:
    from . import activations, checks, config, dense, layers, network, optim, output, small  # noqa: E402,F401
finally:
    numba.config.CACHE_DIR = _previous
