"""The variational autoencoder: encoder, sampling, decoder, and its objective."""

import keras
import numpy as np
from keras import ops

from keras_vae import losses, steps
from keras_vae.layers import DynamicBinarization, Sampling
from keras_vae.networks import IMAGE_SHAPE, build_decoder, build_encoder

LOSS_NAMES = ("loss", "reconstruction_loss", "kl_loss")


@keras.saving.register_keras_serializable(package="keras_vae")
class VAE(keras.Model):
    """A variational autoencoder with a Bernoulli decoder and N(0, I) prior.

    `fit()` minimizes the negative ELBO, in nats per image:
    `loss = reconstruction_loss + kl_loss`, where `reconstruction_loss` is
    the binary cross-entropy of the pixels summed over the image and
    `kl_loss` is the analytic KL divergence of q(z|x) from N(0, I). The custom
    `train_step` adds the KL term to the reconstruction loss on every backend
    (see `keras_vae.steps`); `evaluate()` reports the same three numbers.

    Args:
        latent_dim: size of z.
        hidden_dim: units of the encoder's and decoder's hidden layer.
        image_shape: shape of one image, `(height, width, channels)`.
        seed: optional int seeding the sampling layer's noise.
        dynamic_binarization: if True, training images are replaced by a
            fresh Bernoulli sample of their pixels at every step (the
            likelihood protocol of Burda et al.); evaluation uses the images
            as given.
        **kwargs: standard `keras.Model` arguments (`name`, ...).

    Example:

    ```python
    vae = VAE(latent_dim=20)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(x_train, epochs=10, batch_size=128, validation_data=(x_test,))
    images = vae.generate(64, seed=0)  # (64, 28, 28) pixel probabilities
    ```
    """

    def __init__(
        self,
        latent_dim=20,
        hidden_dim=512,
        image_shape=IMAGE_SHAPE,
        seed=None,
        dynamic_binarization=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.hidden_dim = int(hidden_dim)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.seed = seed
        self.dynamic_binarization = bool(dynamic_binarization)
        self.binarization = (
            DynamicBinarization(seed=seed, name="binarization")
            if self.dynamic_binarization
            else None
        )
        self.encoder = build_encoder(latent_dim, hidden_dim, self.image_shape)
        self.decoder = build_decoder(latent_dim, hidden_dim, self.image_shape)
        self.sampling = Sampling(seed=seed, name="sampling")
        self.trackers = [keras.metrics.Mean(name=name) for name in LOSS_NAMES]
        self.build((None, *self.image_shape))

    def build(self, input_shape):
        # The encoder and decoder are built by construction; the sampling
        # layer owns no weights, only its seed state.
        self.sampling.build([(None, self.latent_dim)] * 2)
        self.built = True

    def call(self, images, training=False):
        """Encodes, samples one z per image and decodes it.

        Returns:
            A dict of tensors: `targets` (the images the decoder must
            reproduce: binarized when training with dynamic binarization),
            `z_mean`, `z_log_var`, `z` (the sample) and `logits` (Bernoulli
            logits of the images).
        """
        if self.binarization is not None:
            images = self.binarization(images, training=training)
        z_mean, z_log_var = self.encoder(images, training=training)
        z = self.sampling([z_mean, z_log_var])
        logits = self.decoder(z, training=training)
        return {
            "targets": images,
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "z": z,
            "logits": logits,
        }

    # The objective ---------------------------------------------------------

    def losses_from_outputs(self, outputs):
        """The model's losses given `call`'s outputs (see `losses.elbo_losses`)."""
        return losses.elbo_losses(outputs["targets"], outputs)

    def compute_losses(self, images, training=False):
        """Runs the model on `images` and returns its dict of losses."""
        return self.losses_from_outputs(self(images, training=training))

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

    def encode(self, images, batch_size=512):
        """The posterior q(z|x) of each image.

        Args:
            images: array of shape `(n, *image_shape)`, pixels in [0, 1].
            batch_size: images per forward pass.

        Returns:
            A pair of NumPy arrays `(z_mean, z_log_var)`, each `(n, latent_dim)`.
        """
        z_mean, z_log_var = self.encoder.predict(
            images, batch_size=batch_size, verbose=0
        )
        return np.asarray(z_mean), np.asarray(z_log_var)

    def decode(self, z, batch_size=512):
        """Pixel probabilities p(x|z) for each latent vector.

        Args:
            z: array of shape `(n, latent_dim)`.
            batch_size: vectors per forward pass.

        Returns:
            A NumPy array of shape `(n, *image_shape)` with values in [0, 1].
        """
        logits = self.decoder.predict(
            np.asarray(z, dtype="float32"), batch_size=batch_size, verbose=0
        )
        return ops.convert_to_numpy(ops.sigmoid(logits))

    def reconstruct(self, images, batch_size=512):
        """Decodes each image's posterior mean: the model's reconstruction."""
        z_mean, _ = self.encode(images, batch_size=batch_size)
        return self.decode(z_mean, batch_size=batch_size)

    def sample_prior(self, num, seed=0):
        """Draws `num` vectors from the prior N(0, I) with NumPy's generator.

        NumPy (not the backend's generator) makes the draw, so the same seed
        gives the same z on every backend.

        Returns:
            A float32 NumPy array of shape `(num, latent_dim)`.
        """
        rng = np.random.default_rng(seed)
        return rng.standard_normal((num, self.latent_dim)).astype("float32")

    def generate(self, num, seed=0):
        """Generates `num` images: z from the prior, decoded to probabilities.

        The same model file and seed give the same images on every backend
        (up to float round-off).

        Returns:
            A NumPy array of shape `(num, *image_shape)`, values in [0, 1].
        """
        return self.decode(self.sample_prior(num, seed))

    # Serialization ---------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "latent_dim": self.latent_dim,
            "hidden_dim": self.hidden_dim,
            "image_shape": list(self.image_shape),
            "seed": self.seed,
            "dynamic_binarization": self.dynamic_binarization,
        }
