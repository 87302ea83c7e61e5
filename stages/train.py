"""Stage 2: train the explicit-Variable network on data/prepared/.

Reads ``model`` and ``train`` params, builds the network (digits.model) and
optimizer (digits.optimizers), runs the compiled GradientTape loop
(digits.training), and writes the raw weights, the SavedModel, the
per-epoch curves and metrics/train.json. A checkpoint after every epoch
(models/checkpoint.npz, a ``persist`` output) lets a killed run resume.
"""

from __future__ import annotations

import time
from pathlib import Path

import tensorflow as tf

from digits.artifacts import write_csv, write_json
from digits.data import load_split
from digits.errors import run_main
from digits.export import export_saved_model
from digits.model import build_model, save_weights
from digits.optimizers import make_optimizer
from digits.params import load_params
from digits.training import HISTORY_COLUMNS, Trainer, fingerprint, fit, steps_per_epoch

MODELS_DIR = Path("models")
WEIGHTS = MODELS_DIR / "weights.npz"
SAVED_MODEL = MODELS_DIR / "saved_model"
CHECKPOINT = MODELS_DIR / "checkpoint.npz"
METRICS = Path("metrics/train.json")
HISTORY = Path("plots/train_history.csv")


def main() -> None:
    params = load_params()
    tf.config.experimental.enable_op_determinism()

    # Data, model and optimizer
    train, val = load_split("train"), load_split("val")
    model = build_model(params.model, input_size=train.images.shape[1])
    optimizer = make_optimizer(params.train, model.parameters, steps_per_epoch=steps_per_epoch(len(train), params.train.batch_size))
    trainer = Trainer(model, optimizer, loss=params.train.loss, batch_size=params.train.batch_size)
    print(f"train: {len(train)} images, layers {list(model.layer_sizes)}, {model.count_parameters()} parameters")

    # Train, checkpointing every epoch
    started = time.perf_counter()
    history = fit(
        trainer,
        train=train,
        val=val,
        epochs=params.train.epochs,
        shuffle_seed=params.train.shuffle_seed,
        checkpoint_path=CHECKPOINT,
        run_fingerprint=fingerprint(params.data, params.model, params.train),
        divergence_hints=f"(train.lr = {params.train.lr}, data.scale = {params.data.scale}, model.init = {params.model.init})",
    )
    print(f"train: {params.train.epochs} epochs in {time.perf_counter() - started:.1f} s")

    # Outputs: weights, SavedModel, curves, metrics
    save_weights(model, WEIGHTS)
    export_saved_model(model, SAVED_MODEL, scale=params.data.scale)
    write_csv(HISTORY, HISTORY_COLUMNS, history.rows)
    last = history.as_dicts()[-1]
    write_json(METRICS, {"epochs": params.train.epochs, "parameters": model.count_parameters(),
                         **{key: value for key, value in last.items() if key != "epoch"}})


if __name__ == "__main__":
    run_main(main)
