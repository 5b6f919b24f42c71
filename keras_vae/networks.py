"""Builders for the encoder q(z|x) and the decoder p(x|z).

Both are functional `keras.Model`s. The defaults are the original design:
encoder 784 -> Dense 512 (ReLU) -> (mean, log-variance) of `latent_dim`;
decoder z -> Dense 512 (ReLU) -> Dense 784 logits, shaped back into an image.
"""

import math

import keras
from keras import layers

IMAGE_SHAPE = (28, 28, 1)


def build_encoder(latent_dim=20, hidden_dim=512, image_shape=IMAGE_SHAPE):
    """Builds the MLP encoder.

    Args:
        latent_dim: size of z.
        hidden_dim: units of the hidden layer.
        image_shape: shape of one input image, `(height, width, channels)`.

    Returns:
        A `keras.Model` mapping images to `[z_mean, z_log_var]`, each of shape
        `(batch, latent_dim)`.
    """
    images = keras.Input(shape=image_shape, name="images")
    x = layers.Flatten(name="flatten")(images)
    x = layers.Dense(hidden_dim, activation="relu", name="hidden")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    return keras.Model(images, [z_mean, z_log_var], name="encoder")


def build_decoder(latent_dim=20, hidden_dim=512, image_shape=IMAGE_SHAPE):
    """Builds the MLP decoder.

    Args:
        latent_dim: size of z.
        hidden_dim: units of the hidden layer.
        image_shape: shape of one output image, `(height, width, channels)`.

    Returns:
        A `keras.Model` mapping z of shape `(batch, latent_dim)` to Bernoulli
        logits of shape `(batch, *image_shape)`. Apply a sigmoid to get pixel
        probabilities.
    """
    z = keras.Input(shape=(latent_dim,), name="z")
    x = layers.Dense(hidden_dim, activation="relu", name="hidden")(z)
    x = layers.Dense(math.prod(image_shape), name="logits")(x)
    logits = layers.Reshape(image_shape, name="image")(x)
    return keras.Model(z, logits, name="decoder")
