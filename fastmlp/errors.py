"""fastmlp's own error type.

Every problem fastmlp detects in what a user gave it (arguments, arrays, model files, data files)
is raised as :class:`FastMLPError`. It subclasses :class:`ValueError`, so ``except ValueError``
catches it too.
"""


class FastMLPError(ValueError):
    """Bad input: the message names the problem and, where it can, the fix."""
