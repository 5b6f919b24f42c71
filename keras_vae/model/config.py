"""`ModelConfig`: the one list of a VAE's settings, their checks and their size.

`VAE` takes these settings by name, `VAE.get_config` writes them, the safe
loader counts the weights they ask for before building anything, and
`TrainConfig` checks its flags through them: one place for each. The weight
counts are the networks' (`keras_vae.networks`) by arithmetic; the tests
check them against the built networks. Nothing here imports Keras.
"""

import dataclasses
import math

PRIORS = ("normal", "vamp")
LATENT_LAYERS = (1, 2)
IMAGE_SHAPE = (28, 28, 1)
ARCHITECTURES = ("mlp", "conv", "resnet")


def check_architecture(architecture, filters, blocks, image_shape=IMAGE_SHAPE):
    """Raises `ValueError` for settings the builders cannot build.

    Args:
        architecture: one of `ARCHITECTURES`.
        filters: channels of each stride-2 stage (conv and resnet).
        blocks: residual blocks per stage (resnet).
        image_shape: `(height, width, channels)`.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}"
        )
    if architecture == "mlp":
        return
    if not filters or any(f <= 0 for f in filters):
        raise ValueError(f"filters must be positive channel counts, got {list(filters)}")
    scale = 2 ** len(filters)
    if image_shape[0] % scale or image_shape[1] % scale:
        raise ValueError(
            f"{len(filters)} stride-2 stages need the image size {image_shape[0]}x"
            f"{image_shape[1]} to be divisible by {scale}; give fewer filters"
        )
    if architecture == "resnet" and blocks <= 0:
        raise ValueError(f"blocks must be > 0 for the resnet, got {blocks}")


def _dense(inputs, units):
    return inputs * units + units


def _conv(channels_in, channels_out):  # 3x3 kernels, Conv2D or Conv2DTranspose
    return 9 * channels_in * channels_out + channels_out


def encoder_parameter_count(*, latent_dim, hidden_dim, image_shape, architecture, filters, blocks, num_classes):
    """The number of weights of `build_encoder` with these settings, by arithmetic."""
    height, width, channels = image_shape
    count = 2 * _dense(hidden_dim, latent_dim)
    if architecture == "mlp":
        return count + _dense(height * width * channels + num_classes, hidden_dim)
    residual = 2 * blocks if architecture == "resnet" else 0
    previous = channels
    for stage_channels in filters:
        count += _conv(previous, stage_channels) + residual * _conv(stage_channels, stage_channels)
        previous = stage_channels
    cells = (height // 2 ** len(filters)) * (width // 2 ** len(filters))
    return count + _dense(cells * filters[-1] + num_classes, hidden_dim)


def decoder_parameter_count(*, latent_dim, hidden_dim, image_shape, architecture, filters, blocks, num_classes):
    """The number of weights of `build_decoder` with these settings, by arithmetic."""
    height, width, channels = image_shape
    count = _dense(latent_dim + num_classes, hidden_dim)
    if architecture == "mlp":
        return count + _dense(hidden_dim, height * width * channels)
    residual = 2 * blocks if architecture == "resnet" else 0
    cells = (height // 2 ** len(filters)) * (width // 2 ** len(filters))
    count += _dense(hidden_dim, cells * filters[-1])
    current = filters[-1]
    for stage in reversed(range(len(filters))):
        upsampled = filters[max(stage - 1, 0)]
        count += residual * _conv(current, current) + _conv(current, upsampled)
        current = upsampled
    return count + _conv(current, channels)


def parameter_count(**settings):
    """The number of weights of `build_encoder` plus `build_decoder`, by arithmetic.

    Nothing is built: the safe loader uses it (through
    `ModelConfig.parameter_count`) to refuse a model file whose settings ask for more
    weights than the file holds, before allocating any. The tests check it
    against `count_params()` of the built networks.

    Args:
        the builders' (see `build_encoder`), all given, by keyword.

    Returns:
        An int.
    """
    return encoder_parameter_count(**settings) + decoder_parameter_count(**settings)


def conditional_prior_parameter_count(latent_dim, hidden_dim):
    """The number of weights of `build_conditional_prior`."""
    return _dense(latent_dim, hidden_dim) + 2 * _dense(hidden_dim, latent_dim)



def objective_problems(beta=1.0, free_bits=0.0, iw_samples=1):
    """What is wrong with these objective settings: a list of messages."""
    problems = []
    if not beta >= 0:
        problems.append(f"beta must be >= 0, got {beta}")
    if not free_bits >= 0:
        problems.append(f"free_bits must be >= 0, got {free_bits}")
    if iw_samples < 1:
        problems.append(f"iw_samples must be >= 1, got {iw_samples}")
    elif iw_samples > 1 and free_bits > 0:
        problems.append(
            "free bits apply to the VAE objective (iw_samples 1), not to the IWAE bound"
        )
    return problems




def _setting(default, network=False):
    """A `ModelConfig` field; `network=True` for what the networks' builders take."""
    return dataclasses.field(default=default, metadata={"network": network})


@dataclasses.dataclass
class ModelConfig:
    """The settings of a `VAE` (see its docstring for what each one does).

    Attributes:
        latent_dim: size of z (of each stochastic layer).
        hidden_dim: units of the networks' hidden Dense layers.
        image_shape: `(height, width, channels)`.
        seed: optional int seeding the sampling and binarization noise.
        dynamic_binarization: a fresh Bernoulli sample of the training images
            at every step.
        architecture: one of `networks.ARCHITECTURES`.
        filters: channels of the stride-2 convolutions (conv, resnet).
        blocks: residual blocks per stage (resnet).
        num_classes: > 0 for a conditional VAE.
        beta: weight of the KL term.
        kl_warmup_steps: training steps over which the KL weight grows to beta.
        free_bits: floor of each latent dimension's KL, in nats.
        iw_samples: samples of z per image (k > 1: the IWAE bound).
        latent_layers: 1 or 2 stochastic layers.
        prior: one of `PRIORS`.
        pseudo_inputs: the VampPrior's K.
    """

    latent_dim: int = _setting(20, network=True)
    hidden_dim: int = _setting(512, network=True)
    image_shape: tuple = _setting(IMAGE_SHAPE, network=True)
    seed: int | None = _setting(None)
    dynamic_binarization: bool = _setting(False)
    architecture: str = _setting("mlp", network=True)
    filters: tuple = _setting((32, 64), network=True)
    blocks: int = _setting(1, network=True)
    num_classes: int = _setting(0, network=True)
    beta: float = _setting(1.0)
    kl_warmup_steps: int = _setting(0)
    free_bits: float = _setting(0.0)
    iw_samples: int = _setting(1)
    latent_layers: int = _setting(1)
    prior: str = _setting("normal")
    pseudo_inputs: int = _setting(500)

    def __post_init__(self):
        for name in ("latent_dim", "hidden_dim", "blocks", "num_classes", "kl_warmup_steps",
                     "iw_samples", "latent_layers", "pseudo_inputs"):
            setattr(self, name, int(getattr(self, name)))
        self.image_shape = tuple(int(d) for d in self.image_shape)
        self.filters = tuple(int(f) for f in self.filters)
        self.dynamic_binarization = bool(self.dynamic_binarization)
        self.beta, self.free_bits = float(self.beta), float(self.free_bits)

    @classmethod
    def names(cls):
        """The settings' names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def network_names(cls):
        """The settings the networks' builders take (`build_encoder`'s arguments)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata["network"])

    @classmethod
    def from_dict(cls, settings):
        """A `ModelConfig` from a dict (e.g. `get_config`'s); other keys are ignored."""
        return cls(**{name: settings[name] for name in cls.names() if name in settings})

    def as_dict(self):
        """The settings for `get_config` (tuples as JSON lists)."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
        }

    def network(self, **changes):
        """The keyword arguments of `build_encoder` / `build_decoder`."""
        return {**{name: getattr(self, name) for name in self.network_names()}, **changes}

    @property
    def code_dim(self):
        """Size of the decoder's input z: `latent_dim` per stochastic layer."""
        return self.latent_dim * self.latent_layers

    @property
    def analytic_kl(self):
        """True for the one-layer N(0, I) model, whose KL has a closed form."""
        return self.latent_layers == 1 and self.prior == "normal"

    def problems(self):
        """What is wrong with these settings: a list of messages (empty if none)."""
        problems = []
        for name in ("latent_dim", "hidden_dim"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        try:
            check_architecture(self.architecture, self.filters, self.blocks, self.image_shape)
        except ValueError as error:
            problems.append(str(error))
        problems += objective_problems(self.beta, self.free_bits, self.iw_samples)
        problems += self.latent_problems()
        if self.kl_warmup_steps < 0:
            problems.append(f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        if self.num_classes < 0:
            problems.append(f"num_classes must be >= 0, got {self.num_classes}")
        return problems

    def latent_problems(self):
        """The problems of the latent settings (layers, prior) alone."""
        problems = []
        if self.latent_layers not in LATENT_LAYERS:
            problems.append(f"latent_layers must be 1 or 2, got {self.latent_layers}")
        if self.prior not in PRIORS:
            problems.append(f"unknown prior {self.prior!r}; choose from {', '.join(PRIORS)}")
        elif self.prior == "vamp" and self.pseudo_inputs < 1:
            problems.append(f"pseudo_inputs must be >= 1, got {self.pseudo_inputs}")
        if not self.analytic_kl and self.num_classes:
            problems.append("the VampPrior and two latent layers are for unconditional VAEs")
        if not self.analytic_kl and self.free_bits > 0:
            problems.append(
                "free bits need the analytic KL of the one-layer N(0, I) model, "
                "not the VampPrior or two latent layers"
            )
        return problems

    def check(self):
        """Raises `ValueError` naming every problem of these settings."""
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def parameter_count(self):
        """The number of weights of the `VAE` these settings build, by arithmetic.

        Nothing is built: the safe loader (`model.saving`) refuses a file
        whose settings ask for more weights than it holds.
        """
        network = self.network()
        count = encoder_parameter_count(**network)
        count += decoder_parameter_count(**self.network(latent_dim=self.code_dim))
        if self.latent_layers == 2:
            count += encoder_parameter_count(**self.network(num_classes=self.latent_dim))
            count += conditional_prior_parameter_count(self.latent_dim, self.hidden_dim)
        if self.prior == "vamp":
            count += self.pseudo_inputs * math.prod(self.image_shape)
        return count


