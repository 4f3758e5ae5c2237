"""Atomic saves: a process killed with SIGKILL at any moment while saving leaves the target as a
complete old file or a complete new file, never a partial one; a save that raises leaves the old
file and no debris.

The killing test runs a helper process that imports fastmlp once and then, on request, forks a
worker that saves model A and model B alternately to one path, as fast as it can. The test kills
each worker with SIGKILL after a random delay and checks the target after every kill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastmlp.io
from fastmlp import Model
from fastmlp.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL (POSIX)")

KILLS = 40
# Model size: each save writes about 1 MB, so a random kill often lands inside a write.
LAYERS = [256, 512, 256, 10]

HELPER = textwrap.dedent("""
    import os, sys
    import numpy as np
    from fastmlp import Model
    from fastmlp.checkpoint import save_checkpoint

    kind, path = sys.argv[1], sys.argv[2]
    layers = [int(s) for s in sys.argv[3].split(",")]
    models = [Model(layers, seed=1), Model(layers, seed=2)]

    def save(i):
        model = models[i]
        if kind == "model":
            model.save(path)
        else:
            save_checkpoint(path, model, {"epoch": i + 1, "history": {"loss": [float(i)] * 50},
                                          "arrays": {"momentum": np.full(model._params.size, i, model.dtype)}})

    save(0)  # the target exists before the first kill
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            pid = os.fork()
            if pid == 0:  # the worker: save A, B, A, B, ... until killed
                try:
                    i = 0
                    while True:
                        save(i % 2)
                        i += 1
                except BaseException as exc:
                    os.write(2, f"worker failed: {exc!r}\\n".encode())
                    os._exit(1)
            print(pid, flush=True)
        elif line.strip() == "reap":
            _, status = os.waitpid(pid, 0)
            print(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status), flush=True)
""")


def _load(kind, path):
    if kind == "model":
        return Model.load(path)._params.tobytes(), None
    model, state = load_checkpoint(path)
    return model._params.tobytes(), state


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_sigkill_during_saves_never_leaves_a_partial_file(tmp_path, kind):
    target = tmp_path / "target.npz"
    weights = {Model(LAYERS, seed=s)._params.tobytes(): s - 1 for s in (1, 2)}  # bytes -> index
    helper = subprocess.Popen([sys.executable, "-c", HELPER, kind, str(target), ",".join(map(str, LAYERS))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rnd = random.Random(20240607)
    seen = []
    try:
        assert helper.stdout.readline().strip() == "ready"
        for kill in range(KILLS):
            helper.stdin.write("go\n")
            helper.stdin.flush()
            pid = int(helper.stdout.readline())
            time.sleep(rnd.uniform(0.0, 0.25))
            os.kill(pid, signal.SIGKILL)
            helper.stdin.write("reap\n")
            helper.stdin.flush()
            assert int(helper.stdout.readline()) == signal.SIGKILL, "the worker ended by itself: it failed"

            # The target is always a complete A or a complete B.
            params, state = _load(kind, target)
            assert params in weights, f"kill {kill}: the target holds neither model A nor model B"
            index = weights[params]
            if kind == "checkpoint":  # and the checkpoint's state belongs to the same save
                assert state["epoch"] == index + 1
                assert state["history"]["loss"] == [float(index)] * 50
                assert (state["arrays"]["momentum"] == index).all()
            seen.append(index)
            # The only other files are the temporary files of interrupted saves.
            for name in os.listdir(tmp_path):
                assert name == target.name or (name.startswith(f".{target.name}.") and name.endswith(".tmp")), name
    finally:
        helper.stdin.close()
        helper.wait(timeout=30)
    assert helper.returncode == 0
    debris = [name for name in os.listdir(tmp_path) if name != target.name]
    print(f"{KILLS} kills: target held A {seen.count(0)}x, B {seen.count(1)}x; "
          f"{len(debris)} temporary files left by interrupted saves")
    # Kills landed in the middle of saves (each one leaves its temporary file behind) ...
    assert debris
    # Both models were found at the target: the workers really were replacing it while being killed.
    assert set(seen) == {0, 1}, seen


# ---- saves that fail midway -------------------------------------------------------------------------

class Boom(Exception):
    pass


def _partial_savez(fail_if=lambda members: True, exc=Boom):
    """np.savez that writes some bytes, then raises (when ``fail_if(members)``)."""
    real = np.savez

    def savez(file, *args, **members):
        if not fail_if(members):
            return real(file, *args, **members)
        file.write(b"PK\x03\x04" + b"partial" * 5000)
        raise exc("simulated failure in the middle of writing")
    return savez


@pytest.mark.parametrize("exc", [Boom, OSError, KeyboardInterrupt])
def test_model_save_that_raises_midway_leaves_the_old_file(tmp_path, monkeypatch, exc):
    target = tmp_path / "model.npz"
    old = Model([5, 4, 3], seed=1)
    old.save(target)
    before = target.read_bytes()
    monkeypatch.setattr(np, "savez", _partial_savez(exc=exc))
    with pytest.raises(exc):
        Model([5, 4, 3], seed=2).save(target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left
    assert Model.load(target)._params.tobytes() == old._params.tobytes()


@pytest.mark.parametrize("exc", [Boom, OSError, KeyboardInterrupt])
def test_checkpoint_save_that_raises_midway_leaves_the_old_file(tmp_path, monkeypatch, exc):
    target = tmp_path / "ckpt.npz"
    old = Model([5, 4, 3], seed=1)
    save_checkpoint(target, old, {"epoch": 1})
    before = target.read_bytes()
    # Fail only the write of the checkpoint itself (the one whose members include its header).
    monkeypatch.setattr(np, "savez", _partial_savez(lambda members: "checkpoint" in members, exc))
    with pytest.raises(exc):
        save_checkpoint(target, Model([5, 4, 3], seed=2), {"epoch": 2})
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    model, state = load_checkpoint(target)
    assert model._params.tobytes() == old._params.tobytes() and state["epoch"] == 1


def test_failing_fsync_leaves_the_old_file(tmp_path, monkeypatch):
    """A failure after all bytes are written but before the rename (fsync: disk full, I/O error)."""
    target = tmp_path / "model.npz"
    Model([5, 4, 3], seed=1).save(target)
    before = target.read_bytes()

    def fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        Model([5, 4, 3], seed=2).save(target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_save_writes_through_a_temporary_file(tmp_path, monkeypatch):
    """While the new file is being written, the target still holds the old file."""
    target = tmp_path / "model.npz"
    Model([5, 4, 3], seed=1).save(target)
    before = target.read_bytes()
    real = np.savez
    observed = []

    def savez(file, *args, **members):
        observed.append((target.read_bytes() == before, sorted(os.listdir(tmp_path))))
        return real(file, *args, **members)
    monkeypatch.setattr(np, "savez", savez)
    new = Model([5, 4, 3], seed=2)
    new.save(target)
    monkeypatch.undo()
    [(unchanged, names)] = observed
    assert unchanged and len(names) == 2 and names[0].startswith(".model.npz.") and names[0].endswith(".tmp")
    assert Model.load(target)._params.tobytes() == new._params.tobytes()
    assert os.listdir(tmp_path) == ["model.npz"]


def test_io_module_uses_numpy_savez():
    """The failure tests above patch np.savez; make sure that is what io.save_model calls."""
    assert fastmlp.io.np is np


def test_save_into_a_missing_folder_names_the_target(tmp_path):
    """The error names the file asked for, not the temporary file next to it."""
    target = tmp_path / "missing" / "model.npz"
    with pytest.raises(FileNotFoundError) as info:
        Model([5, 4, 3], seed=1).save(target)
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == []
