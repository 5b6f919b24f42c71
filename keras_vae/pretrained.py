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

import re
from pathlib import Path

from keras_vae import model, untrusted
from keras_vae.errors import DamagedFileError, UserError
from keras_vae.data import DataSettings
from keras_vae.model import archive
from keras_vae.files import sha256  # also what models.json records

#: The folder of the pretrained models: `pretrained/` beside the package.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
#: The check recorded with each model: the first 200 test images, k = 100, seed 0.
CHECK = {"images": 200, "iw_samples": 100, "seed": 0}


_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.keras")


def registry(folder=PRETRAINED_DIR):
    """`models.json`: name -> entry (empty when the folder is absent).

    Read as untrusted (bounded in size and depth); every name is a plain name
    (it becomes a folder under `runs/pretrained/`) and every entry names a
    plain `.keras` file inside `folder`, with its sha256 and weight count.

    Raises:
        DamagedFileError: `models.json` is damaged, or an entry is not plain.
    """
    path = Path(folder) / "models.json"
    if not path.is_file():
        return {}
    entries = untrusted.read_json(path)
    if not isinstance(entries, dict):
        raise DamagedFileError(f"{path}: not a registry of models")
    for name, entry in entries.items():
        if not _NAME.fullmatch(name) or not isinstance(entry, dict):
            raise DamagedFileError(f"{path}: {name[:40]!r} is not a plain model name")
        file, digest, count = entry.get("file"), entry.get("sha256"), entry.get("parameters")
        if not (isinstance(file, str) and _FILE.fullmatch(file) and ".." not in file):
            raise DamagedFileError(f"{path}: {name}'s file {str(file)[:40]!r} is not a plain .keras name")
        if not (isinstance(digest, str) and len(digest) == 64 and isinstance(count, int)):
            raise DamagedFileError(f"{path}: {name} lacks its sha256 or weight count")
    return entries


def names(folder=PRETRAINED_DIR):
    """The names of the pretrained models, in the table's order."""
    return list(registry(folder))


def model_path(name, folder=PRETRAINED_DIR):
    """The `.keras` file of the pretrained model `name`, checked against the
    registry: its sha256 and the weight count its settings ask for.

    Raises:
        UserError: an unknown name, or a folder without the file (the
            models come with a clone of the repository, not with a wheel).
        DamagedFileError: the file is not the one the registry lists.
    """
    entries = registry(folder)
    if name not in entries:
        known = ", ".join(entries) or "none here"
        raise UserError(f"no pretrained model {name!r}; the pretrained models are: {known}")
    entry = entries[name]
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise UserError(
            f"{path}: the pretrained model {name!r} is missing; the models come with "
            f"a clone of the keras-vae repository (pretrained/)"
        )
    if sha256(path) != entry["sha256"]:
        raise DamagedFileError(
            f"{path}: its sha256 differs from the one pretrained/models.json records for "
            f"{name!r}: a changed or damaged file (git checkout {path} restores it)"
        )
    count = archive.read_settings(path).parameter_count()
    if count != entry["parameters"]:
        raise DamagedFileError(
            f"{path}: {count:,} weights, but pretrained/models.json records {entry['parameters']:,}"
        )
    return path


def load_pretrained(name, folder=PRETRAINED_DIR):
    """Loads the pretrained `VAE` called `name` (see `names()`), safely."""
    return model.load_model(model_path(name, folder))


def data_settings(path, folder=PRETRAINED_DIR):
    """The `data.DataSettings` of a pretrained model's file; None for another file.

    Models trained before the validation split existed held none out (0).
    """
    path = Path(path).resolve()
    for entry in registry(folder).values():
        if (Path(folder) / entry["file"]).resolve() == path:
            return DataSettings(
                entry["dataset"], entry["binarize"], entry.get("validation_split", 0),
                entry.get("image_size"), entry.get("channels"),
            )
    return None
