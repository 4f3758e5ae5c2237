"""The kernels' on-disk cache: one folder per version of the kernel sources, and old versions'
folders removed once unused for ``STALE_CACHE_DAYS`` (they would otherwise pile up, 20-40 MB per
version). Each test imports fastmlp in a fresh process, with its cache folders in tmp_path."""

import os
import subprocess
import sys
import time

from fastmlp import kernels

DAY = 86400
PRINT_CACHE_DIR = "import numba, fastmlp.kernels as k; print(k.small.train_small._cache.cache_path)"


def _make(path, age_days, is_dir=True):
    if is_dir:
        os.makedirs(path / "inner")
        (path / "inner" / "kernel.nbi").write_bytes(b"x")
    else:
        path.write_bytes(b"x")
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))


def _import_fastmlp(env):
    result = subprocess.run([sys.executable, "-c", PRINT_CACHE_DIR], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_old_versions_unused_for_a_month_are_removed(tmp_path):
    base = tmp_path / "xdg" / "fastmlp"
    days = kernels.STALE_CACHE_DAYS
    _make(base / "kernels-0000old", days + 10)
    _make(base / "kernels-000recent", days - 5)
    _make(base / "not-ours", days + 10)
    _make(base / "kernels-a-file", days + 10, is_dir=False)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    used = _import_fastmlp(env)
    names = sorted(os.listdir(base))
    current = [n for n in names if used.startswith(str(base / n) + os.sep)]
    assert len(current) == 1, (used, names)
    assert sorted(set(names) - set(current)) == ["kernels-000recent", "kernels-a-file", "not-ours"]
    assert time.time() - os.stat(base / current[0]).st_mtime < DAY  # marked as used
    # The current folder, however old its date, is never removed: importing marks it used again.
    stamp = time.time() - 100 * DAY
    os.utime(base / current[0], (stamp, stamp))
    assert _import_fastmlp(env) == used and current[0] in os.listdir(base)


def test_a_numba_cache_dir_chosen_by_the_user_is_never_pruned(tmp_path):
    chosen = tmp_path / "mine"
    _make(chosen / "kernels-0000old", kernels.STALE_CACHE_DAYS + 100)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(chosen), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    assert _import_fastmlp(env).startswith(str(chosen / "kernels-"))
    assert (chosen / "kernels-0000old" / "inner" / "kernel.nbi").exists()


def test_a_cache_folder_that_cannot_be_made_does_not_stop_the_import(tmp_path):
    """Pruning is best effort: here fastmlp's cache folder is taken by a file."""
    (tmp_path / "xdg").mkdir()
    (tmp_path / "xdg" / "fastmlp").write_bytes(b"not a folder")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    _import_fastmlp(env)
    assert (tmp_path / "xdg" / "fastmlp").read_bytes() == b"not a folder"
