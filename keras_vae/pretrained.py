"""Pretrained models: the trained VAEs behind the README's results.

They live in `pretrained/` at the repository's root, one `.keras` file each
(no optimizer state), listed in `pretrained/models.json` with the command
that trained them, their run's test numbers, their size and sha256, and a
check: the -ELBO and importance-weighted NLL of the first `CHECK_IMAGES`
test images with `CHECK_IW_SAMPLES` samples, which the tests recompute on
every backend. `pretrained/README.md` shows the same as a table.

    model = keras_vae.load_pretrained("mlp-dynamic")

and `--pretrained mlp-dynamic` in place of a model path for `generate.py`,
`evaluate.py`, `visualize.py` and `export.py`.

`publish` makes an entry from a finished run folder
(`python pretrained/publish.py RUN_DIR NAME`).
"""

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

from keras_vae import data, evaluation, files
from keras_vae.errors import UserError
from keras_vae.model import VAE, fresh_copy
from keras_vae.run_folder import RunFolder

#: The folder of the pretrained models: `pretrained/` beside the package.
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
CHECK_IMAGES = 200
CHECK_IW_SAMPLES = 100
CHECK_SEED = 0
#: A model file larger than this stores its weights as float16 (half the size).
MAX_BYTES = 10_000_000


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
    return files.load_model(model_path(name, folder))


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


def check_numbers(model, dataset, binarize, data_dir=None):
    """The check recorded with each model: -ELBO and IWAE NLL of the first test images."""
    images, labels = data.load_split(
        dataset, "test", data_dir=data_dir, limit=CHECK_IMAGES, binarization=binarize
    )
    result = evaluation.evaluate_likelihood(
        model, images, labels=labels if model.conditional else None,
        iw_samples=CHECK_IW_SAMPLES, seed=CHECK_SEED,
    )
    return {"neg_elbo": round(result["neg_elbo"], 4), "iw_nll": round(result["iw_nll"], 4)}


def train_command(run):
    """The `train.py` command line that a run's `config.json` records."""
    from keras_vae.train import TrainConfig, flag_name

    saved = json.loads(run.config.read_text())
    config = TrainConfig(**run.settings())
    flags = []
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if field.metadata["resumable"] or value == field.default:
            continue  # where the data is, speed and logging do not change the model
        flag = flag_name(field.name)
        if isinstance(value, bool):
            flags.append(flag)
        else:
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            flags += [flag, text]
    return " ".join([f"KERAS_BACKEND={saved['backend']} python scripts/train.py", *flags])


def without_optimizer(model):
    """A copy of a trained `VAE` with its weights and seed states, uncompiled.

    Saved, it holds no optimizer state: a third of the size of a training
    checkpoint for Adam.
    """
    return fresh_copy(model)


def store_half_precision(path):
    """Rewrites a `.keras` file with its float32 weights stored as float16.

    Keras loads them into its float32 variables on every backend; each weight
    then differs from the trained one by float16's rounding (a relative 5e-4),
    so the check numbers are measured on the file as stored.
    """
    import h5py

    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    halved = io.BytesIO()
    with h5py.File(io.BytesIO(contents["model.weights.h5"]), "r") as old, h5py.File(halved, "w") as new:

        def copy(name, item):
            if isinstance(item, h5py.Dataset):
                values = item[()]
                new.create_dataset(
                    name, data=values.astype("float16") if values.dtype == "float32" else values
                )
            else:
                new.require_group(name)
            new[name].attrs.update(item.attrs)

        old.visititems(copy)
        new.attrs.update(old.attrs)
    contents["model.weights.h5"] = halved.getvalue()
    with files.atomic_path(path) as temporary:
        with zipfile.ZipFile(temporary, "w") as archive:
            for name, data in contents.items():
                archive.writestr(name, data)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish(run_dir, name, description, folder=PRETRAINED_DIR, data_dir=None):
    """Adds the final model of a finished run to the pretrained models.

    Writes `<name>.keras` (no optimizer state), recomputes the check numbers
    on the written file, and rewrites `models.json` and the table in
    `README.md`. A file over `MAX_BYTES` stores its weights as float16.

    Args:
        run_dir: a finished run folder of `train.py`.
        name: the model's name, e.g. `"mlp-dynamic"`.
        description: one line for the table.
        folder: the pretrained folder.
        data_dir: TFDS data directory for the check (default: TFDS's).

    Returns:
        The new entry.
    """
    run = RunFolder(run_dir)
    if not run.is_finished():
        raise UserError(f"{run.path} holds no finished run")
    folder = Path(folder)
    destination = folder / f"{name}.keras"
    files.save_model(without_optimizer(files.load_model(run.model)), destination)
    weights_dtype = "float32"
    if destination.stat().st_size > MAX_BYTES:
        store_half_precision(destination)
        weights_dtype = "float16"
    model = files.load_model(destination)
    settings = run.settings()
    metrics = json.loads(run.metrics.read_text())
    entry = {
        "file": destination.name,
        "description": description,
        "command": train_command(run),
        "dataset": settings["dataset"],
        "binarize": settings["binarize"],
        "validation_split": settings["validation_split"],
        "epochs": metrics["epochs"],
        "parameters": model.count_params(),
        "stored_as": weights_dtype,
        "bytes": destination.stat().st_size,
        "sha256": sha256(destination),
        "test": {
            key: round(metrics[f"test_{key}"], 4)
            for key in ("loss", "neg_elbo", "reconstruction_loss", "kl_loss")
        },
        "check": check_numbers(model, settings["dataset"], settings["binarize"], data_dir),
    }
    entries = registry(folder)
    entries[name] = entry
    files.write_json(folder / "models.json", entries)
    files.write_text(folder / "README.md", readme(entries))
    return entry


def readme(entries):
    """`pretrained/README.md`: the table of the models."""
    rows = [
        f"| `{name}` | {e['description']} | {e['epochs']} | {e['test']['neg_elbo']:.2f} "
        f"| {e['check']['iw_nll']:.2f} | {e['parameters']:,} | {e['bytes'] / 1e6:.1f} MB "
        f"| `{e['sha256'][:16]}…` |"
        for name, e in entries.items()
    ]
    commands = [f"- `{name}`: `{e['command']}`" for name, e in entries.items()]
    return "\n".join(
        [
            "# Pretrained models",
            "",
            "The trained models behind the README's results, saved without optimizer",
            "state. Load one with `keras_vae.load_pretrained(NAME)`, or pass",
            "`--pretrained NAME` to `generate.py`, `evaluate.py`, `visualize.py` or",
            "`export.py`. `models.json` holds the same facts, and the full sha256.",
            "",
            "| name | what | epochs | test −ELBO (nats, all 10 000 images) "
            f"| check: IWAE NLL, k = {CHECK_IW_SAMPLES}, first {CHECK_IMAGES} images "
            "| weights | size | sha256 |",
            "|---|---|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
            "Test −ELBO is the run's `metrics.json` (one sample of z per image); on",
            "grey-level pixels (`mlp-grey`) it is a cross-entropy, not a likelihood.",
            "Models over 10 MB store their weights as float16 (`models.json`:",
            "`stored_as`); they load into float32 variables, and every number here",
            "is measured on the file as stored. The check column is recomputed on",
            "every backend by",
            "`tests/test_pretrained.py`. Each model was trained with:",
            "",
            *commands,
            "",
            "and added here with `python pretrained/publish.py RUN_DIR NAME DESCRIPTION`.",
            "",
        ]
    )
