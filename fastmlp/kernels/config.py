"""Compilation settings shared by every kernel."""

# LLVM's fast-math flags, minus the two that assume no NaN/inf ("nnan", "ninf"): fastmlp must see a
# diverging loss become inf or NaN to report it, and sigmoid relies on exp(-z) = inf giving 0.
# "reassoc" lets LLVM vectorise reductions; the order it picks is fixed by the code, not by the
# thread count, so results stay bit-identical on 1 or many threads.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# Below this many multiply-adds a loop runs on one thread. Starting and joining the thread pool
# costs microseconds on a quiet machine and a whole scheduler time slice (milliseconds) when another
# process holds a core; a million multiply-adds take ~30 us on one core, which bounds the loss.
PARALLEL_MIN_WORK = 1 << 20

JIT = dict(cache=True, fastmath=FASTMATH)
