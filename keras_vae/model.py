"""The variational autoencoder: encoder, sampling, decoder, and its objective."""

import inspect

import keras
import numpy as np
from keras import ops

from keras_vae import losses, steps
from keras_vae.layers import DynamicBinarization, Sampling
from keras_vae.networks import IMAGE_SHAPE, build_decoder, build_encoder

LOSS_NAMES = ("loss", "neg_elbo", "reconstruction_loss", "kl_loss")
#: The settings the networks' builders take, by name (all are VAE attributes).
NETWORK_SETTINGS = tuple(inspect.signature(build_encoder).parameters)


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(keras.Model):
    """A variational autoencoder with a Bernoulli decoder and N(0, I) prior.

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
        **kwargs,
    ):
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
        self._check_objective()
        self.binarization = (
            DynamicBinarization(seed=seed, name="binarization")
            if self.dynamic_binarization
            else None
        )
        network = {name: getattr(self, name) for name in NETWORK_SETTINGS}
        self.encoder = build_encoder(**network)
        self.decoder = build_decoder(**network)
        self.sampling = Sampling(seed=seed, name="sampling")
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
        if self.kl_warmup_steps < 0:
            problems.append(f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        if self.num_classes < 0:
            problems.append(f"num_classes must be >= 0, got {self.num_classes}")
        if problems:
            raise ValueError("; ".join(problems))

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
        return self.encoder(inputs, training=training)

    def decode_samples(self, z, condition=None, training=False):
        """Logits `(b, k, *image_shape)` of samples z `(b, k, latent_dim)`."""
        samples = ops.shape(z)[1]
        flat = ops.reshape(z, (-1, self.latent_dim))
        inputs = flat
        if condition is not None:
            inputs = [flat, ops.repeat(condition, samples, axis=0)]
        logits = self.decoder(inputs, training=training)
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
        """
        images, condition = self._split_inputs(inputs)
        if self.binarization is not None:
            images = self.binarization(images, training=training)
        z_mean, z_log_var = self.encode_tensors(images, condition, training)
        if self.iw_samples == 1:
            z = self.sampling([z_mean, z_log_var])
            decoder_inputs = z if condition is None else [z, condition]
            logits = self.decoder(decoder_inputs, training=training)
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
        """The posterior q(z|x) (or q(z|x, y)) of each image.

        Args:
            images: array of shape `(n, *image_shape)`, pixels in [0, 1].
            labels: integer labels `(n,)`, for a conditional VAE only.
            batch_size: images per forward pass.

        Returns:
            A pair of NumPy arrays `(z_mean, z_log_var)`, each `(n, latent_dim)`.
        """
        condition = self.one_hot(labels, len(images))
        inputs = images if condition is None else [images, condition]
        z_mean, z_log_var = self.encoder.predict(inputs, batch_size=batch_size, verbose=0)
        return np.asarray(z_mean), np.asarray(z_log_var)

    def decode(self, z, labels=None, batch_size=512):
        """Pixel probabilities p(x|z) (or p(x|z, y)) for each latent vector.

        Args:
            z: array of shape `(n, latent_dim)`.
            labels: integer labels, `(n,)` or one for all, for a conditional
                VAE only.
            batch_size: vectors per forward pass.

        Returns:
            A NumPy array of shape `(n, *image_shape)` with values in [0, 1].
        """
        z = np.asarray(z, dtype="float32")
        condition = self.one_hot(labels, len(z))
        inputs = z if condition is None else [z, condition]
        logits = self.decoder.predict(inputs, batch_size=batch_size, verbose=0)
        return ops.convert_to_numpy(ops.sigmoid(logits))

    def reconstruct(self, images, labels=None, batch_size=512):
        """Decodes each image's posterior mean: the model's reconstruction."""
        z_mean, _ = self.encode(images, labels, batch_size=batch_size)
        return self.decode(z_mean, labels, batch_size=batch_size)

    def sample_prior(self, num, seed=0):
        """Draws `num` vectors from the prior N(0, I) with NumPy's generator.

        NumPy (not the backend's generator) makes the draw, so the same seed
        gives the same z on every backend.

        Returns:
            A float32 NumPy array of shape `(num, latent_dim)`.
        """
        rng = np.random.default_rng(seed)
        return rng.standard_normal((num, self.latent_dim)).astype("float32")

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
