"""`ModelConfig`: the one list of a VAE's settings, their checks and their size.

`VAE` takes these settings by name, `VAE.get_config` writes them, the safe
loader counts the weights they ask for before building anything, and
`TrainConfig` checks its flags through them: one place for each.
"""

import dataclasses
import math

from keras_vae import losses
from keras_vae.networks import (
    ARCHITECTURES,
    IMAGE_SHAPE,
    check_architecture,
    conditional_prior_parameter_count,
    decoder_parameter_count,
    encoder_parameter_count,
)

PRIORS = ("normal", "vamp")
LATENT_LAYERS = (1, 2)


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
        problems += losses.objective_problems(self.beta, self.free_bits, self.iw_samples)
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


__all__ = ["ARCHITECTURES", "LATENT_LAYERS", "PRIORS", "ModelConfig"]
