"""The variational autoencoder: encoder, sampling, decoder, and its objective."""

import keras
import numpy as np
from keras import ops

from keras_vae import engines, likelihoods, losses, pixels
from keras_vae.layers import DynamicBinarization, Sampling
from keras_vae.model.config import ModelConfig
from keras_vae.model.latents import (
    PSEUDO_INPUT_MEAN,
    PSEUDO_INPUT_STDDEV,
    OneLayer,
    StandardNormal,
    TwoLayers,
    VampPrior,
    repeat_samples,
)
from keras_vae.networks import (
    build_conditional_prior,
    build_decoder,
    build_encoder,
    float32,
    renamed,
)

LOSS_NAMES = ("loss", "neg_elbo", "reconstruction_loss", "kl_loss")


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(keras.Model):
    """A variational autoencoder: a Bernoulli decoder, or 8-bit likelihoods.

    At the defaults it is the original design: one stochastic layer z with
    the N(0, I) prior, an MLP encoder 784 -> 512 -> (mean, log-variance) and
    decoder z -> 512 -> 784. `fit()` then minimizes the negative ELBO in nats
    per image, `loss = reconstruction_loss + kl_loss`: the binary
    cross-entropy of the pixels summed over the image, plus the analytic KL
    divergence of q(z|x) from N(0, I). The custom `train_step` adds the KL
    term on every backend (see `keras_vae.engines`).

    The latent side can be richer (`keras_vae.model.latents`): the VampPrior
    (`prior="vamp"`) and two stochastic layers (`latent_layers=2`). Their KL
    terms have no closed form: `call` returns the log prior ratio log p(z) -
    log q(z|x) of each sample, and the KL term is its Monte Carlo estimate.
    `beta`, `kl_warmup_steps`, `free_bits` and `iw_samples` change the
    objective (see `losses.objective`); `loss` is always the objective being
    optimized and `neg_elbo` the negative ELBO, so runs with different
    objectives compare. `evaluate()` reports the same at the full KL weight.

    Args:
        **kwargs: the settings of `ModelConfig` by name (`latent_dim`,
            `hidden_dim`, `architecture`, `num_classes`, `prior`, ...), and
            the standard `keras.Model` arguments (`name`, ...).

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

    def __init__(self, **kwargs):
        settings = ModelConfig(
            **{name: kwargs.pop(name) for name in ModelConfig.names() if name in kwargs}
        ).check()
        # Under a mixed dtype policy the networks cast their own inputs to 16
        # bits; the model itself keeps its inputs (the images the objective
        # compares with) and its variables (pseudo-inputs, warm-up) in float32.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.settings = settings
        for name in ModelConfig.names():  # vae.latent_dim, vae.prior, ...
            setattr(self, name, getattr(settings, name))
        seed = settings.seed
        self.binarization = (
            DynamicBinarization(seed=seed, name="binarization", dtype="float32")
            if self.dynamic_binarization
            else None
        )
        self.encoder = build_encoder(**settings.network())
        self.decoder = build_decoder(**settings.decoder())
        self.pixel_likelihood = likelihoods.get(
            self.likelihood, self.image_shape[-1], self.mixture_components
        )
        self.encoder_z1 = self.prior_z1 = None
        if self.latent_layers == 2:
            # q(z1|x, z2): the encoder's architecture, z2 joined like a label.
            self.encoder_z1 = renamed(
                build_encoder(**settings.network(num_classes=self.latent_dim)), "encoder_z1"
            )
            self.prior_z1 = build_conditional_prior(self.latent_dim, self.hidden_dim)
        prior = StandardNormal(self.latent_dim)
        if self.prior == "vamp":
            pseudo_inputs = self.add_weight(
                shape=(self.pseudo_inputs, *self.image_shape),
                initializer=keras.initializers.RandomNormal(
                    PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STDDEV, seed=seed
                ),
                name="pseudo_inputs",
            )
            prior = VampPrior(self.encoder, pseudo_inputs)
        self.sampling = Sampling(seed=seed, name="sampling", dtype="float32")
        self.latents = (
            TwoLayers(self.encoder, prior, self.sampling, self.encoder_z1, self.prior_z1, self.latent_dim)
            if self.latent_layers == 2
            else OneLayer(self.encoder, prior, self.sampling)
        )
        self.trackers = [keras.metrics.Mean(name=name) for name in LOSS_NAMES]
        # Training steps taken, for the KL warm-up: a variable, so that it
        # advances inside compiled steps and is saved with the model.
        self.warmup_step = (
            self.add_weight(shape=(), initializer="zeros", trainable=False, name="warmup_step")
            if self.kl_warmup_steps
            else None
        )
        self.build((None, *self.image_shape))

    code_dim = property(lambda self: self.settings.code_dim, doc=ModelConfig.code_dim.__doc__)
    analytic_kl = property(
        lambda self: self.settings.analytic_kl, doc=ModelConfig.analytic_kl.__doc__
    )

    @property
    def learned_prior(self):
        """True when the prior has weights (VampPrior, two layers): it changes
        as the model trains, so samples of it must be drawn anew."""
        return self.latents.prior.learned or self.latent_layers > 1

    @property
    def conditional(self):
        """True for a conditional VAE, whose inputs are `(images, labels)`."""
        return self.num_classes > 0

    def build(self, input_shape):
        # The networks are built by construction; every other layer must be
        # too: JAX's `predict_on_batch` runs eagerly while any layer is not.
        self.sampling.build([(None, self.latent_dim)] * 2)
        if self.binarization is not None:
            self.binarization.build((None, *self.image_shape))
        self.built = True

    # The forward pass ------------------------------------------------------

    def _split_inputs(self, inputs):
        """`(images in [0, 1], one-hot labels or None)` from the model's inputs."""
        if not self.conditional:
            return unit_pixels(inputs), None
        images, labels = inputs
        images = unit_pixels(images)
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        return images, ops.one_hot(labels, self.num_classes, dtype=images.dtype)

    def encode_tensors(self, images, condition=None, training=False):
        """`[z_mean, z_log_var]` of the top layer q(z|x) (tensors), given one-hot labels."""
        inputs = images if condition is None else [images, condition]
        return float32(self.encoder(inputs, training=training))

    def decode_samples(self, z, condition=None, training=False):
        """The decoder's outputs `(b, k, H, W, parameters)` (Bernoulli logits
        by default) of samples z `(b, k, code_dim)`."""
        samples = ops.shape(z)[1]
        inputs = flat = ops.reshape(z, (-1, self.code_dim))
        if condition is not None:
            inputs = [flat, ops.repeat(condition, samples, axis=0)]
        logits = float32(self.decoder(inputs, training=training))
        return ops.reshape(logits, (-1, samples, *ops.shape(logits)[1:]))

    def call(self, inputs, training=False):
        """Encodes, samples `iw_samples` z per image and decodes them.

        Args:
            inputs: images `(b, *image_shape)`, or `(images, labels)` for a
                conditional VAE.
            training: True in the training step: binarizes the images
                dynamically if asked. The KL warm-up is not advanced here
                (see `advance_warmup`), so `call` is a pure forward pass.

        Returns:
            A dict of tensors: `targets` (the images the decoder must
            reproduce: binarized when training with dynamic binarization),
            `z_mean`, `z_log_var` `(b, latent_dim)` of the top layer, `z` (the
            samples, `(b, code_dim)`, or `(b, k, code_dim)` for k > 1) and
            `logits` (Bernoulli logits, `(b, *image_shape)` or `(b, k,
            *image_shape)`). Without an analytic KL also `log_prior_ratio`
            `(b,)` or `(b, k)`: log p(z) - log q(z|x) of each sample.
        """
        images, condition = self._split_inputs(inputs)
        if self.binarization is not None:
            images = self.binarization(images, training=training)
        if not self.analytic_kl:
            return self._monte_carlo_call(images, training)
        z_mean, z_log_var = self.encode_tensors(images, condition, training)
        if self.iw_samples == 1:
            z = self.sampling([z_mean, z_log_var])
            logits = float32(self.decoder(z if condition is None else [z, condition], training=training))
        else:  # k samples per image: (b, k, latent_dim)
            k = self.iw_samples
            z = self.sampling([repeat_samples(z_mean, k), repeat_samples(z_log_var, k)])
            logits = self.decode_samples(z, condition, training)
        return {"targets": images, "z_mean": z_mean, "z_log_var": z_log_var, "z": z, "logits": logits}

    def _monte_carlo_call(self, images, training):
        """`call` for the models whose KL the objective estimates by sampling."""
        z, log_prior_ratio, z_mean, z_log_var = self.latents.sample(
            images, self.iw_samples, training=training
        )
        logits = self.decode_samples(z, training=training)
        if self.iw_samples == 1:  # drop the sample axis, as the analytic path does
            z, logits, log_prior_ratio = z[:, 0], logits[:, 0], log_prior_ratio[:, 0]
        return {
            "targets": images, "z_mean": z_mean, "z_log_var": z_log_var, "z": z,
            "logits": logits, "log_prior_ratio": log_prior_ratio,
        }

    # The objective and the steps -------------------------------------------

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
        """Counts one training step on the KL warm-up's clock (if it has one)."""
        if self.warmup_step is not None:
            self.warmup_step.assign_add(1.0)

    def losses_from_outputs(self, outputs, training=False):
        """The model's losses given `call`'s outputs (see `losses.objective`)."""
        return losses.objective(
            outputs["targets"], outputs, kl_weight=self.kl_weight(training),
            free_bits=self.free_bits, likelihood=self.pixel_likelihood,
        )

    def compute_losses(self, inputs, training=False):
        """Runs the model on `inputs` and returns its dict of losses."""
        return self.losses_from_outputs(self(inputs, training=training), training)

    @property
    def metrics(self):
        # Listed here so that Keras resets them at each epoch.
        return self.trackers

    def train_step(self, *args):
        return engines.current.train_step(self, *args)

    def test_step(self, *args):
        return engines.current.test_step(self, *args)

    # Using a trained model -------------------------------------------------

    def one_hot(self, labels, count):
        """One-hot float32 labels for `count` examples, or None if unconditional
        (`one_hot_labels`)."""
        return one_hot_labels(labels, count, self.num_classes)

    def _with_labels(self, inputs, labels):
        condition = self.one_hot(labels, len(inputs))
        return inputs if condition is None else [inputs, condition]

    def encode(self, images, labels=None, batch_size=512):
        """The posterior of the decoder's input z given each image.

        Args:
            images: array `(n, *image_shape)`: uint8 levels, or pixel values
                in [0, 1] (`keras_vae.pixels`).
            labels: integer labels `(n,)`, for a conditional VAE only.
            batch_size: images per forward pass.

        Returns:
            NumPy arrays `(z_mean, z_log_var)`, each `(n, code_dim)`: q(z|x)
            (or q(z|x, y)); for two layers `[z1, z2]` (`latents.TwoLayers`).
        """
        network = self.encoder if self.latent_layers == 1 else self.posterior_network()
        inputs = self._with_labels(pixels.as_unit(images), labels)
        z_mean, z_log_var = predict(network, inputs, batch_size)
        return np.asarray(z_mean), np.asarray(z_log_var)

    def posterior_network(self):
        """A functional model, images -> the posterior of z (shares the weights)."""
        images = keras.Input(self.image_shape, name="image")
        inputs = [images]
        if self.conditional:
            inputs.append(keras.Input((self.num_classes,), name="label"))
        condition = inputs[1] if self.conditional else None
        outputs = self.latents.posterior(images, condition)
        return keras.Model(inputs if self.conditional else images, list(outputs), name="posterior")

    def decode(self, z, labels=None, batch_size=512, sample_pixels=None):
        """The image p(x|z) (or p(x|z, y)) expects for each latent vector.

        Args:
            z: array `(n, code_dim)`.
            labels: integer labels, `(n,)` or one for all (conditional only).
            batch_size: vectors per forward pass.
            sample_pixels: None for the distribution's mean (the pixel
                probabilities of a Bernoulli decoder); a seed to draw the
                pixels from p(x|z) instead (`likelihoods.Likelihood.sample`).

        Returns:
            A NumPy array `(n, *image_shape)` with values in [0, 1].
        """
        z = np.asarray(z, dtype="float32")
        if z.ndim != 2 or z.shape[1] != self.code_dim:
            raise ValueError(f"z must have shape (n, {self.code_dim}), got {z.shape}")
        inputs = self._with_labels(z, labels)
        outputs = predict(self.decoder, inputs, batch_size)
        if sample_pixels is not None:
            return self.pixel_likelihood.sample(outputs, np.random.default_rng(sample_pixels))
        return ops.convert_to_numpy(self.pixel_likelihood.mean(outputs))

    def reconstruct(self, images, labels=None, batch_size=512):
        """Decodes each image's posterior mean: the model's reconstruction."""
        z_mean, _ = self.encode(images, labels, batch_size=batch_size)
        return self.decode(z_mean, labels, batch_size=batch_size)

    def sample_prior(self, num, seed=0):
        """Draws `num` vectors z from the prior with NumPy's seeded generator.

        The same model and seed give the same z on every backend. Returns a
        float32 NumPy array `(num, code_dim)`.
        """
        rng = np.random.default_rng(seed)
        z = self.latents.sample_prior(rng, num, lambda network, inputs: predict(network, inputs, 512))
        return np.asarray(z, dtype="float32")

    def generate(self, num, seed=0, labels=None, sample_pixels=None):
        """Generates `num` images: z from the prior, decoded (see `decode`).

        Args:
            num: number of images.
            seed: seed of the draw of z.
            labels: for a conditional VAE, the class of each image or one for all.
            sample_pixels: None for p(x|z)'s mean, else the seed of a draw of
                the pixels.

        Returns:
            A NumPy array `(num, *image_shape)`, values in [0, 1].
        """
        return self.decode(self.sample_prior(num, seed), labels, sample_pixels=sample_pixels)

    def generate_by_class(self, per_class, seed=0, sample_pixels=None):
        """A conditional VAE's samples, one row per class, one z per column
        (`sample_pixels` as in `decode`).

        Returns a NumPy array `(num_classes * per_class, *image_shape)`.
        """
        return self.decode(*self.class_grid_inputs(per_class, seed), sample_pixels=sample_pixels)

    def class_grid_inputs(self, per_class, seed=0):
        """The `(z, labels)` that `generate_by_class` decodes, row-major."""
        if not self.conditional:
            raise ValueError("this model is not conditional: it takes no labels")
        z = np.tile(self.sample_prior(per_class, seed), (self.num_classes, 1))
        return z, np.repeat(np.arange(self.num_classes), per_class)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self.settings.as_dict()}


def one_hot_labels(labels, count, num_classes):
    """One-hot float32 labels for `count` examples of a model of `num_classes`
    classes (0: unconditional, which takes None).

    Raises:
        ValueError: a conditional model without labels, an unconditional
            one with labels, or labels out of range.
    """
    if not num_classes:
        if labels is not None:
            raise ValueError("this model is not conditional: it takes no labels")
        return None
    if labels is None:
        raise ValueError(f"this model is a conditional VAE: give labels in [0, {num_classes})")
    labels = np.broadcast_to(np.asarray(labels, dtype="int64"), (count,))
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return np.eye(num_classes, dtype="float32")[labels]


def unit_pixels(images):
    """Images in the model: uint8 levels to float32 pixel values in [0, 1]
    (`keras_vae.pixels`), per batch; floats pass unchanged."""
    if "int" in keras.backend.standardize_dtype(images.dtype):
        return ops.cast(images, "float32") / (pixels.LEVELS - 1)
    return images


def predict(network, inputs, batch_size):
    """`network.predict(inputs)`; one call of its compiled step for one batch.

    For inputs of at most `batch_size` rows on one device this is
    `predict_on_batch`: the same compiled function on the same rows, without
    the data pipeline that `predict` builds around it on every call (about
    45 ms on TensorFlow, which an interactive caller such as `keras-vae
    explore` pays per image). Split over devices, `predict` splits the rows.
    """
    rows = len(inputs[0] if isinstance(inputs, list) else inputs)
    if 0 < rows <= batch_size and engines.current.one_device(network):
        return keras.tree.map_structure(np.asarray, network.predict_on_batch(inputs))
    return network.predict(inputs, batch_size=batch_size, verbose=0)


def fresh_copy(model):
    """A copy of a `VAE`: its settings, weights and seed states, uncompiled.

    Built under the current dtype policy (float32 unless set otherwise), so
    it also turns a model trained under a mixed policy into a float32 one.
    Saved, it holds no optimizer state.
    """
    return copy_variables(model, VAE.from_config(model.get_config()))


def copy_variables(source, target):
    """Assigns every variable of `source` to `target` (a model of the same
    settings); returns `target`."""
    for into, value in zip(target.variables, source.variables, strict=True):
        # Through NumPy: the copy owns its buffers (JAX donates buffers to
        # compiled functions, so two models must never share one).
        into.assign(ops.convert_to_numpy(value).astype(into.dtype))
    return target
