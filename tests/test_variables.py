"""digits/variables.py: every Variable the project makes is replicated alike under a tf.distribute strategy and is a
plain Variable outside one."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from digits.variables import replicated_variable


def test_outside_a_strategy_it_is_a_plain_variable():
    variable = replicated_variable(tf.constant([1.0, 2.0]), name="w")
    assert isinstance(variable, tf.Variable) and variable.trainable and variable.name.startswith("w")
    assert variable.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA
    assert not replicated_variable(tf.constant(0, tf.int64), name="step", trainable=False).trainable


def test_under_a_mirrored_strategy_every_replica_holds_the_value_and_updates_it_alike():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # the two logical CPUs tests/conftest.py sets up
    with strategy.scope():
        variable = replicated_variable(tf.constant([1.0, 2.0]), name="w")
    strategy.run(lambda: variable.assign_sub(tf.constant([0.5, 0.5])))  # each replica applies the same update
    values = [value.numpy() for value in strategy.experimental_local_results(variable)]
    assert len(values) == 2 and all(np.array_equal(value, [0.5, 1.5]) for value in values)
