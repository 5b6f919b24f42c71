"""The variational autoencoder: encoder, sampling, decoder, and its objective."""

import inspect
import math

import keras
import numpy as np
from keras import ops

from keras_vae import distribute, losses, steps
from keras_vae.layers import DynamicBinarization, Sampling
from keras_vae.networks import (
    IMAGE_SHAPE,
    build_conditional_prior,
    build_decoder,
    build_encoder,
    conditional_prior_parameter_count,
    decoder_parameter_count,
    encoder_parameter_count,
    renamed,
)

LOSS_NAMES = ("loss", "neg_elbo", "reconstruction_loss", "kl_loss")
PRIORS = ("normal", "vamp")
LATENT_LAYERS = (1, 2)
# The VampPrior's pseudo-inputs start as grey images near black, as in
# Tomczak & Welling's code (mean 0.05, standard deviation 0.01).
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STDDEV = 0.05, 0.01
#: The settings the networks' builders take, by name (all are VAE attributes).
NETWORK_SETTINGS = tuple(inspect.signature(build_encoder).parameters)


def _float32(outputs):
    """A network's output tensor(s) in float32.

    Under a mixed dtype policy (`mixed_bfloat16`, `mixed_float16`) the
    networks compute in 16 bits; the objective, the densities and the
    likelihood are computed from their outputs in float32.
    """
    if isinstance(outputs, (list, tuple)):
        return [ops.cast(tensor, "float32") for tensor in outputs]
    return ops.cast(outputs, "float32")


def latent_problems(latent_layers=1, prior="normal", pseudo_inputs=500, num_classes=0, free_bits=0.0):
    """What is wrong with these latent settings: a list of messages."""
    problems = []
    if latent_layers not in LATENT_LAYERS:
        problems.append(f"latent_layers must be 1 or 2, got {latent_layers}")
    if prior not in PRIORS:
        problems.append(f"unknown prior {prior!r}; choose from {', '.join(PRIORS)}")
    elif prior == "vamp" and pseudo_inputs < 1:
        problems.append(f"pseudo_inputs must be >= 1, got {pseudo_inputs}")
    if (prior != "normal" or latent_layers != 1) and num_classes:
        problems.append("the VampPrior and two latent layers are for unconditional VAEs")
    if (prior != "normal" or latent_layers != 1) and free_bits > 0:
        problems.append(
            "free bits need the analytic KL of the one-layer N(0, I) model, "
            "not the VampPrior or two latent layers"
        )
    return problems


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(keras.Model):
    """A variational autoencoder with a Bernoulli decoder.

    At the defaults it is the original design: one stochastic layer z with
    the N(0, I) prior. Two options add structure to the latent side:

    - `prior="vamp"`: the VampPrior (Tomczak & Welling, 2018), p(z) =
      (1/K) sum_k q(z|u_k), the mixture of the encoder's posteriors of K
      learned pseudo-inputs u_k (images, `pseudo_inputs` of them, kept in
      [0, 1] by clipping). For two layers it is the prior of the top one.
    - `latent_layers=2`: two stochastic layers of `latent_dim` each, the
      HVAE of Tomczak & Welling (2018): the generative path is
      p(z2) p(z1|z2) p(x|z1, z2), the inference path q(z2|x) q(z1|x, z2).
      q(z2|x) is the encoder; q(z1|x, z2) is a second encoder of the same
      architecture that also sees z2 (joined before its hidden layer, as a
      conditional VAE's label); p(z1|z2) is a one-hidden-layer Gaussian
      network (`networks.build_conditional_prior`); the decoder sees
      z = [z1, z2] (`code_dim` = 2 * `latent_dim`).

    Their KL terms have no closed form: `call` returns the log prior ratio
    log p(z) - log q(z|x) of each sample, and the KL term is its Monte Carlo
    estimate (see `losses.objective`). The one-layer N(0, I) model keeps its
    analytic KL.

    At the defaults `fit()` minimizes the negative ELBO, in nats per image:
    `loss = reconstruction_loss + kl_loss`, where `reconstruction_loss` is
    the binary cross-entropy of the pixels summed over the image and
    `kl_loss` is the analytic KL divergence of q(z|x) from N(0, I). The custom
    `train_step` adds the KL term to the reconstruction loss on every backend
    (see `keras_vae.steps`). `beta`, `kl_warmup_steps`, `free_bits` and
    `iw_samples` change the objective (see `losses.objective`); `loss` is
    always the objective being optimized, and `neg_elbo` the negative ELBO,
    so that runs with different objectives compare. `evaluate()` reports
    the same numbers, at the full KL weight `beta`.

    Args:
        latent_dim: size of z.
        hidden_dim: units of the encoder's and decoder's hidden Dense layer.
        image_shape: shape of one image, `(height, width, channels)`.
        seed: optional int seeding the sampling layer's noise.
        dynamic_binarization: if True, training images are replaced by a
            fresh Bernoulli sample of their pixels at every step (the
            likelihood protocol of Burda et al.); evaluation uses the images
            as given.
        architecture: `"mlp"` (the original), `"conv"` or `"resnet"` (see
            `keras_vae.networks`).
        filters: channels of the stride-2 convolutions (conv, resnet).
        blocks: residual blocks per stage (resnet).
        num_classes: if > 0, a conditional VAE: the model takes
            `(images, labels)` with integer labels in `[0, num_classes)`,
            and the encoder and decoder see the one-hot label.
        beta: weight of the KL term (beta-VAE; 1 is the ELBO).
        kl_warmup_steps: if > 0, the KL weight grows linearly from 0 to
            `beta` over this many training steps.
        free_bits: floor of each latent dimension's KL, in nats.
        iw_samples: samples of z per image; k > 1 trains on the IWAE bound.
        latent_layers: 1 or 2 stochastic layers (see above).
        prior: `"normal"` (N(0, I)) or `"vamp"` (the VampPrior).
        pseudo_inputs: the VampPrior's number of pseudo-inputs K.
        **kwargs: standard `keras.Model` arguments (`name`, ...).

    Example:

    ```python
    vae = VAE(latent_dim=20)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(x_train, epochs=10, batch_size=128, validation_data=(x_test,))
    images = vae.generate(64, seed=0)  # (64, 28, 28, 1) pixel probabilities

    cvae = VAE(num_classes=10)
    cvae.compile(optimizer=keras.optimizers.Adam(1e-3))
    cvae.fit((x_train, y_train), epochs=10, batch_size=128)
    sevens = cvae.generate(8, labels=[7] * 8)
    ```
    """

    def __init__(
        self,
        latent_dim=20,
        hidden_dim=512,
        image_shape=IMAGE_SHAPE,
        seed=None,
        dynamic_binarization=False,
        architecture="mlp",
        filters=(32, 64),
        blocks=1,
        num_classes=0,
        beta=1.0,
        kl_warmup_steps=0,
        free_bits=0.0,
        iw_samples=1,
        latent_layers=1,
        prior="normal",
        pseudo_inputs=500,
        **kwargs,
    ):
        # Under a mixed dtype policy the networks cast their own inputs to 16
        # bits; the model itself keeps its inputs (the images the objective
        # compares with) and its variables (pseudo-inputs, warm-up) in float32.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.hidden_dim = int(hidden_dim)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.seed = seed
        self.dynamic_binarization = bool(dynamic_binarization)
        self.architecture = architecture
        self.filters = tuple(int(f) for f in filters)
        self.blocks = int(blocks)
        self.num_classes = int(num_classes)
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.free_bits = float(free_bits)
        self.iw_samples = int(iw_samples)
        self.latent_layers = int(latent_layers)
        self.prior = prior
        self.pseudo_inputs = int(pseudo_inputs)
        self._check_objective()
        self.binarization = (
            DynamicBinarization(seed=seed, name="binarization", dtype="float32")
            if self.dynamic_binarization
            else None
        )
        network = {name: getattr(self, name) for name in NETWORK_SETTINGS}
        self.encoder = build_encoder(**network)
        self.decoder = build_decoder(**{**network, "latent_dim": self.code_dim})
        self.encoder_z1 = self.prior_z1 = self.pseudo_images_variable = None
        if self.latent_layers == 2:
            # q(z1|x, z2): the encoder's architecture, z2 joined like a label.
            self.encoder_z1 = renamed(
                build_encoder(**{**network, "num_classes": self.latent_dim}), "encoder_z1"
            )
            self.prior_z1 = build_conditional_prior(self.latent_dim, self.hidden_dim)
        if self.prior == "vamp":
            self.pseudo_images_variable = self.add_weight(
                shape=(self.pseudo_inputs, *self.image_shape),
                initializer=keras.initializers.RandomNormal(
                    PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STDDEV, seed=seed
                ),
                name="pseudo_inputs",
            )
        self.sampling = Sampling(seed=seed, name="sampling", dtype="float32")
        self.trackers = [keras.metrics.Mean(name=name) for name in LOSS_NAMES]
        # Training steps taken, for the KL warm-up: a variable, so that it
        # advances inside compiled steps and is saved with the model.
        self.warmup_step = (
            self.add_weight(shape=(), initializer="zeros", trainable=False, name="warmup_step")
            if self.kl_warmup_steps
            else None
        )
        self.build((None, *self.image_shape))

    def _check_objective(self):
        problems = losses.objective_problems(self.beta, self.free_bits, self.iw_samples)
        problems += latent_problems(
            self.latent_layers, self.prior, self.pseudo_inputs, self.num_classes, self.free_bits
        )
        if self.kl_warmup_steps < 0:
            problems.append(f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        if self.num_classes < 0:
            problems.append(f"num_classes must be >= 0, got {self.num_classes}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def code_dim(self):
        """Size of the decoder's input z: `latent_dim` per stochastic layer."""
        return self.latent_dim * self.latent_layers

    @property
    def analytic_kl(self):
        """True for the one-layer N(0, I) model, whose KL has a closed form."""
        return self.latent_layers == 1 and self.prior == "normal"

    @property
    def learned_prior(self):
        """True when the prior has weights (VampPrior, two layers): it changes
        as the model trains, so samples of it must be drawn anew."""
        return self.prior != "normal" or self.latent_layers > 1

    @classmethod
    def parameter_count(cls, config):
        """The number of weights of `VAE.from_config(config)`, by arithmetic.

        Nothing is built (see `files.load_model`, which refuses a file whose
        settings ask for more weights than it holds).

        Args:
            config: a dict of `VAE` settings, as `get_config` writes them;
                absent ones take their defaults.

        Returns:
            An int.
        """
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(cls.__init__).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        settings = {**defaults, **config}
        network = {name: settings[name] for name in NETWORK_SETTINGS}
        network["image_shape"] = tuple(int(d) for d in network["image_shape"])
        network["filters"] = tuple(int(f) for f in network["filters"])
        layers = int(settings["latent_layers"])
        latent, hidden = int(network["latent_dim"]), int(network["hidden_dim"])
        count = encoder_parameter_count(**network)
        count += decoder_parameter_count(**{**network, "latent_dim": latent * layers})
        if layers == 2:
            count += encoder_parameter_count(**{**network, "num_classes": latent})
            count += conditional_prior_parameter_count(latent, hidden)
        if settings["prior"] == "vamp":
            count += int(settings["pseudo_inputs"]) * math.prod(network["image_shape"])
        return count

    @property
    def conditional(self):
        """True for a conditional VAE, whose inputs are `(images, labels)`."""
        return self.num_classes > 0

    def build(self, input_shape):
        # The encoder and decoder are built by construction; the sampling and
        # binarization layers own no weights, only their seed state. Every
        # layer must be built: JAX's `predict_on_batch` runs the model
        # eagerly, every call, while any layer is not.
        self.sampling.build([(None, self.latent_dim)] * 2)
        if self.binarization is not None:
            self.binarization.build((None, *self.image_shape))
        self.built = True

    # The networks, with the label when conditional --------------------------

    def _split_inputs(self, inputs):
        """`(images, one-hot labels or None)` from the model's inputs."""
        if not self.conditional:
            return inputs, None
        images, labels = inputs
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        return images, ops.one_hot(labels, self.num_classes, dtype=images.dtype)

    def encode_tensors(self, images, condition=None, training=False):
        """`[z_mean, z_log_var]` of images (tensors), given one-hot labels."""
        inputs = images if condition is None else [images, condition]
        return _float32(self.encoder(inputs, training=training))

    def decode_samples(self, z, condition=None, training=False):
        """Logits `(b, k, *image_shape)` of samples z `(b, k, code_dim)`."""
        samples = ops.shape(z)[1]
        flat = ops.reshape(z, (-1, self.code_dim))
        inputs = flat
        if condition is not None:
            inputs = [flat, ops.repeat(condition, samples, axis=0)]
        logits = _float32(self.decoder(inputs, training=training))
        return ops.reshape(logits, (-1, samples, *self.image_shape))

    def _per_sample(self, tensor):
        """`(b, d)` -> `(b, iw_samples, d)`, repeating each row."""
        return ops.repeat(tensor[:, None, :], self.iw_samples, axis=1)

    def kl_weight(self, training=False):
        """This step's KL weight: `beta`, ramped up from 0 while warming up.

        Reads the warm-up's step count without changing it (the training
        step advances it, see `advance_warmup`); evaluation always uses the
        full weight `beta`.
        """
        if not training or self.warmup_step is None:
            return self.beta
        return self.beta * ops.minimum(self.warmup_step / self.kl_warmup_steps, 1.0)

    def advance_warmup(self):
        """Counts one training step on the KL warm-up's clock (if it has one).

        Called by the training step of every backend (`keras_vae.steps`),
        after the step's losses, so that `call` stays a pure forward pass.
        """
        if self.warmup_step is not None:
            self.warmup_step.assign_add(1.0)

    def call(self, inputs, training=False):
        """Encodes, samples `iw_samples` z per image and decodes them.

        Args:
            inputs: images `(b, *image_shape)`, or `(images, labels)` for a
                conditional VAE.
            training: True in the training step: binarizes the images
                dynamically if asked. The KL warm-up is not advanced here
                (see `advance_warmup`), so calling the model changes no
                setting of its training.

        Returns:
            A dict of tensors: `targets` (the images the decoder must
            reproduce: binarized when training with dynamic binarization),
            `z_mean`, `z_log_var` `(b, latent_dim)`, `z` (the samples) and
            `logits` (Bernoulli logits of the images), of shapes
            `(b, latent_dim)` and `(b, *image_shape)` for one sample, or
            `(b, k, latent_dim)` and `(b, k, *image_shape)` for k > 1.
            Without an analytic KL (the VampPrior, two layers) `z` is the
            decoder's input `[z1, z2]` (`code_dim` wide), `z_mean` and
            `z_log_var` are those of the top layer's q(z|x), and
            `log_prior_ratio` `(b,)` or `(b, k)` is log p(z) - log q(z|x) of
            each sample.
        """
        images, condition = self._split_inputs(inputs)
        if self.binarization is not None:
            images = self.binarization(images, training=training)
        if not self.analytic_kl:
            return self._monte_carlo_call(images, training)
        z_mean, z_log_var = self.encode_tensors(images, condition, training)
        if self.iw_samples == 1:
            z = self.sampling([z_mean, z_log_var])
            decoder_inputs = z if condition is None else [z, condition]
            logits = _float32(self.decoder(decoder_inputs, training=training))
        else:  # k samples per image: (b, k, latent_dim)
            z = self.sampling([self._per_sample(z_mean), self._per_sample(z_log_var)])
            logits = self.decode_samples(z, condition, training)
        return {
            "targets": images,
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "z": z,
            "logits": logits,
        }

    def _monte_carlo_call(self, images, training):
        """`call` for the models whose KL the objective estimates by sampling."""
        z, log_prior_ratio, top_mean, top_log_var = self.sample_latents(
            images, self.iw_samples, training=training
        )
        logits = self.decode_samples(z, training=training)
        if self.iw_samples == 1:  # drop the sample axis, as the analytic path does
            z, logits, log_prior_ratio = z[:, 0], logits[:, 0], log_prior_ratio[:, 0]
        return {
            "targets": images,
            "z_mean": top_mean,
            "z_log_var": top_log_var,
            "z": z,
            "logits": logits,
            "log_prior_ratio": log_prior_ratio,
        }

    # The latent side -------------------------------------------------------

    def _draw(self, mean, log_var, epsilon):
        """mean + std * epsilon; the sampling layer draws epsilon when None."""
        if epsilon is None:
            return self.sampling([mean, log_var])
        return mean + ops.exp(0.5 * log_var) * epsilon

    def pseudo_images(self):
        """The VampPrior's pseudo-inputs as images, `(K, *image_shape)`, in [0, 1]."""
        return ops.clip(self.pseudo_images_variable, 0.0, 1.0)

    def prior_components(self, training=False):
        """The VampPrior's components q(z|u_k): `(means, log_vars)`, each `(K, latent_dim)`."""
        return _float32(self.encoder(self.pseudo_images(), training=training))

    def top_prior_log_density(self, z, training=False):
        """log p(z) of the top stochastic layer: N(0, I) or the VampPrior."""
        if self.prior == "vamp":
            return losses.mixture_log_density(z, *self.prior_components(training))
        return losses.standard_normal_log_density(z)

    def sample_latents(self, images, samples, epsilon=None, training=False):
        """Draws `samples` latent vectors per image from q and weighs them.

        For one layer z ~ q(z|x); for two, z2 ~ q(z2|x), then z1 ~ q(z1|x, z2).

        Args:
            images: `(b, *image_shape)`.
            samples: k, the samples per image.
            epsilon: optional standard normal noise `(b, k, code_dim)` (the
                top layer's in its last `latent_dim` entries); by default
                the sampling layer draws it.
            training: passed to the networks.

        Returns:
            `(z, log_prior_ratio, top_mean, top_log_var)`: the decoder's
            inputs `(b, k, code_dim)` (z1 first, then z2), log p(z) - log
            q(z|x) of each `(b, k)`, and the top layer's posterior `(b,
            latent_dim)`.
        """
        d = self.latent_dim
        top_mean, top_log_var = self.encode_tensors(images, training=training)
        top_eps = None if epsilon is None else epsilon[..., self.code_dim - d :]
        mean, log_var = self._samples_of(top_mean, samples), self._samples_of(top_log_var, samples)
        z_top = self._draw(mean, log_var, top_eps)  # (b, k, d)
        log_q = losses.gaussian_log_density(z_top, mean, log_var)
        log_p = self.top_prior_log_density(z_top, training)
        if self.latent_layers == 1:
            return z_top, log_p - log_q, top_mean, top_log_var
        batch = ops.shape(top_mean)[0]
        flat_top = ops.reshape(z_top, (-1, d))
        repeated = ops.repeat(images, samples, axis=0)  # image-major, as the reshape
        mean1, log_var1 = _float32(self.encoder_z1([repeated, flat_top], training=training))
        bottom_eps = None if epsilon is None else ops.reshape(epsilon[..., :d], (-1, d))
        z1 = self._draw(mean1, log_var1, bottom_eps)
        prior_mean1, prior_log_var1 = _float32(self.prior_z1(flat_top, training=training))
        log_ratio1 = losses.gaussian_log_density(
            z1, prior_mean1, prior_log_var1
        ) - losses.gaussian_log_density(z1, mean1, log_var1)
        log_ratio = log_p - log_q + ops.reshape(log_ratio1, (batch, samples))
        z = ops.reshape(ops.concatenate([z1, flat_top], axis=-1), (batch, samples, self.code_dim))
        return z, log_ratio, top_mean, top_log_var

    def _samples_of(self, tensor, samples):
        """`(b, d)` -> `(b, samples, d)`, repeating each row."""
        return ops.repeat(tensor[:, None, :], samples, axis=1)

    def posterior_tensors(self, images, condition=None, training=False):
        """The posterior of the decoder's input z given images: `(mean, log_var)`.

        One layer: q(z|x). Two layers: z = [z1, z2] with q(z2|x), and
        q(z1|x, z2) at z2's posterior mean (what `encode`, the pictures and
        the exported encoder use). Works on tensors and on Keras inputs.
        """
        mean, log_var = self.encode_tensors(images, condition, training)
        if self.latent_layers == 1:
            return mean, log_var
        mean1, log_var1 = _float32(self.encoder_z1([images, mean], training=training))
        return (
            ops.concatenate([mean1, mean], axis=-1),
            ops.concatenate([log_var1, log_var], axis=-1),
        )

    def importance_terms(self, images, epsilon, condition=None):
        """The terms of the importance weights of given noise, for `evaluation`.

        Args:
            images: `(b, *image_shape)`, binary pixels for a likelihood.
            epsilon: standard normal noise `(b, k, code_dim)`.
            condition: one-hot labels `(b, num_classes)` (conditional VAE).

        Returns:
            `(log p(x|z_i), log p(z_i) - log q(z_i|x), kl)`: `(b, k)`, `(b, k)`
            and the KL term of each image `(b,)`, analytic for the one-layer
            N(0, I) model, else the mean over these k samples.
        """
        if self.analytic_kl:
            z_mean, z_log_var = self.encode_tensors(images, condition)
            z = z_mean[:, None, :] + ops.exp(0.5 * z_log_var[:, None, :]) * epsilon
            logits = self.decode_samples(z, condition)
            log_px_given_z, log_prior_ratio = losses.importance_log_terms(
                images, logits, z, z_mean, z_log_var
            )
            return log_px_given_z, log_prior_ratio, losses.kl_divergence(z_mean, z_log_var)
        z, log_prior_ratio, _, _ = self.sample_latents(images, ops.shape(epsilon)[1], epsilon)
        log_px_given_z = -losses.reconstruction_loss(images[:, None], self.decode_samples(z))
        return log_px_given_z, log_prior_ratio, -ops.mean(log_prior_ratio, axis=1)

    # The objective ---------------------------------------------------------

    def losses_from_outputs(self, outputs, training=False):
        """The model's losses given `call`'s outputs (see `losses.objective`).

        `training` picks the KL weight: the warm-up's current one, or `beta`.
        """
        return losses.objective(
            outputs["targets"],
            outputs,
            kl_weight=self.kl_weight(training),
            free_bits=self.free_bits,
        )

    def compute_losses(self, inputs, training=False):
        """Runs the model on `inputs` and returns its dict of losses."""
        return self.losses_from_outputs(self(inputs, training=training), training)

    @property
    def metrics(self):
        # Listed here so that Keras resets them at each epoch.
        return self.trackers

    def train_step(self, *args):
        train_step, _ = steps.STEPS[keras.backend.backend()]
        return train_step(self, *args)

    def test_step(self, *args):
        _, test_step = steps.STEPS[keras.backend.backend()]
        return test_step(self, *args)

    # Using a trained model -------------------------------------------------

    def one_hot(self, labels, count):
        """One-hot float32 labels for `count` examples, or None if unconditional.

        Raises:
            ValueError: a conditional model without labels, an unconditional
                one with labels, or labels out of range or of the wrong count.
        """
        if not self.conditional:
            if labels is not None:
                raise ValueError("this model is not conditional: it takes no labels")
            return None
        if labels is None:
            raise ValueError(
                f"this model is a conditional VAE: give labels in [0, {self.num_classes})"
            )
        labels = np.broadcast_to(np.asarray(labels, dtype="int64"), (count,))
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}"
            )
        return np.eye(self.num_classes, dtype="float32")[labels]

    def encode(self, images, labels=None, batch_size=512):
        """The posterior of the decoder's input z given each image.

        Args:
            images: array of shape `(n, *image_shape)`, pixels in [0, 1].
            labels: integer labels `(n,)`, for a conditional VAE only.
            batch_size: images per forward pass.

        Returns:
            A pair of NumPy arrays `(z_mean, z_log_var)`, each `(n, code_dim)`:
            q(z|x) (or q(z|x, y)); for two layers, `[z1, z2]` as
            `posterior_tensors` says.
        """
        condition = self.one_hot(labels, len(images))
        inputs = images if condition is None else [images, condition]
        network = self.encoder if self.latent_layers == 1 else self.posterior_network()
        z_mean, z_log_var = distribute.predict(network, inputs, batch_size)
        return np.asarray(z_mean), np.asarray(z_log_var)

    def posterior_network(self):
        """A functional model, images -> `posterior_tensors` (shares the weights)."""
        images = keras.Input(self.image_shape, name="image")
        inputs = [images]
        if self.conditional:
            inputs.append(keras.Input((self.num_classes,), name="label"))
        condition = inputs[1] if self.conditional else None
        outputs = self.posterior_tensors(images, condition)
        return keras.Model(inputs if self.conditional else images, list(outputs), name="posterior")

    def decode(self, z, labels=None, batch_size=512):
        """Pixel probabilities p(x|z) (or p(x|z, y)) for each latent vector.

        Args:
            z: array of shape `(n, code_dim)` (`latent_dim` for one layer).
            labels: integer labels, `(n,)` or one for all, for a conditional
                VAE only.
            batch_size: vectors per forward pass.

        Returns:
            A NumPy array of shape `(n, *image_shape)` with values in [0, 1].
        """
        z = np.asarray(z, dtype="float32")
        if z.ndim != 2 or z.shape[1] != self.code_dim:
            raise ValueError(f"z must have shape (n, {self.code_dim}), got {z.shape}")
        condition = self.one_hot(labels, len(z))
        inputs = z if condition is None else [z, condition]
        logits = distribute.predict(self.decoder, inputs, batch_size)
        return ops.convert_to_numpy(ops.sigmoid(logits))

    def reconstruct(self, images, labels=None, batch_size=512):
        """Decodes each image's posterior mean: the model's reconstruction."""
        z_mean, _ = self.encode(images, labels, batch_size=batch_size)
        return self.decode(z_mean, labels, batch_size=batch_size)

    def sample_prior(self, num, seed=0):
        """Draws `num` vectors z from the prior, with NumPy's generator.

        N(0, I); the VampPrior picks a pseudo-input's component uniformly and
        draws from it; two layers draw z2 from its prior, then z1 from
        p(z1|z2). NumPy (not the backend's generator) makes every draw, so
        the same model and seed give the same z on every backend.

        Returns:
            A float32 NumPy array of shape `(num, code_dim)`.
        """
        rng = np.random.default_rng(seed)
        d = self.latent_dim
        if self.prior == "vamp":
            means, log_vars = (ops.convert_to_numpy(t) for t in self.prior_components())
            chosen = rng.integers(len(means), size=num)
            noise = rng.standard_normal((num, d)).astype("float32")
            z = means[chosen] + np.exp(0.5 * log_vars[chosen]) * noise
        else:
            z = rng.standard_normal((num, d)).astype("float32")
        if self.latent_layers == 2:
            means, log_vars = (np.asarray(t) for t in distribute.predict(self.prior_z1, z, 512))
            z1 = means + np.exp(0.5 * log_vars) * rng.standard_normal((num, d)).astype("float32")
            z = np.concatenate([z1, z], axis=1)
        return np.asarray(z, dtype="float32")

    def generate(self, num, seed=0, labels=None):
        """Generates `num` images: z from the prior, decoded to probabilities.

        The same model file and seed give the same images on every backend
        (up to float round-off).

        Args:
            num: number of images.
            seed: seed of the draw of z.
            labels: for a conditional VAE, the class of each image, `(num,)`,
                or one class for all.

        Returns:
            A NumPy array of shape `(num, *image_shape)`, values in [0, 1].
        """
        return self.decode(self.sample_prior(num, seed), labels)

    def generate_by_class(self, per_class, seed=0):
        """A conditional VAE's samples, one row per class, one z per column.

        Column j decodes the same z_j with each label, so a row shows one
        class in the styles that z encodes.

        Returns:
            A NumPy array `(num_classes * per_class, *image_shape)`, row-major.
        """
        return self.decode(*self.class_grid_inputs(per_class, seed))

    def class_grid_inputs(self, per_class, seed=0):
        """The `(z, labels)` that `generate_by_class` decodes, row-major."""
        if not self.conditional:
            raise ValueError("this model is not conditional: it takes no labels")
        z = np.tile(self.sample_prior(per_class, seed), (self.num_classes, 1))
        labels = np.repeat(np.arange(self.num_classes), per_class)
        return z, labels

    # Serialization ---------------------------------------------------------

    def get_config(self):
        # Every argument of __init__ (but **kwargs) is an attribute of the
        # same name; tuples are saved as JSON lists.
        config = {"name": self.name, "trainable": self.trainable}
        for name in list(inspect.signature(VAE.__init__).parameters)[1:-1]:
            value = getattr(self, name)
            config[name] = list(value) if isinstance(value, tuple) else value
        return config


def fresh_copy(model):
    """A copy of a `VAE`: its settings, weights and seed states, uncompiled.

    Built under the current dtype policy (float32 unless set otherwise), so
    it also turns a model trained under a mixed policy into a float32 one.
    Saved, it holds no optimizer state.
    """
    copy = VAE.from_config(model.get_config())
    for target, source in zip(copy.variables, model.variables, strict=True):
        # Through NumPy: the copy owns its buffers (JAX donates buffers to
        # compiled functions, so two models must never share one).
        target.assign(ops.convert_to_numpy(source).astype(target.dtype))
    return copy
