"""The compiled core: explicit-loop Numba kernels.

Each operation is a forward/backward pair, written as plain loops with a comment giving the shape
of every argument. Arguments come in the order outputs, inputs, sizes/flags. The kernels trust
their arguments: the Python layer (``fastmlp.model``) validates everything before calling them.

- ``activations``: the hidden-layer nonlinearities and their derivatives.
- ``dense``:       ``dense_forward`` / ``dense_backward``, a fully connected layer.
- ``output``:      the output transform (softmax, sigmoid, identity) fused with its loss.
- ``optim``:       parameter updates over the flat parameter buffer.
- ``network``:     whole-network passes: ``train_batches`` runs many SGD steps in one call.
"""
