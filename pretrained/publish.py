"""Add a finished run's model to the pretrained models (for maintainers).

    python pretrained/publish.py RUN_DIR NAME "one-line description"

Writes pretrained/NAME.keras without optimizer state (float16 weights above
`MAX_BYTES`), recomputes its check numbers on the written file, and rewrites
models.json and README.md here. Users load the models through
keras_vae/pretrained.py, the registry; this tool stays outside the package.
"""

import dataclasses
import io
import json
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_vae import evaluation, files, pretrained  # noqa: E402
from keras_vae.cli.flags import ArgumentParser, run_command  # noqa: E402
from keras_vae.errors import UserError  # noqa: E402
from keras_vae.model import fresh_copy, load_model, save_model  # noqa: E402
from keras_vae.run.config import TrainConfig, flag_name  # noqa: E402
from keras_vae.run.folder import RunFolder  # noqa: E402

#: A model file larger than this stores its weights as float16 (half the size).
MAX_BYTES = 10_000_000


def train_command(run):
    """The `train.py` command line that a run's `config.json` records."""
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


def publish(run_dir, name, description, folder=pretrained.PRETRAINED_DIR, data_dir=None):
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
    save_model(without_optimizer(load_model(run.model)), destination)
    weights_dtype = "float32"
    if destination.stat().st_size > MAX_BYTES:
        store_half_precision(destination)
        weights_dtype = "float16"
    model = load_model(destination)
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
        "sha256": pretrained.sha256(destination),
        "test": {
            key: round(metrics[f"test_{key}"], 4)
            for key in ("loss", "neg_elbo", "reconstruction_loss", "kl_loss")
        },
        "check": evaluation.check_numbers(
            model, settings["dataset"], settings["binarize"], data_dir, **pretrained.CHECK
        ),
    }
    entries = pretrained.registry(folder)
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
            f"| check: IWAE NLL, k = {pretrained.CHECK['iw_samples']}, first {pretrained.CHECK['images']} images "
            "| weights | size | sha256 |",
            "|---|---|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
            "Test −ELBO is the run's `metrics.json` (one sample of z per image); on",
            "grey-level pixels (`mlp-grey`) it is a cross-entropy, not a likelihood;",
            "with an 8-bit likelihood (`mlp-logistic`) it is of the 256 levels of",
            "each pixel: divided by 784 ln 2, bits per dimension.",
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


def main(argv):
    parser = ArgumentParser(prog="publish.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished run folder of train.py")
    parser.add_argument("name", help="the model's name, e.g. mlp-dynamic")
    parser.add_argument("description", help="one line for the table")
    parser.add_argument("--data-dir", default=None, help="prepared TFDS data directory")
    args = parser.parse_args(argv)
    entry = publish(args.run_dir, args.name, args.description, data_dir=args.data_dir)
    print(f"publish.py: {args.name}: {entry['bytes'] / 1e6:.1f} MB, check {entry['check']}")


if __name__ == "__main__":
    sys.exit(run_command(main, "publish.py"))
