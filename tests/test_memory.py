"""Training memory: one epoch of a 10-layer, 1,024-wide network on 100,000 samples (a 400 MB float32 X)
needs at most the data + the weights + 200 MB on top of what the process held before.

The measurement runs in a fresh subprocess: it compiles the kernels first (on a tiny model and a
tiny batch, so compilation memory is part of the baseline, not of training), records the baseline
RSS, creates the data and the model, resets the kernel's peak-RSS counter (VmHWM, via
/proc/self/clear_refs), trains one epoch with a progress callback, and reports the peak.

"10-layer" means 10 dense layers: sizes [1024] + [1024] * 9 + [10], i.e. nine 1024 x 1024 layers and
a 1024 x 10 output layer, 9.45 M parameters (38 MB in float32). One epoch is about 5.7 TFLOP
(forward, backward and update: 6 flops per parameter per sample).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")]

N, WIDTH, BATCH = 100_000, 1024, 256
LAYERS = [WIDTH] + [WIDTH] * 9 + [10]
MARGIN = 200 * 2**20

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from fastmlp import Model

    N, WIDTH, BATCH, LAYERS = json.loads(sys.argv[1])

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    start_rss = status("VmRSS")
    # Compile every kernel on a tiny problem (same dtype and code paths: blocked, batch of 256).
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    warm = Model([WIDTH, 16, 10], seed=0)
    warm.fit(rng.random((2 * BATCH, WIDTH), dtype=np.float32), rng.integers(0, 10, 2 * BATCH),
             epochs=1, batch_size=BATCH, progress=lambda *a: None)
    del warm
    compile_seconds = time.perf_counter() - t
    base = status("VmRSS")

    X = rng.random((N, WIDTH), dtype=np.float32)
    y = rng.integers(0, 10, N).astype(np.uint8)  # labels: any integer dtype; uint8 keeps them small
    model = Model(LAYERS, seed=0, dtype=np.float32)
    after_setup = status("VmRSS")
    reset = reset_peak()
    peak_before_fit = status("VmHWM")

    last = [0.0]
    def progress(epoch, done, total, loss):
        now = time.perf_counter()
        if now - last[0] > 10 or done == total:
            last[0] = now
            print(f"  epoch {epoch} batch {done}/{total} loss {loss:.4f} "
                  f"rss {status('VmRSS') / 2**20:.0f} MiB", file=sys.stderr, flush=True)

    t = time.perf_counter()
    history = model.fit(X, y, epochs=1, batch_size=BATCH, lr=0.01, progress=progress)
    fit_seconds = time.perf_counter() - t
    print(json.dumps(dict(
        start_rss=start_rss, compile_seconds=compile_seconds, base=base, after_setup=after_setup,
        peak=status("VmHWM"), peak_reset=reset, peak_before_fit=peak_before_fit,
        end_rss=status("VmRSS"), data_bytes=X.nbytes + y.nbytes, weight_bytes=model._params.nbytes,
        fit_seconds=fit_seconds, loss=history.loss)))
""")


def test_one_epoch_of_a_big_network_stays_within_data_plus_weights_plus_200_mb():
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps([N, WIDTH, BATCH, LAYERS])],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-5000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    mib = 2**20
    budget = r["data_bytes"] + r["weight_bytes"] + MARGIN
    used = r["peak"] - r["base"]
    report = (f"one epoch, {N} x {WIDTH} float32, layers {len(LAYERS) - 1} dense: fit {r['fit_seconds']:.1f} s "
              f"(compile {r['compile_seconds']:.1f} s); RSS at start {r['start_rss'] / mib:.0f} MiB, after "
              f"compiling {r['base'] / mib:.0f} MiB, with data and model {r['after_setup'] / mib:.0f} MiB, "
              f"peak during fit {r['peak'] / mib:.0f} MiB (absolute), i.e. {used / mib:.0f} MiB over the "
              f"post-compile baseline and {(r['peak'] - r['after_setup']) / mib:.0f} MiB over data + model; "
              f"budget {budget / mib:.0f} MiB (data {r['data_bytes'] / mib:.0f} + weights "
              f"{r['weight_bytes'] / mib:.0f} + {MARGIN // mib}); peak counter reset: {r['peak_reset']}")
    print(report)
    assert r["peak_reset"], "could not reset VmHWM: the peak would include the warm-up"
    assert len(r["loss"]) == 1 and r["loss"][0] == r["loss"][0]
    assert used <= budget, report
