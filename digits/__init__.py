"""Shared building blocks of the MNIST pipeline.

One module per concern, imported by the stages in ``stages/``:

- ``idx``: reading and verifying raw IDX files
- ``params``: the params.yaml schema, checked before any stage does work
- ``artifacts``: atomic, byte-stable writing of npz / json / csv outputs
- ``data``: loading the prepared arrays with shape and dtype checks
- ``model``: the explicit ``tf.Variable`` network and its forward pass
- ``optimizers``: the in-place update rules (SGD, momentum, RMSprop, Adam)
- ``training``: the compiled training loop, divergence guard and checkpoints
- ``metrics``: accuracy, loss, per-class precision/recall, confusion matrix
"""
