"""Compilation settings shared by every kernel."""

# LLVM's fast-math flags, minus the two that assume no NaN/inf ("nnan", "ninf"): fastmlp must see a
# diverging loss become inf or NaN to report it, and sigmoid relies on exp(-z) = inf giving 0.
# "reassoc" lets LLVM vectorise reductions; the order it picks is fixed by the code, not by the
# thread count, so results stay bit-identical on 1 or many threads.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# Below this many multiply-adds a layer runs on one thread: starting the thread pool costs a few
# microseconds, more than small layers (the XOR network, batch size 1) take to compute.
PARALLEL_MIN_WORK = 32_768

JIT = dict(cache=True, fastmath=FASTMATH)
