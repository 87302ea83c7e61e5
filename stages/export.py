"""Stage 4: export the trained weights as a TensorFlow SavedModel, the model users load (and `dvc artifacts get`
fetches).

Reads models/weights.npz and writes models/saved_model (digits.export):
uint8 28x28 images in, class probabilities out, the pixel scaling
(``data.scale``) baked in. With ``tta.export: true`` the probabilities are
averaged over the image and the ``tta.views`` evaluate uses (digits.tta);
changing them re-exports without retraining.
"""

from __future__ import annotations

from digits.runtime import tf  # noqa: F401 - before any other TensorFlow import: quiet start-up, XLA flags

from digits.artifacts import check_writable
from digits.errors import run_main
from digits.export import export_saved_model
from digits.model import load_weights
from digits.params import load_params
from digits.paths import SAVED_MODEL, WEIGHTS


def main() -> None:
    params = load_params()
    views = tuple(params.tta.views) if params.tta.export else ()

    check_writable(SAVED_MODEL)
    model = load_weights(WEIGHTS)
    export_saved_model(model, SAVED_MODEL, scale=params.data.scale, views=views)
    print(
        f"export: {SAVED_MODEL} from {WEIGHTS}"
        + (f", averaging over the image and {len(views)} test-time views" if views else "")
    )


if __name__ == "__main__":
    run_main(main)
