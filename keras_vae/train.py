"""Training and evaluating a VAE run: the work behind `scripts/train.py`.

A run is described by a `TrainConfig` and writes everything into one folder
(`run_folder.RunFolder` lists its files). Running again with the same output
folder resumes an interrupted run from its last completed epoch (see
`callbacks.RunCheckpoint`).
"""

import contextlib
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import math
import platform
import shutil
import statistics
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_vae import (
    callbacks, data, distribute, evaluation, files, losses, pretrained, visualize,
)
from keras_vae.backend import import_tensorflow_quietly, list_devices
from keras_vae.errors import UserError
from keras_vae.model import (
    LATENT_LAYERS, NETWORK_SETTINGS, PRIORS, VAE, fresh_copy, latent_problems,
)
from keras_vae.networks import ARCHITECTURES, check_architecture
from keras_vae.run_folder import RunFolder

NUM_SAMPLES = 64  # the 8x8 grid written after every epoch
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}
# Keras dtype policies: the networks compute in 16 bits under the mixed ones,
# the variables, the objective and the likelihood stay float32.
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
LR_SCHEDULES = ("constant", "cosine")
# Held-out training images for binary pixels: the 10 000 of the published
# likelihood protocols (binarized_mnist's own validation split is as large).
DEFAULT_VALIDATION_SPLIT = 10_000


def learning_rate(config, steps_per_epoch):
    """Adam's learning rate: a number, or a schedule over all training steps."""
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.01
        )
    return config.learning_rate


def setting(default, help, choices=None, resumable=False, metavar=None, model=False):
    """A `TrainConfig` field with what its command-line flag needs.

    `train.py` makes one flag per field (`cli.add_config_flags`): the flag
    `--name-with-dashes`, this default, help text and choices.

    Args:
        default: the field's default.
        help: one line for `--help`.
        choices: the values allowed, if a fixed set.
        resumable: True if a resumed run may change it (where the data is,
            speed and logging settings): other changes are refused.
        metavar: the flag's placeholder in `--help`.
        model: True if `VAE` takes it by the same name (`build_model`).
    """
    metadata = dict(
        help=help, choices=choices, resumable=resumable, metavar=metavar, model=model
    )
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(setting_name):
    """The `train.py` flag of a `TrainConfig` field: `latent_dim` -> `--latent-dim`."""
    return "--" + setting_name.replace("_", "-")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults: the original design.

    Each field is a flag of `train.py` (`--latent-dim` for `latent_dim`) with
    the help text written beside it, and `config.json` records them all.
    """

    epochs: int = setting(10, "passes over the training set")
    batch_size: int = setting(128, "images per gradient step")
    latent_dim: int = setting(20, "size of the latent vector z", model=True)
    hidden_dim: int = setting(512, "units of the hidden Dense layers", model=True)
    architecture: str = setting(
        "mlp", "mlp (the original), conv (strided convolutions) or resnet "
        "(with residual blocks)", choices=ARCHITECTURES, model=True)
    filters: tuple = setting(
        (32, 64), "channels of the stride-2 convolutions, e.g. 32,64 (conv and resnet)",
        metavar="N,N", model=True)
    blocks: int = setting(1, "residual blocks per resolution (resnet)", model=True)
    conditional: bool = setting(
        False, "train a conditional VAE: the encoder and decoder also see the digit's label")
    beta: float = setting(1.0, "weight of the KL term (beta-VAE; 1 is the ELBO)", model=True)
    kl_warmup_epochs: float = setting(
        0.0, "grow the KL weight linearly from 0 to beta over this many epochs (0: off)")
    free_bits: float = setting(
        0.0, "floor of each latent dimension's KL, in nats (Kingma et al. 2016; 0: off)", model=True)
    iw_samples: int = setting(
        1, "samples of z per image; K > 1 trains on the IWAE bound (Burda et al.), 1 is the VAE", model=True)
    latent_layers: int = setting(
        1, "stochastic layers: 1, or 2 (z1, z2: the HVAE of Tomczak & Welling 2018, "
        "p(z2) p(z1|z2) p(x|z1,z2) with q(z2|x) q(z1|x,z2))", choices=LATENT_LAYERS, model=True)
    prior: str = setting(
        "normal", "normal (N(0, I)) or vamp (the VampPrior: a mixture of the posteriors "
        "of learned pseudo-inputs, Tomczak & Welling 2018)", choices=PRIORS, model=True)
    pseudo_inputs: int = setting(500, "the VampPrior's pseudo-inputs K", metavar="K", model=True)
    learning_rate: float = setting(1e-3, "Adam learning rate")
    lr_schedule: str = setting(
        "constant", "constant, or cosine decay to 1%% of the learning rate over the run",
        choices=LR_SCHEDULES)
    seed: int = setting(0, "random seed (same seed and backend, same numbers)")
    init_from: str | None = setting(
        None, "fine-tune: start from the trained weights of a saved model (a .keras file "
        "or a pretrained name) instead of random ones; its networks must match these "
        "flags, the objective and optimizer settings may differ (Adam starts afresh)",
        metavar="MODEL")
    dataset: str = setting("mnist", "the TFDS dataset", choices=data.DATASETS)
    binarize: str = setting(
        "none", "none (grey levels), dynamic (a fresh Bernoulli sample every step; the "
        "likelihood protocol) or static (one fixed sample)", choices=data.BINARIZATIONS)
    final_iw_samples: int = setting(
        0, "at the end, estimate the test log-likelihood with K importance samples "
        "(0: skip; 5000 is the literature's standard)")
    data_dir: str | None = setting(
        None, "prepared TFDS data directory (default: $TFDS_DATA_DIR, else "
        "~/tensorflow_datasets)", resumable=True)
    manual_dir: str | None = setting(
        None, "folder with the original MNIST .gz files, to prepare the data offline",
        resumable=True)
    validation_split: int | None = setting(
        None, "training images held out (the last N) for the validation loss and best.keras, "
        "so that the test split is read once, at the end; default: 10000 for binary pixels "
        "(the likelihood protocol), 0 for grey levels (the original design: all 60000 train, "
        "the test split is the validation curve)", metavar="N")
    num_train: int | None = setting(None, "use only the first N training images (quick runs)")
    num_test: int | None = setting(
        None, "use only the first N test (and validation) images (quick runs)")
    jit_compile: str = setting(
        "auto", "compile the training step (XLA on TensorFlow/JAX, torch.compile on "
        "PyTorch); auto: Keras's choice", choices=tuple(JIT_COMPILE), resumable=True)
    steps_per_execution: int = setting(
        1, "training steps per call into the compiled step (tensorflow and jax; torch needs 1)",
        resumable=True)
    dtype_policy: str = setting(
        "float32", "Keras dtype policy: float32, or mixed_bfloat16 / mixed_float16 (16-bit "
        "networks for accelerators; variables, loss and likelihood in float32; "
        "mixed_float16 adds loss scaling)", choices=DTYPE_POLICIES)
    devices: str = setting(
        "1", "data parallel over N devices: the local GPUs (TensorFlow, JAX), N virtual "
        "CPU devices on a machine without any (for testing), or the N processes torchrun "
        "started (torch); all: every local accelerator. --batch-size is the global batch",
        resumable=True, metavar="N|all")
    tensorboard: bool = setting(
        False, "also write TensorBoard logs (every loss per epoch, and the epoch's sample "
        "grid) to logs/ in the run folder", resumable=True)

    def model_settings(self):
        """The settings that `VAE` takes by the same name, as a dict."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["model"]
        }

    @classmethod
    def resumable_settings(cls):
        """Names of the settings a resumed run may change."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["resumable"])

    @property
    def binary_pixels(self):
        """True when the model sees binary pixels: its loss is a likelihood."""
        return self.binarize != "none" or self.dataset == "binarized_mnist"

    def __post_init__(self):
        self.filters = tuple(int(f) for f in self.filters)
        if self.validation_split is None:
            self.validation_split = DEFAULT_VALIDATION_SPLIT if self.binary_pixels else 0
        problems = []
        try:
            self.devices = str(distribute.parse_devices(self.devices))
        except UserError as error:
            problems.append(str(error))
        try:
            check_architecture(self.architecture, self.filters, self.blocks)
        except ValueError as error:
            problems.append(str(error))
        problems += losses.objective_problems(self.beta, self.free_bits, self.iw_samples)
        problems += latent_problems(
            self.latent_layers, self.prior, self.pseudo_inputs,
            data.NUM_CLASSES if self.conditional else 0, self.free_bits,
        )
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
        else:
            problems.append(data.check_validation_split(self.dataset, self.validation_split))
        problems = [problem for problem in problems if problem]
        if problems:
            raise UserError("; ".join(problems))


@contextlib.contextmanager
def dtype_policy(name):
    """Keras's global dtype policy set to `name` while the block builds layers."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def default_output_dir(root="runs"):
    """`runs/<timestamp>-<backend>`, e.g. `runs/20261123-101500-jax`."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{keras.backend.backend()}"


def saved_config(run):
    """The `TrainConfig` recorded in a run folder (a `RunFolder` or a path).

    Raises:
        UserError: the folder holds no run.
    """
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    settings = run.settings()
    if settings is None:
        raise UserError(f"{run.path} holds no run to resume (no config.json)")
    return TrainConfig(**settings)


def check_can_continue(config, run):
    """Refuses to write over a finished run or to resume a different one.

    Args:
        config: the `TrainConfig` of the run to start or resume.
        run: its `RunFolder`.

    Raises:
        UserError: the folder holds a finished run (whatever its settings),
            or an unfinished run whose settings differ from `config`.
    """
    run.check_is_folder()
    if run.is_finished():
        raise UserError(
            f"{run.path} already holds a finished run; choose another --output-dir"
        )
    if run.holds_run():
        saved = dataclasses.asdict(saved_config(run))
        wanted = dataclasses.asdict(config)
        changed = [
            f"{key} {saved[key]!r} -> {wanted[key]!r}"
            for key in wanted
            if key not in TrainConfig.resumable_settings() and saved.get(key) != wanted[key]
        ]
        if changed:
            raise UserError(
                f"{run.path} holds an unfinished run with other settings "
                f"({', '.join(changed)}); continue it with its own settings by "
                f"--resume {run.path}, or choose another --output-dir"
            )
    return run


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


def build_model_settings(config, steps_per_epoch=0):
    """The `VAE` settings that `config` describes, for `steps_per_epoch` training steps."""
    return dict(
        **config.model_settings(),
        dynamic_binarization=config.binarize == "dynamic",
        num_classes=data.NUM_CLASSES if config.conditional else 0,
        kl_warmup_steps=round(config.kl_warmup_epochs * steps_per_epoch),
    )


def build_model(config, steps_per_epoch):
    """The `VAE` that `config` describes, for `steps_per_epoch` training steps."""
    return VAE(**build_model_settings(config, steps_per_epoch))


def load_initial_model(source):
    """The saved `VAE` that `--init-from` names: a `.keras` file or a pretrained name.

    Raises:
        UserError: no such pretrained model, or not a keras-vae model file.
    """
    try:
        if source in pretrained.names():
            return pretrained.load_pretrained(source)
        return files.load_model(source)
    except UserError as error:
        raise UserError(f"--init-from: {error}") from error


def copy_trained_weights(model, source, name):
    """Starts `model` from the trained weights of `source` (fine-tuning).

    The trainable weights are copied, in order: the networks and the
    VampPrior's pseudo-inputs. What is not learned stays `model`'s own: the
    KL warm-up's step count and the seed states. The objective (`--iw-samples`,
    `--beta`, ...) may differ between the two models; the networks may not.

    Args:
        model: a freshly built `VAE`.
        source: the saved `VAE` (`load_initial_model`).
        name: how the user named `source`, for the message.

    Raises:
        UserError: the two models' networks differ.
    """
    ours, theirs = model.trainable_weights, source.trainable_weights
    if [tuple(w.shape) for w in ours] != [tuple(w.shape) for w in theirs]:
        wanted, saved = model.get_config(), source.get_config()
        differ = [
            f"{key} {saved.get(key)!r} there, {wanted[key]!r} here"
            for key in (*NETWORK_SETTINGS, "latent_layers", "prior", "pseudo_inputs")
            if saved.get(key) != wanted.get(key)
        ]
        raise UserError(
            f"--init-from {name}: its networks differ from the ones these flags describe "
            f"({'; '.join(differ) or 'other weight shapes'}); give its network settings"
        )
    for variable, value in zip(ours, theirs):
        variable.assign(keras.ops.convert_to_numpy(value))


def model_inputs(model, images, labels):
    """What `fit`/`evaluate` take as x: the images, with the labels if conditional."""
    return (images, labels) if model.conditional else images


def epoch_callbacks(model, config, run, dataset, rows, topology=None):
    """The callbacks that write the run folder during `fit`, in their order.

    Args:
        model: the `VAE` being trained.
        config: its `TrainConfig`.
        run: the `RunFolder`.
        dataset: the `data.Dataset` (one validation image per class is
            reconstructed, or one test image without a validation split).
        rows: `history.csv`'s rows of the epochs already done (resuming).
        topology: the `distribute.Topology` it trains on (default: one device).

    Returns:
        `(callbacks, history, divergence)`: the list for `fit`, and the two
        that `train_and_evaluate` reads afterwards.
    """
    # Pictures of the held-out images when there are some, else of the test split.
    images, image_labels = (
        (dataset.x_val, dataset.y_val) if dataset.has_validation else (dataset.x_test, dataset.y_test)
    )
    chosen = one_per_class(image_labels)
    labels = image_labels[chosen] if model.conditional else None
    if model.conditional:  # one row per digit, the same z in each column
        grid_rows, grid_cols = model.num_classes, NUM_SAMPLES // 8
        sample_z, sample_labels = model.class_grid_inputs(grid_cols, seed=config.seed)
    else:
        grid_rows = grid_cols = sample_labels = None
        # A learned prior is sampled anew each epoch (with the same seed).
        sample_z = NUM_SAMPLES if model.learned_prior else model.sample_prior(NUM_SAMPLES, seed=config.seed)
    view = (topology or distribute.Topology()).local_view
    history = callbacks.HistoryCSV(run.history, rows)
    divergence = callbacks.StopOnNaN()
    best_so_far = min((r["val_loss"] for r in rows if "val_loss" in r), default=math.inf)
    written = [
        divergence,
        callbacks.EpochTimer(),
        history,
        callbacks.BestModelCheckpoint(run.best_model, best=best_so_far),
        callbacks.SampleGrid(
            sample_z, run.samples, grid_rows, grid_cols, sample_labels, seed=config.seed,
            view=view,
        ),
        callbacks.ReconstructionGrid(images[chosen], run.reconstructions, labels, view=view),
    ]
    if config.tensorboard:
        written += callbacks.tensorboard(run.logs, run.samples)
    # Last: commits the epoch once its files are written.
    written.append(callbacks.RunCheckpoint(run.backup))
    return written, history, divergence


def train_and_evaluate(config, output_dir, verbose="auto", topology=None):
    """Trains a VAE as `config` says and evaluates it on the test split.

    Args:
        config: a `TrainConfig`.
        output_dir: the run's folder (created; see `run_folder`).
        verbose: Keras's `fit` verbosity (`"auto"`, 0, 1 or 2).
        topology: the `distribute.Topology` to train on (default: set up
            from `config.devices`).

    Returns:
        The dict written to `metrics.json`; None in the processes of a
        parallel torch run other than the chief, which writes the folder.

    Raises:
        UserError: bad output folder, another process training into it, the
            data cannot be had, a batch that does not split over the
            devices, or training diverged (the files of the last good epoch
            are kept).
    """
    topology = topology or distribute.setup(config.devices)
    run = RunFolder(output_dir)
    topology.agree(lambda: check_can_continue(config, run))
    topology.check_batch_size(config.batch_size)
    if keras.backend.backend() == "torch" and config.steps_per_execution != 1:
        raise UserError("steps_per_execution must be 1 with the torch backend")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard")
    import_tensorflow_quietly()  # Keras seeds TensorFlow too, and TFDS reads the data
    # Before the run folder is written: a bad --init-from leaves nothing behind.
    initial = load_initial_model(config.init_from) if config.init_from else None
    keras.utils.set_random_seed(config.seed)  # the same weights in every process
    dataset = data.load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        num_train=config.num_train,
        num_test=config.num_test,
        binarization=config.binarize,
        validation_split=config.validation_split,
        num_validation=config.num_test,
    )
    with contextlib.ExitStack() as held:

        def claim():  # one training process per run folder: the chief's lock
            held.enter_context(run.lock())
            check_can_continue(config, run)  # again: another process may have run meanwhile

        topology.agree(claim)
        return _train_in(run, config, dataset, verbose, topology, initial)


def _train_in(run, config, dataset, verbose, topology, initial=None):
    """`train_and_evaluate`'s work, in the locked run folder."""
    if topology.chief:
        files.remove_stale_temporaries(run.path)  # from a run killed mid-write
        run.write_config(
            dataclasses.asdict(config), {**environment(), "topology": topology.as_dict()}
        )

    # Every batch, the last partial one too, splits evenly over the devices.
    x_train_images, y_train = topology.shard(dataset.x_train), topology.shard(dataset.y_train)
    batch_size = topology.check_batch_size(config.batch_size)  # this process's share
    steps_per_epoch = math.ceil(len(x_train_images) / batch_size)
    with dtype_policy(config.dtype_policy), topology.scope():
        model = build_model(config, steps_per_epoch)
        if initial is not None:  # a resumed run's checkpoint replaces these
            copy_trained_weights(model, initial, config.init_from)
        model.compile(  # wraps Adam in a LossScaleOptimizer under mixed_float16
            optimizer=keras.optimizers.Adam(learning_rate(config, steps_per_epoch)),
            jit_compile=JIT_COMPILE[config.jit_compile],
            steps_per_execution=config.steps_per_execution,
        )
    x_train = model_inputs(model, x_train_images, y_train)
    x_test = model_inputs(model, dataset.x_test, dataset.y_test)
    # The validation loss (and so best.keras) comes from the held-out images;
    # without them, from the test split, as in the original design.
    x_val = model_inputs(
        model,
        *(
            (topology.shard(dataset.x_val), topology.shard(dataset.y_val))
            if dataset.has_validation
            else (topology.shard(dataset.x_test), topology.shard(dataset.y_test))
        ),
    )

    # Resuming: keep what the committed epochs wrote, redo the rest.
    done = callbacks.RunCheckpoint(run.backup).completed_epochs()
    rows = [row for row in run.read_history() if row["epoch"] <= done]
    if done and topology.chief:
        print(f"Resuming {run.path} after epoch {done} of {config.epochs}.")
    scratch = None
    if topology.chief:
        written, history, divergence = epoch_callbacks(model, config, run, dataset, rows, topology)
    elif topology.collectives == "jax":
        # Keras's saving is a collective of all JAX processes: the others save
        # when the chief does, into a scratch folder that is thrown away.
        scratch = RunFolder(tempfile.mkdtemp(prefix="keras-vae-process-"))
        best_so_far = min((r["val_loss"] for r in rows if "val_loss" in r), default=math.inf)
        divergence = callbacks.StopOnNaN()
        written = [
            divergence,
            callbacks.BestModelCheckpoint(scratch.best_model, best=best_so_far),
            callbacks.RunCheckpoint(run.backup, save_dir=scratch.backup),
        ]
    else:  # the other processes of a torch run write nothing
        divergence = callbacks.StopOnNaN()
        written = [divergence, callbacks.RunCheckpoint(run.backup, write=False)]
    written += topology.fit_callbacks()  # after the checkpoint is restored
    with topology.scope():
        model.fit(
            x_train,
            epochs=config.epochs,
            batch_size=batch_size,
            validation_data=(x_val,),
            shuffle=True,
            verbose=verbose if topology.chief else 0,
            callbacks=written,
        )
    if scratch is not None:  # the chief's last collective save, below
        if divergence.diverged_epoch is None:
            files.save_model(model, scratch.model)
        shutil.rmtree(scratch.path, ignore_errors=True)
    if not topology.chief:
        topology.finish()
        return None
    if divergence.diverged_epoch is not None:
        topology.finish()
        kept = (
            f"the files of epoch {history.rows[-1]['epoch']}, the last good one, "
            f"are kept in {run.path}"
            if history.rows
            else "no epoch completed, so no model was saved"
        )
        raise UserError(
            f"training diverged in epoch {divergence.diverged_epoch} (the loss "
            f"became NaN or infinite) and was stopped; {kept}. "
            f"Try a lower --learning-rate."
        )
    files.save_model(model, run.model)
    topology.finish()  # the other processes leave; the chief goes on alone
    if config.dtype_policy != "float32" or topology.parallel:
        # Test numbers from the float32 model on one device, as saved.
        model = fresh_copy(model)
        model.compile(jit_compile=JIT_COMPILE[config.jit_compile])

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
        "num_train": len(topology.even(dataset.x_train)),
        "num_validation": len(dataset.x_val),
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
    files.write_json(run.metrics, metrics)
    visualize.make_figures(model, dataset.x_test, dataset.y_test, run.figures, run_dir=run.path)
    checkpoint = next(c for c in written if isinstance(c, callbacks.RunCheckpoint))
    checkpoint.delete()  # the run is finished
    return metrics
