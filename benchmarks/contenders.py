"""The contenders benchmarks/train_speed.py times: one function each that builds a contender and returns its epoch.

Each builder runs inside its own worker process (train_speed.py starts one per contender, with its own XLA flags)
and returns ``run_epoch(epoch)``, which trains one epoch of the same net, batch and plain SGD on the prepared
training split. JAX and PyTorch are imported inside their builders: only ``make bench`` and ``make bench-torch``
install them.
"""

from __future__ import annotations

import itertools

LR = 0.1
PROJECT = "this project (XLA epoch)"
PROJECT_DEFAULT_FLAGS = "this project, XLA's default flags"
# Eigen's matmuls: the loop before it gave the same bits everywhere
PROJECT_CPU_SPECIFIC = "this project, DIGITS_SAME_BITS=0"
KERAS = "keras model.fit"
JAX = "jax.jit epoch (default flags)"
JAX_PROJECT_FLAGS = "jax.jit epoch (project's flags)"
LIMIT = "limit: matmuls only (project's flags)"
LIMIT_DEFAULT = "limit: matmuls only (default flags)"
TORCH = "torch (DataLoader, nn.Sequential, SGD)"
TORCH_COMPILE = "torch.compile step (fullgraph)"
CONTENDERS = [
    "eager per step (seeds)",
    "tf.function per step",
    PROJECT,
    PROJECT_CPU_SPECIFIC,
    PROJECT_DEFAULT_FLAGS,
    KERAS,
    JAX,
    JAX_PROJECT_FLAGS,
    TORCH,
    TORCH_COMPILE,
    LIMIT,
    LIMIT_DEFAULT,
]
NEEDS_JAX = {JAX, JAX_PROJECT_FLAGS}
NEEDS_TORCH = {TORCH, TORCH_COMPILE}
# Contenders that must not get this project's XLA flags (digits.runtime sets them when it is imported).
DEFAULT_FLAGS = {JAX, LIMIT_DEFAULT, PROJECT_DEFAULT_FLAGS}


def matmul_flops_per_example(layer_sizes: list[int]) -> int:
    """FLOPs of the matmuls one training example costs: forward, weight gradients, input gradients but the first
    layer's.
    """
    products = [fan_in * fan_out for fan_in, fan_out in itertools.pairwise(layer_sizes)]
    return 2 * sum(products) + 2 * sum(products) + 2 * sum(products[1:])


def tensorflow_contender(name: str, layer_sizes: list[int], batch: int, train):
    """A function running one epoch (given its index) of a TensorFlow contender."""
    from digits.runtime import tf

    from digits.data import steps_per_epoch
    from digits.model import build_model
    from digits.optimizers import make_optimizer
    from digits.params import load_params
    from digits.trainer import Trainer, per_example_loss
    from digits.training import epoch_order

    params = load_params()
    model_params = params.model.model_copy(
        update={"hidden": layer_sizes[1:-1], "activation": "relu", "init": "truncated_normal"}
    )
    train_params = params.train.model_copy(
        update={"optimizer": "sgd", "lr": LR, "lr_schedule": "constant", "batch_size": batch, "loss": "cross_entropy"}
    )
    steps = steps_per_epoch(len(train), batch)
    images, labels = tf.constant(train.images), tf.constant(train.labels)

    if name in (PROJECT, PROJECT_CPU_SPECIFIC, PROJECT_DEFAULT_FLAGS):
        model = build_model(model_params)
        trainer = Trainer(
            model,
            make_optimizer(train_params, model.parameters, steps_per_epoch=steps),
            loss="cross_entropy",
            batch_size=batch,
        )
        return lambda epoch: trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=epoch))

    if name == KERAS:
        from digits.keras_reference import build_keras_model, keras_loss, keras_optimizer

        keras_model = build_keras_model(model_params, input_size=layer_sizes[0])
        keras_model.compile(
            optimizer=keras_optimizer(train_params, steps=steps), loss=keras_loss("cross_entropy"), metrics=["accuracy"]
        )
        return lambda epoch: keras_model.fit(
            train.images, train.labels, batch_size=batch, epochs=1, shuffle=True, verbose=0
        )

    def seed_style_step(model, x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(per_example_loss("cross_entropy", y, model(x)))
        for variable, gradient in zip(model.parameters, tape.gradient(loss, model.parameters)):
            variable.assign_sub(LR * gradient)

    step = seed_style_step if name.startswith("eager") else tf.function(seed_style_step, reduce_retracing=True)
    model = build_model(model_params)

    def run_epoch(epoch):
        order = epoch_order(len(train), seed=0, epoch=epoch)
        for start in range(0, len(train), batch):
            indices = order[start : start + batch]
            step(model, tf.gather(images, indices), tf.gather(labels, indices))

    return run_epoch


def limit_contender(layer_sizes: list[int], batch: int, steps: int):
    """One epoch's worth of the step's matmuls alone, at their real shapes, in one XLA-compiled loop.

    A scalar carried through the loop is added to the smallest operand of
    each matmul, so XLA cannot hoist the (otherwise loop-invariant) matmuls
    out of the loop; those adds are under 0.1% of the FLOPs.
    """
    from digits.runtime import tf

    import numpy as np

    rng = np.random.default_rng(0)
    weights = [
        tf.constant(rng.standard_normal((a, b)).astype(np.float32) * 0.05) for a, b in itertools.pairwise(layer_sizes)
    ]
    activations = [tf.constant(rng.standard_normal((batch, size)).astype(np.float32)) for size in layer_sizes]

    def smaller_plus(a, b, carry):
        return (a + carry, b) if a.shape.num_elements() <= b.shape.num_elements() else (a, b + carry)

    @tf.function(jit_compile=True)
    def epoch(weights, activations):
        def body(i, carry):
            total = carry
            for layer, weight in enumerate(weights):
                inputs, outputs = activations[layer], activations[layer + 1]  # outputs stand in for the output gradient
                products = [
                    tf.matmul(*smaller_plus(inputs, weight, carry)),  # forward
                    tf.matmul(*smaller_plus(inputs, outputs, carry), transpose_a=True),
                ]  # weight gradient
                if layer > 0:
                    products.append(
                        tf.matmul(*smaller_plus(outputs, weight, carry), transpose_b=True)
                    )  # input gradient
                total += sum(product[0, 0] for product in products) * 1e-30
            return i + 1, total

        return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), tf.constant(0.0)))[1]

    return lambda _epoch: float(epoch(weights, activations))


def jax_contender(layer_sizes: list[int], batch: int, train):
    """The idiomatic fast JAX loop: one jit-compiled epoch, lax.fori_loop over the full batches."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from digits.training import epoch_order

    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    steps = len(train) // batch
    keys = jax.random.split(jax.random.PRNGKey(1), len(layer_sizes) - 1)
    params = [
        (jax.random.truncated_normal(key, -2.0, 2.0, (fan_in, fan_out)) * 0.1, jnp.zeros(fan_out))
        for key, fan_in, fan_out in zip(keys, layer_sizes[:-1], layer_sizes[1:])
    ]

    def loss_fn(params, x, y):
        for weight, bias in params[:-1]:
            x = jax.nn.relu(x @ weight + bias)
        logits = x @ params[-1][0] + params[-1][1]
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1)), logits

    @jax.jit
    def epoch(params, order):
        def body(step, carry):
            params, loss_sum, correct = carry
            batch_indices = lax.dynamic_slice(order, (step * batch,), (batch,))
            x, y = images[batch_indices], labels[batch_indices]
            (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
            params = jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)
            return params, loss_sum + loss, correct + jnp.sum(jnp.argmax(logits, 1) == jnp.argmax(y, 1))

        return lax.fori_loop(0, steps, body, (params, 0.0, 0))

    state = {"params": params}

    def run_epoch(index):
        state["params"], loss_sum, _ = epoch(state["params"], jnp.asarray(epoch_order(len(train), seed=0, epoch=index)))
        jax.block_until_ready(loss_sum)
        return np.asarray(loss_sum)

    return run_epoch


def torch_contender(name: str, layer_sizes: list[int], batch: int, train):
    """PyTorch's usual loop, or the whole step (torch.func's gradient and the update) as one
    torch.compile(fullgraph=True)
    graph.
    """
    import numpy as np
    import torch
    from torch import nn

    from digits.training import epoch_order

    torch.manual_seed(1)
    layers = []
    for fan_in, fan_out in itertools.pairwise(layer_sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    loss_fn = nn.CrossEntropyLoss()
    images, classes = torch.from_numpy(train.images), torch.from_numpy(train.classes)

    if name == TORCH:
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)

        def step(x, y):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            optimizer.step()

        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(images, classes), batch_size=batch, shuffle=True
        )

        def run_epoch(_epoch):
            for x, y in loader:
                step(x, y)

        return run_epoch

    # The fastest form: a functional step (torch.func), forward, backward and update in one graph, as JAX's.
    weights = {name: parameter.detach() for name, parameter in model.named_parameters()}
    loss_and_gradients = torch.func.grad_and_value(
        lambda weights, x, y: loss_fn(torch.func.functional_call(model, weights, (x,)), y)
    )

    def functional_step(weights, x, y):
        gradients, loss = loss_and_gradients(weights, x, y)
        return {name: weight - LR * gradients[name] for name, weight in weights.items()}, loss

    compiled = torch.compile(functional_step, fullgraph=True)
    state = {"weights": weights}

    def run_compiled_epoch(epoch):
        order = torch.from_numpy(epoch_order(len(train), seed=0, epoch=epoch).astype(np.int64))
        for start in range(0, len(order) - batch + 1, batch):  # full batches: one graph shape
            indices = order[start : start + batch]
            state["weights"], _ = compiled(state["weights"], images[indices], classes[indices])

    return run_compiled_epoch
