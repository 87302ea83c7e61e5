"""The model files more than one stage opens, named once.

train writes the weights, which evaluate, export and committee read;
export writes the SavedModel, which predict serves. Each stage's other
outputs (metrics, plots) are its own and named in it. Every path is relative
to the working directory, the repository root under ``dvc repro``.
"""

from pathlib import Path

MODELS_DIR = Path("models")
WEIGHTS = MODELS_DIR / "weights.npz"
SAVED_MODEL = MODELS_DIR / "saved_model"
