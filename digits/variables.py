"""How the project makes its Variables: the model's weights and the optimizer's state alike.

Under a tf.distribute strategy (digits.distribute) every replica holds a copy
of each Variable and applies the same all-reduced update, so the first
replica's value is the value: ``ONLY_FIRST_REPLICA`` aggregation says so to
TensorFlow. Outside a strategy the setting has no effect.
"""

from __future__ import annotations

from digits.runtime import tf


def replicated_variable(initial_value: tf.Tensor, *, name: str, trainable: bool = True) -> tf.Variable:
    """A Variable that every replica updates alike (the only kind this project makes)."""
    return tf.Variable(
        initial_value, name=name, trainable=trainable, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
    )
