"""Training and evaluating a VAE run: the work behind `scripts/train.py`.

A run is described by a `TrainConfig` and writes everything into one folder:

    model.keras          the final model
    best.keras           the model with the lowest validation loss
    config.json          the configuration, backend and package versions
    history.csv          per-epoch train and validation losses
    samples/epoch_NNN.png         the same 64 z decoded after each epoch
    reconstructions/epoch_NNN.png test images above their reconstructions
    metrics.json         test-set losses and timings
    figures/             latent scatter and manifold, interpolations,
                         reconstructions, training curves, samples.gif
    backup/              the resume checkpoint, while the run is unfinished

Running again with the same output folder resumes an interrupted run from its
last completed epoch (see `callbacks.RunCheckpoint`).
"""

import dataclasses
import datetime
import importlib.metadata
import json
import math
import platform
import statistics
from pathlib import Path

import keras
import numpy as np

from keras_vae import callbacks, data, evaluation, files, losses, visualize
from keras_vae.backend import list_devices
from keras_vae.errors import UserError
from keras_vae.model import VAE
from keras_vae.networks import ARCHITECTURES, check_architecture

NUM_SAMPLES = 64  # the 8x8 grid written after every epoch
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}
LR_SCHEDULES = ("constant", "cosine")


def learning_rate(config, steps_per_epoch):
    """Adam's learning rate: a number, or a schedule over all training steps."""
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.01
        )
    return config.learning_rate


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults: the original design.

    Attributes:
        epochs: passes over the training set.
        batch_size: images per gradient step.
        latent_dim: size of z.
        hidden_dim: units of the hidden Dense layers.
        architecture: `"mlp"` (the original), `"conv"` or `"resnet"`.
        filters: channels of the stride-2 convolutions (conv, resnet).
        blocks: residual blocks per resolution (resnet).
        conditional: train a conditional VAE on the labels.
        beta: weight of the KL term (1: the ELBO).
        kl_warmup_epochs: grow the KL weight linearly from 0 to `beta` over
            this many epochs (0: no warm-up).
        free_bits: floor of each latent dimension's batch-mean KL, in nats.
        iw_samples: samples of z per image; k > 1 trains on the IWAE bound.
        learning_rate: Adam's (initial) learning rate.
        lr_schedule: `"constant"`, or `"cosine"`: decay the learning rate
            along a cosine from `learning_rate` to 1% of it over the run.
        seed: seeds Keras, the backend and NumPy; same seed and backend give
            the same numbers.
        dataset: TFDS dataset name (`data.DATASETS`).
        binarize: `none`, `dynamic` or `static` (see `keras_vae.data`).
        final_iw_samples: if > 0, estimate the test log-likelihood with this
            many importance samples at the end (`evaluation`).
        data_dir: TFDS data directory (default: `TFDS_DATA_DIR`).
        manual_dir: folder with the original dataset files, for offline use.
        num_train: use only the first `num_train` training images.
        num_test: use only the first `num_test` test images.
        jit_compile: `"auto"`, `"true"` or `"false"`: compile the training
            step with XLA (TensorFlow, JAX) or `torch.compile` (PyTorch).
        steps_per_execution: training steps run per call into the compiled
            function (fewer Python round trips; must be 1 on torch).
    """

    epochs: int = 10
    batch_size: int = 128
    latent_dim: int = 20
    hidden_dim: int = 512
    architecture: str = "mlp"
    filters: tuple = (32, 64)
    blocks: int = 1
    conditional: bool = False
    beta: float = 1.0
    kl_warmup_epochs: float = 0.0
    free_bits: float = 0.0
    iw_samples: int = 1
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    dataset: str = "mnist"
    binarize: str = "none"
    final_iw_samples: int = 0
    data_dir: str | None = None
    manual_dir: str | None = None
    num_train: int | None = None
    num_test: int | None = None
    jit_compile: str = "auto"
    steps_per_execution: int = 1

    def __post_init__(self):
        self.filters = tuple(int(f) for f in self.filters)
        problems = []
        try:
            check_architecture(self.architecture, self.filters, self.blocks)
        except ValueError as error:
            problems.append(str(error))
        problems += losses.objective_problems(self.beta, self.free_bits, self.iw_samples)
        if not self.kl_warmup_epochs >= 0:
            problems.append(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        if self.conditional and self.dataset == "binarized_mnist":
            problems.append("binarized_mnist has no labels, so it cannot train a conditional VAE")
        for name in ("epochs", "batch_size", "latent_dim", "hidden_dim"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.steps_per_execution <= 0:
            problems.append(f"steps_per_execution must be > 0, got {self.steps_per_execution}")
        for name in ("num_train", "num_test"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name} must be > 0, got {value}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.jit_compile not in JIT_COMPILE:
            problems.append(f"jit_compile must be one of {', '.join(JIT_COMPILE)}, got {self.jit_compile!r}")
        if self.final_iw_samples < 0:
            problems.append(f"final_iw_samples must be >= 0, got {self.final_iw_samples}")
        if self.binarize not in data.BINARIZATIONS:
            problems.append(
                f"unknown binarization {self.binarize!r}; choose from {', '.join(data.BINARIZATIONS)}"
            )
        if self.dataset not in data.DATASETS:
            problems.append(
                f"unknown dataset {self.dataset!r}; choose from {', '.join(data.DATASETS)}"
            )
        if problems:
            raise UserError("; ".join(problems))


def default_output_dir(root="runs"):
    """`runs/<timestamp>-<backend>`, e.g. `runs/20261123-101500-jax`."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{keras.backend.backend()}"


def check_output_dir(output_dir):
    """Raises `UserError` if `output_dir` exists and is not a folder."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir {output_dir} exists and is not a folder")
    return output_dir


# Settings that may differ when a run is resumed: where the data is, and speed.
_RESUMABLE_CHANGES = ("data_dir", "manual_dir", "jit_compile", "steps_per_execution")


def saved_config(output_dir):
    """The `TrainConfig` recorded in a run folder's `config.json`.

    Raises:
        UserError: the folder holds no run.
    """
    path = Path(output_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{output_dir} holds no run to resume (no config.json)")
    return TrainConfig(**json.loads(path.read_text())["config"])


def check_can_continue(config, output_dir):
    """Refuses to write over a finished run or to resume a different one.

    Raises:
        UserError: `output_dir` holds a finished run, or a run whose
            configuration differs from `config`.
    """
    output_dir = check_output_dir(output_dir)
    if (output_dir / "config.json").is_file():
        saved = dataclasses.asdict(saved_config(output_dir))
        wanted = dataclasses.asdict(config)
        changed = [
            f"{key} {saved[key]!r} -> {wanted[key]!r}"
            for key in wanted
            if key not in _RESUMABLE_CHANGES and saved.get(key) != wanted[key]
        ]
        if changed:
            raise UserError(
                f"{output_dir} holds a run with other settings ({', '.join(changed)}); "
                f"resume it with --resume {output_dir}, or choose another --output-dir"
            )
    if (output_dir / "metrics.json").is_file() and not (output_dir / "backup").is_dir():
        raise UserError(
            f"{output_dir} already holds a finished run; choose another --output-dir"
        )
    return output_dir


def environment():
    """The backend, devices and package versions, for reproducing a run."""
    backend = keras.backend.backend()
    packages = ["keras", backend, "numpy", "tensorflow-datasets"]
    versions = {}
    for package in dict.fromkeys(packages):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "backend": backend,
        "devices": list_devices(),
        "tfds_data_dir": data.resolve_data_dir(None),
        "python": platform.python_version(),
        "packages": versions,
    }


def one_per_class(labels, num_classes=10):
    """Index of the first example of each class, e.g. one test digit each.

    Without labels (all -1), the first `num_classes` examples.
    """
    found = [int(np.flatnonzero(labels == c)[0]) for c in range(num_classes) if (labels == c).any()]
    return found or list(range(min(num_classes, len(labels))))


def build_model(config, steps_per_epoch):
    """The `VAE` that `config` describes, for `steps_per_epoch` training steps."""
    return VAE(
        latent_dim=config.latent_dim,
        hidden_dim=config.hidden_dim,
        dynamic_binarization=config.binarize == "dynamic",
        architecture=config.architecture,
        filters=config.filters,
        blocks=config.blocks,
        num_classes=data.NUM_CLASSES if config.conditional else 0,
        beta=config.beta,
        kl_warmup_steps=round(config.kl_warmup_epochs * steps_per_epoch),
        free_bits=config.free_bits,
        iw_samples=config.iw_samples,
    )


def model_inputs(model, images, labels):
    """What `fit`/`evaluate` take as x: the images, with the labels if conditional."""
    return (images, labels) if model.conditional else images


def train_and_evaluate(config, output_dir, verbose="auto"):
    """Trains a VAE as `config` says and evaluates it on the test split.

    Args:
        config: a `TrainConfig`.
        output_dir: the run's folder (created; see the module docstring).
        verbose: Keras's `fit` verbosity (`"auto"`, 0, 1 or 2).

    Returns:
        The dict written to `metrics.json`.

    Raises:
        UserError: bad output folder, the data cannot be had, or training
            diverged (the files of the last good epoch are kept).
    """
    output_dir = check_can_continue(config, output_dir)
    if keras.backend.backend() == "torch" and config.steps_per_execution != 1:
        raise UserError("steps_per_execution must be 1 with the torch backend")
    keras.utils.set_random_seed(config.seed)
    dataset = data.load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        num_train=config.num_train,
        num_test=config.num_test,
        binarization=config.binarize,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    files.remove_stale_temporaries(output_dir)  # from a run killed mid-write
    files.write_json(
        output_dir / "config.json",
        {
            "config": dataclasses.asdict(config),
            **environment(),
        },
    )

    steps_per_epoch = math.ceil(len(dataset.x_train) / config.batch_size)
    model = build_model(config, steps_per_epoch)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(config, steps_per_epoch)),
        jit_compile=JIT_COMPILE[config.jit_compile],
        steps_per_execution=config.steps_per_execution,
    )
    chosen = one_per_class(dataset.y_test)
    originals = dataset.x_test[chosen]
    labels = dataset.y_test[chosen] if model.conditional else None
    if model.conditional:  # one row per digit, the same z in each column
        grid_rows, grid_cols = model.num_classes, NUM_SAMPLES // 8
        sample_z, sample_labels = model.class_grid_inputs(grid_cols, seed=config.seed)
    else:
        grid_rows = grid_cols = sample_labels = None
        sample_z = model.sample_prior(NUM_SAMPLES, seed=config.seed)
    x_train = model_inputs(model, dataset.x_train, dataset.y_train)
    x_test = model_inputs(model, dataset.x_test, dataset.y_test)

    # Resuming: keep what the committed epochs wrote, redo the rest.
    checkpoint = callbacks.RunCheckpoint(output_dir / "backup")
    done = checkpoint.completed_epochs()
    rows = [
        row
        for row in callbacks.read_history(output_dir / "history.csv")
        if row["epoch"] <= done
    ]
    if done:
        print(f"Resuming {output_dir} after epoch {done} of {config.epochs}.")
    history = callbacks.HistoryCSV(output_dir / "history.csv", rows)
    divergence = callbacks.StopOnNaN()
    best_so_far = min((r["val_loss"] for r in rows if "val_loss" in r), default=math.inf)
    model.fit(
        x_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        validation_data=(x_test,),
        shuffle=True,
        verbose=verbose,
        callbacks=[
            divergence,
            callbacks.EpochTimer(),
            history,
            callbacks.BestModelCheckpoint(output_dir / "best.keras", best=best_so_far),
            callbacks.SampleGrid(
                sample_z, output_dir / "samples", grid_rows, grid_cols, sample_labels
            ),
            callbacks.ReconstructionGrid(originals, output_dir / "reconstructions", labels),
            checkpoint,  # last: commits the epoch once its files are written
        ],
    )
    if divergence.diverged_epoch is not None:
        kept = (
            f"the files of epoch {history.rows[-1]['epoch']}, the last good one, "
            f"are kept in {output_dir}"
            if history.rows
            else "no epoch completed, so no model was saved"
        )
        raise UserError(
            f"training diverged in epoch {divergence.diverged_epoch} (the loss "
            f"became NaN or infinite) and was stopped; {kept}. "
            f"Try a lower --learning-rate."
        )
    files.save_model(model, output_dir / "model.keras")

    test = model.evaluate(
        x_test, batch_size=config.batch_size, verbose=0, return_dict=True
    )
    seconds = [row["seconds"] for row in history.rows if "seconds" in row]
    metrics = {
        **{f"test_{name}": float(value) for name, value in test.items()},
        "backend": keras.backend.backend(),
        "epochs": config.epochs,
        "epoch_seconds": seconds,
        "seconds_per_epoch": statistics.median(seconds) if seconds else None,
        "num_train": len(dataset.x_train),
        "num_test": len(dataset.x_test),
    }
    if config.final_iw_samples:
        likelihood = evaluation.evaluate_likelihood(
            model,
            dataset.x_test,
            labels=dataset.y_test if model.conditional else None,
            iw_samples=config.final_iw_samples, seed=config.seed
        )
        metrics.update({f"test_{k}": v for k, v in likelihood.items()})
    files.write_json(output_dir / "metrics.json", metrics)
    visualize.make_figures(
        model, dataset.x_test, dataset.y_test, output_dir / "figures", run_dir=output_dir
    )
    checkpoint.delete()
    return metrics
