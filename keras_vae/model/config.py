"""`ModelConfig`: the one list of a VAE's settings, their checks and their size.

`VAE` takes these settings by name, `VAE.get_config` writes them, the safe
loader counts the weights they ask for before building anything, and
`TrainConfig` checks its flags through them: one place for each. The weight
counts are the networks' (`keras_vae.networks`) by arithmetic; the tests
check them against the built networks. Nothing here imports Keras.
"""

import dataclasses
import math
import numbers

PRIORS = ("normal", "vamp")
LATENT_LAYERS = (1, 2)
IMAGE_SHAPE = (28, 28, 1)
ARCHITECTURES = ("mlp", "conv", "resnet")
#: The pixel likelihoods p(x|z) (`keras_vae.likelihoods`).
LIKELIHOODS = ("bernoulli", "logistic", "logistic-mixture")


def is_likelihood(likelihood, binary_pixels):
    """True when `likelihood` on such pixels is a probability of the data: the
    Bernoulli on binary pixels, the 8-bit likelihoods on grey levels. (The
    Bernoulli on grey levels is the original design's cross-entropy, a loss.)"""
    return binary_pixels == (likelihood == "bernoulli")


def decoder_channels(likelihood, channels, components=1):
    """The decoder's output channels per pixel for a likelihood of images of
    `channels` channels: 1 logit (`bernoulli`) or a mean and a log-scale
    (`logistic`) per channel; for `logistic-mixture`, K weights and K means
    and log-scales per channel, plus K * C(C-1)/2 channel coefficients."""
    if likelihood == "bernoulli":
        return channels
    if likelihood == "logistic":
        return 2 * channels
    return components * (1 + 2 * channels + channels * (channels - 1) // 2)


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
    """The weight shapes of a Dense layer: kernel and bias."""
    return [(inputs, units), (units,)]


def _conv(channels_in, channels_out):
    """The weight shapes of a 3x3 Conv2D (a Conv2DTranspose's kernel is the
    same up to the order of its channel axes)."""
    return [(3, 3, channels_in, channels_out), (channels_out,)]


def encoder_shapes(*, latent_dim, hidden_dim, image_shape, architecture, filters, blocks, num_classes):
    """The weight shapes of `build_encoder` with these settings, without building it."""
    height, width, channels = image_shape
    shapes = _dense(hidden_dim, latent_dim) * 2
    if architecture == "mlp":
        return _dense(height * width * channels + num_classes, hidden_dim) + shapes
    residual = 2 * blocks if architecture == "resnet" else 0
    previous = channels
    for stage_channels in filters:
        shapes += _conv(previous, stage_channels) + _conv(stage_channels, stage_channels) * residual
        previous = stage_channels
    cells = (height // 2 ** len(filters)) * (width // 2 ** len(filters))
    return shapes + _dense(cells * filters[-1] + num_classes, hidden_dim)


def decoder_shapes(
    *, latent_dim, hidden_dim, image_shape, architecture, filters, blocks, num_classes,
    output_channels=None,
):
    """The weight shapes of `build_decoder` with these settings, without building it."""
    height, width, channels = image_shape
    channels = output_channels or channels
    shapes = _dense(latent_dim + num_classes, hidden_dim)
    if architecture == "mlp":
        return shapes + _dense(hidden_dim, height * width * channels)
    residual = 2 * blocks if architecture == "resnet" else 0
    cells = (height // 2 ** len(filters)) * (width // 2 ** len(filters))
    shapes += _dense(hidden_dim, cells * filters[-1])
    current = filters[-1]
    for stage in reversed(range(len(filters))):
        upsampled = filters[max(stage - 1, 0)]
        shapes += _conv(current, current) * residual + _conv(current, upsampled)
        current = upsampled
    return shapes + _conv(current, channels)


def conditional_prior_shapes(latent_dim, hidden_dim):
    """The weight shapes of `build_conditional_prior`."""
    return _dense(latent_dim, hidden_dim) + _dense(hidden_dim, latent_dim) * 2


def count(shapes):
    """The number of weights in a list of shapes."""
    return sum(math.prod(shape) for shape in shapes)


def parameter_count(**settings):
    """The number of weights of `build_encoder` plus `build_decoder`, by arithmetic.

    Nothing is built; the tests check it against `count_params()` of the
    built networks.

    Args:
        the builders' (see `build_encoder`), all given, by keyword.

    Returns:
        An int.
    """
    return count(encoder_shapes(**settings) + decoder_shapes(**settings))


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




#: The ceiling of each numeric setting: it bounds what a model file or a
#: flag can make the machine allocate (the floors are checked by `problems`).
LIMITS = {
    "latent_dim": 1024,
    "hidden_dim": 16384,
    "image_shape": 1024,  # each of height, width, channels
    "filters": 2048,  # each stage
    "blocks": 16,
    "num_classes": 1000,
    "beta": 1e6,
    "kl_warmup_steps": 10**9,
    "free_bits": 1e3,
    "iw_samples": 10000,
    "pseudo_inputs": 10000,
    "seed": 2**32 - 1,
    "mixture_components": 100,
}
MAX_STAGES = 8


def typed(name, value, kind):
    """`(value, problem)`: the setting converted to its type, or a message.

    Settings come from flags, from Python and from files written by
    strangers: a value of the wrong type (`Infinity`, a string, a nested
    list) is named here, before any arithmetic uses it.
    """
    def integer(item):
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise TypeError
        if not isinstance(item, numbers.Integral) and not float(item).is_integer():
            raise TypeError  # also inf and nan
        return int(item)

    if kind.endswith(" | None"):
        if value is None:
            return None, None
        kind = kind[: -len(" | None")]
    try:
        if kind == "bool":
            if not isinstance(value, (bool, numbers.Integral)) or value not in (0, 1):
                raise TypeError
            return bool(value), None
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value, None
        if kind == "tuple":
            if not isinstance(value, (list, tuple)) or len(value) > MAX_STAGES:
                raise TypeError
            return tuple(integer(item) for item in value), None
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise TypeError
            return float(value), None
        return integer(value), None
    except (TypeError, OverflowError):
        text = repr(value)
        text = text if len(text) <= 40 else text[:37] + "..."
        expected = {"tuple": f"a list of at most {MAX_STAGES} whole numbers", "float": "a finite number",
                    "bool": "true or false", "str": "a string"}.get(kind, "a whole number")
        return value, f"{name} must be {expected}, got {text}"


def type_name(field):
    """A dataclass field's type as `typed` takes it: "int", "str | None", ..."""
    return getattr(field.type, "__name__", str(field.type))


def check_types(instance):
    """Converts each field of a settings dataclass to its type (`typed`).

    Raises:
        ValueError: naming every field of the wrong type.
    """
    problems = []
    for field in dataclasses.fields(instance):
        value, problem = typed(field.name, getattr(instance, field.name), type_name(field))
        if problem:
            problems.append(problem)
        setattr(instance, field.name, value)
    if problems:
        raise ValueError("; ".join(problems))


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
        likelihood: the pixel likelihood p(x|z), one of `LIKELIHOODS`.
        mixture_components: K of the `logistic-mixture` likelihood.
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
    likelihood: str = _setting("bernoulli")
    mixture_components: int = _setting(5)

    def __post_init__(self):
        check_types(self)
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (height, width, channels), got {list(self.image_shape)}")

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
        """The keyword arguments of `build_encoder` (and of `build_decoder`, with
        `decoder()`'s changes)."""
        return {**{name: getattr(self, name) for name in self.network_names()}, **changes}

    def decoder(self):
        """The keyword arguments of `build_decoder`: z of `code_dim`, and the
        likelihood's parameters as its output channels."""
        return self.network(latent_dim=self.code_dim, output_channels=self.output_channels)

    @property
    def output_channels(self):
        """The decoder's output channels per pixel (`decoder_channels`)."""
        return decoder_channels(self.likelihood, self.image_shape[-1], self.mixture_components)

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
        problems += self.range_problems()
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
        return problems + self.likelihood_problems()

    def likelihood_problems(self):
        """The problems of the pixel likelihood's settings."""
        if self.likelihood not in LIKELIHOODS:
            return [f"unknown likelihood {self.likelihood!r}; choose from {', '.join(LIKELIHOODS)}"]
        if self.likelihood == "logistic-mixture" and self.mixture_components < 1:
            return [f"mixture_components must be >= 1, got {self.mixture_components}"]
        if self.likelihood != "bernoulli" and self.dynamic_binarization:
            return [
                f"the {self.likelihood} likelihood is of 8-bit pixels: it cannot model "
                "binarized images (use --likelihood bernoulli, or --binarize none)"
            ]
        return []

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

    def range_problems(self):
        """Settings above their documented ceilings (`LIMITS`), which bound
        what a model file or a flag can make the machine allocate."""
        problems = []
        for name, high in LIMITS.items():
            values = getattr(self, name)
            largest = max(values, default=0) if isinstance(values, tuple) else values
            if largest is not None and largest > high:
                problems.append(f"{name} must be at most {high:g}, got {largest}")
        return problems

    def check(self):
        """Raises `ValueError` naming every problem of these settings."""
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def weight_shapes(self):
        """The shapes of the `VAE`'s weights these settings build, without building it.

        The safe loader compares them with what a weights file holds before
        Keras reads it; `parameter_count` is their total.
        """
        shapes = encoder_shapes(**self.network())
        shapes += decoder_shapes(**self.decoder())
        if self.latent_layers == 2:
            shapes += encoder_shapes(**self.network(num_classes=self.latent_dim))
            shapes += conditional_prior_shapes(self.latent_dim, self.hidden_dim)
        if self.prior == "vamp":
            shapes.append((self.pseudo_inputs, *self.image_shape))
        return shapes

    def parameter_count(self):
        """The number of weights of the `VAE` these settings build, by arithmetic.

        Nothing is built: the safe loader (`model.saving`) refuses a file
        whose settings ask for more weights than it holds.
        """
        return count(self.weight_shapes())


