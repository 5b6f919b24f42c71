"""`TrainConfig`: everything that defines a training run, and the resume rules.

Each field is a flag of `train.py` (`--latent-dim` for `latent_dim`), with its
help text written beside it; `config.json` records them all, and a run is
resumed only with the settings it started with (but the resumable ones).
"""

import dataclasses

from keras_vae import data
from keras_vae.errors import DamagedFileError, UserError
from keras_vae.model.config import (
    ARCHITECTURES,
    IMAGE_SHAPE,
    LATENT_LAYERS,
    LIKELIHOODS,
    PRIORS,
    ModelConfig,
    check_types,
    is_likelihood,
)
from keras_vae.parallel import parse_devices
from keras_vae.run.folder import RunFolder

JIT_COMPILE = {"auto": "auto", "true": True, "false": False}
# Keras dtype policies: the networks compute in 16 bits under the mixed ones,
# the variables, the objective and the likelihood stay float32.
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
LR_SCHEDULES = ("constant", "cosine")
# Held-out training images for binary pixels: the 10 000 of the published
# likelihood protocols (binarized_mnist's own validation split is as large).
DEFAULT_VALIDATION_SPLIT = 10_000
#: A size every architecture takes (divisible by 2 ** MAX_STAGES): where only
#: the data knows the image size, the flags are checked with it, and the
#: architecture against the real size once the data is read.
ANY_SIZE = (256, 256)
#: The classes of MNIST and Fashion-MNIST.
MNIST_CLASSES = 10
#: The ceilings of the run's own numeric settings (the model's are
#: `model.config.LIMITS`); they bound what a flag or a run folder can ask for.
LIMITS = {
    "epochs": 100_000,
    "batch_size": 1 << 16,
    "kl_warmup_epochs": 100_000,
    "final_iw_samples": 100_000,
    "steps_per_execution": 100_000,
}


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
    likelihood: str = setting(
        "bernoulli", "the pixel likelihood p(x|z): bernoulli (binary pixels; on grey levels the "
        "original design's cross-entropy), logistic (a discretized logistic per 8-bit pixel "
        "and channel) or logistic-mixture (K of them, channels jointly)", choices=LIKELIHOODS,
        model=True)
    mixture_components: int = setting(
        5, "components K of the logistic-mixture likelihood", metavar="K", model=True)
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
    dataset: str = setting(
        "mnist", "the images: a TFDS dataset by name (mnist, fashion_mnist, binarized_mnist, "
        "cifar10, svhn_cropped, emnist/letters, ...), folder:PATH (a folder of images, "
        "subfolders as classes) or npz:PATH (arrays x_train, x_test, y_train, y_test)",
        metavar="NAME")
    image_size: str | None = setting(
        None, "resize every image to HxW (antialiased); default: the data's own size, "
        "which must then be one", metavar="HxW")
    channels: int | None = setting(
        None, "convert the images to 1 (grey) or 3 (colour) channels; default: the data's own",
        choices=data.CHANNELS)
    test_split: float = setting(
        data.DEFAULT_TEST_SPLIT, "share of the images held out as the test split where the data "
        "has none (a folder), chosen with a fixed seed", metavar="SHARE")
    stream: str = setting(
        "auto", "read the training images from disk a block at a time as training goes "
        "(the validation and test images stay in memory): auto when they do not fit in half "
        "the memory available, on, or off", choices=data.STREAM_CHOICES, resumable=True)
    stream_block: int | None = setting(
        None, "images read at once when streaming (rounded up to whole batches; default: "
        "64 MiB of them); the shuffle mixes the images of one block", metavar="N",
        resumable=True)
    binarize: str = setting(
        "none", "none (grey levels), dynamic (a fresh Bernoulli sample every step; the "
        "likelihood protocol) or static (one fixed sample)", choices=data.BINARIZATIONS)
    final_iw_samples: int = setting(
        0, "at the end, estimate the test log-likelihood with K importance samples "
        "(0: skip; 5000 is the literature's standard)", resumable=True)
    data_dir: str | None = setting(
        None, "prepared TFDS data directory (default: $TFDS_DATA_DIR, else "
        "~/tensorflow_datasets)", resumable=True)
    manual_dir: str | None = setting(
        None, "folder with the original MNIST .gz files, to prepare the data offline",
        resumable=True)
    validation_split: int | None = setting(
        None, "training images held out (the last N) for the validation loss and best.keras, "
        "so that the test split is read once, at the end; default: 10000 for MNIST's datasets when "
        "the loss is a likelihood (binary pixels, or an 8-bit likelihood), else 0 (the original design: "
        "all 60000 train, the test split is the validation curve)", metavar="N")
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
        "CPU devices on a machine without any (for testing), or N processes on torch "
        "(started by train.py itself, or by torchrun); all: every local accelerator. --batch-size is the global batch",
        resumable=True, metavar="N|all")
    tensorboard: bool = setting(
        False, "also write TensorBoard logs (every loss per epoch, and the epoch's sample "
        "grid) to logs/ in the run folder", resumable=True)

    def range_problems(self):
        """Settings above their documented ceilings (`LIMITS`)."""
        return [
            f"{name} must be at most {high:g}, got {getattr(self, name)}"
            for name, high in LIMITS.items()
            if getattr(self, name) is not None and getattr(self, name) > high
        ]

    def model_settings(self):
        """The settings that `VAE` takes by the same name, as a dict."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["model"]
        }

    def model_config(self, steps_per_epoch=0, image_shape=None, num_classes=None):
        """The `ModelConfig` of the `VAE` this run trains, for `steps_per_epoch`
        steps, on images of `image_shape` in `num_classes` classes (default:
        what the flags say, see `image_shape`)."""
        return ModelConfig(**build_model_settings(self, steps_per_epoch, image_shape, num_classes))

    @property
    def image_shape(self):
        """`(height, width, channels)` of the images as the flags give them, or
        None where only the data can tell (a dataset other than MNIST's,
        without `--image-size` and `--channels`)."""
        own = IMAGE_SHAPE if self.dataset in data.TRAIN_SIZES else None
        if own is None and not (self.image_size and self.channels):
            return None
        own = own or (None, None, None)
        size = data.parse_image_size(self.image_size) if self.image_size else own[:2]
        return (*size, self.channels or own[2])

    @classmethod
    def resumable_settings(cls):
        """Names of the settings a resumed run may change."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["resumable"])

    @property
    def binary_pixels(self):
        """True when the model sees binary pixels."""
        return data.binary_pixels(self.dataset, self.binarize)

    @property
    def is_likelihood(self):
        """True when the model's loss is a likelihood of its pixels
        (`model.config.is_likelihood`)."""
        return is_likelihood(self.likelihood, self.binary_pixels)

    def __post_init__(self):
        try:
            check_types(self)
        except ValueError as error:
            raise UserError(str(error)) from None
        if self.validation_split is None:
            protocol = self.is_likelihood and self.dataset in data.TRAIN_SIZES
            self.validation_split = DEFAULT_VALIDATION_SPLIT if protocol else 0
        problems = []
        try:
            self.devices = str(parse_devices(self.devices))
        except UserError as error:
            problems.append(str(error))
        problems += self.data_problems()
        # Where only the data knows the image size, it is checked once read.
        shape = self.image_shape or (*ANY_SIZE, self.channels or 1)
        problems += self.model_config(image_shape=shape).problems() + self.range_problems()
        if not self.kl_warmup_epochs >= 0:
            problems.append(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.steps_per_execution <= 0:
            problems.append(f"steps_per_execution must be > 0, got {self.steps_per_execution}")
        for name in ("num_train", "num_test", "stream_block"):
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
        problems = [problem for problem in problems if problem]
        if problems:
            raise UserError("; ".join(problems))

    def data_problems(self):
        """The problems of the data settings, seen without reading the data
        (an `--image-size` that does not parse is dropped after its message)."""
        problems = data.setting_problems(self.dataset, self.binarize, self.test_split)
        if self.image_size is not None:
            try:
                data.parse_image_size(self.image_size)
            except ValueError as error:
                problems.append(str(error))
                self.image_size = None
        if self.channels is not None and self.channels not in data.CHANNELS:
            problems.append(f"channels must be 1 or 3, got {self.channels}")
        if self.dataset in data.DATASETS:
            problems.append(data.check_validation_split(self.dataset, self.validation_split))
        if self.likelihood != "bernoulli" and self.binary_pixels and self.binarize != "dynamic":
            problems.append(
                f"the {self.likelihood} likelihood is of 8-bit pixels: it cannot model "
                f"binarized images ({self.dataset}, binarize {self.binarize}); use "
                "--likelihood bernoulli"
            )
        if self.conditional and self.dataset == "binarized_mnist":
            problems.append("binarized_mnist has no labels, so it cannot train a conditional VAE")
        return problems


def build_model_settings(config, steps_per_epoch=0, image_shape=None, num_classes=None):
    """The `VAE` settings that `config` describes, for `steps_per_epoch` training
    steps, on images of `image_shape` in `num_classes` classes (the data's;
    default what the flags say, else MNIST's)."""
    return dict(
        **config.model_settings(),
        image_shape=tuple(image_shape or config.image_shape or IMAGE_SHAPE),
        dynamic_binarization=config.binarize == "dynamic",
        num_classes=(num_classes or MNIST_CLASSES) if config.conditional else 0,
        kl_warmup_steps=round(config.kl_warmup_epochs * steps_per_epoch),
    )


def saved_config(run):
    """The `TrainConfig` recorded in a run folder (a `RunFolder` or a path).

    Raises:
        UserError: the folder holds no run.
        DamagedFileError: its `config.json` is damaged, or names settings
            this version does not know.
    """
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    settings = run.settings()
    if settings is None:
        raise UserError(f"{run.path} holds no run to resume (no config.json)")
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise DamagedFileError(
            f"{run.config}: settings this keras-vae does not know ({', '.join(unknown[:5])}); "
            "it was written by another version, or edited"
        )
    try:
        return TrainConfig(**settings)
    except UserError as error:
        raise DamagedFileError(f"{run.config}: {error}") from None


def check_can_continue(config, run, restart=False):
    """Refuses to write over a finished run or to resume a different one.

    Args:
        config: the `TrainConfig` of the run to start or resume.
        run: its `RunFolder`.
        restart: the run in the folder is to be started over (`--restart`):
            its settings may differ, and need not be readable.

    Raises:
        UserError: the folder holds a finished run (whatever its settings),
            or an unfinished run that completed an epoch and whose settings
            differ from `config` (a run that completed none has nothing to
            lose, and is replaced).
    """
    run.check_is_folder()
    if run.is_finished():
        raise UserError(
            f"{run.path} already holds a finished run; choose another --output-dir"
        )
    if run.holds_run() and run.has_progress() and not restart:
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
