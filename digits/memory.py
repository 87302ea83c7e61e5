"""Does a network fit this machine's memory? Checked where training starts, not in the schema.

The check depends on the machine, so it cannot live in params validation (one
params.yaml would be valid here and not there, and ``check_params`` would
fail on a laptop for a run meant for a server). The train and baseline stages
call ``check_fits_in_memory`` before they build anything, so an impossible
``model.hidden`` fails in a second with one line instead of after minutes of
swapping.
"""

from __future__ import annotations

import itertools
import os

from digits.errors import PipelineError
from digits.mnist import IMAGE_PIXELS, NUM_CLASSES
from digits.params import Params
from digits.params_file import EXCERPT


def parameter_count(layer_sizes: list[int]) -> int:
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(layer_sizes))


def training_memory_bytes(params: Params, *, input_size: int = IMAGE_PIXELS, num_classes: int = NUM_CLASSES) -> int:
    """A lower bound on the memory the train stage needs for ``params``: float32 copies of every parameter.

    The weights, their gradient, the optimizer's slots (1 for momentum and
    RMSprop, 2 for Adam), the weight average (ema_decay), the best epoch's weights (keep: best), and the two
    copies saving a checkpoint makes (numpy arrays, the serialised file); plus
    one batch's activations forward and back.
    """
    layers = [input_size, *params.model.hidden, num_classes]
    slots = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}[params.train.optimizer]
    copies = 2 + slots + (params.train.ema_decay > 0) + (params.train.keep == "best") + 2
    return 4 * (copies * parameter_count(layers) + 2 * params.train.batch_size * sum(layers))


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits_in_memory(params: Params) -> None:
    """Raise, naming ``model.hidden``, if training ``params`` needs more than this machine's physical memory."""
    needed, available = training_memory_bytes(params), physical_memory_bytes()
    if needed > available:
        raise PipelineError(
            f"model.hidden = {EXCERPT.repr(params.model.hidden)}: training this network needs about "
            f"{needed / 1e9:,.0f} GB (weights, gradients, optimizer state and the copies a checkpoint "
            f"writes), more than this machine's {available / 1e9:,.0f} GB of memory"
        )
