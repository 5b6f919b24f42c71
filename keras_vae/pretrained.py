"""Pretrained models: the trained VAEs behind the README's results.

They live in `pretrained/` at the repository's root, one `.keras` file each
(no optimizer state), listed in `pretrained/models.json` with the command
that trained them, their run's test numbers, their size and sha256, and a
check: the -ELBO and importance-weighted NLL of the first test images
(`CHECK`, computed by `evaluation.check_numbers`), which the tests recompute
on every backend. `pretrained/README.md` shows the same as a table.

    model = keras_vae.load_pretrained("mlp-dynamic")

and `--pretrained mlp-dynamic` in place of a model path for `generate.py`,
`evaluate.py`, `visualize.py` and `export.py`.

The maintainer's tool that adds an entry from a finished run folder is
`pretrained/publish.py`, outside the package.
"""

import hashlib
import json
from pathlib import Path

from keras_vae import model
from keras_vae.errors import UserError

#: The folder of the pretrained models: `pretrained/` beside the package.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
#: The check recorded with each model: the first 200 test images, k = 100, seed 0.
CHECK = {"images": 200, "iw_samples": 100, "seed": 0}


def registry(folder=PRETRAINED_DIR):
    """`models.json`: name -> entry (empty when the folder is absent)."""
    path = Path(folder) / "models.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def names(folder=PRETRAINED_DIR):
    """The names of the pretrained models, in the table's order."""
    return list(registry(folder))


def model_path(name, folder=PRETRAINED_DIR):
    """The `.keras` file of the pretrained model `name`.

    Raises:
        UserError: an unknown name, or a folder without the file (the
            models come with a clone of the repository, not with a wheel).
    """
    entries = registry(folder)
    if name not in entries:
        known = ", ".join(entries) or "none here"
        raise UserError(f"no pretrained model {name!r}; the pretrained models are: {known}")
    path = Path(folder) / entries[name]["file"]
    if not path.is_file():
        raise UserError(
            f"{path}: the pretrained model {name!r} is missing; the models come with "
            f"a clone of the keras-vae repository (pretrained/)"
        )
    return path


def load_pretrained(name, folder=PRETRAINED_DIR):
    """Loads the pretrained `VAE` called `name` (see `names()`), safely."""
    return model.load_model(model_path(name, folder))


def data_settings(path, folder=PRETRAINED_DIR):
    """`(dataset, binarize, validation_split)` of a pretrained model's file.

    None for another file. Models trained before the validation split
    existed held none out (0).
    """
    path = Path(path).resolve()
    for entry in registry(folder).values():
        if (Path(folder) / entry["file"]).resolve() == path:
            return entry["dataset"], entry["binarize"], entry.get("validation_split", 0)
    return None


def sha256(path):
    """The file's sha256, as `models.json` records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
