"""Builders for the encoder q(z|x) and the decoder p(x|z).

Both are functional `keras.Model`s, in one of three architectures
(`model.config.ARCHITECTURES`):

- `mlp`, the original design: encoder 784 -> Dense 512 (ReLU) -> (mean,
  log-variance) of `latent_dim`; decoder z -> Dense 512 (ReLU) -> Dense 784
  logits, shaped back into an image.
- `conv`, the keras.io example's shape: the encoder halves the image with a
  stride-2 3x3 Conv2D per entry of `filters` (28 -> 14 -> 7), then a Dense
  hidden layer; the decoder mirrors it with Conv2DTranspose layers.
- `resnet`: the same stages, each followed by `blocks` residual blocks
  (two 3x3 convolutions and a skip connection, He et al., 2016), so the
  networks are deeper at the same resolution and cost.

A conditional VAE (`num_classes > 0`) gives both networks a second input,
the one-hot label, joined to the features before the hidden Dense layer.
"""

import math

import keras
from keras import layers, ops

from keras_vae.model.config import IMAGE_SHAPE, check_architecture


def float32(outputs):
    """A network's output tensor(s) in float32.

    Under a mixed dtype policy (`mixed_bfloat16`, `mixed_float16`) the
    networks compute in 16 bits; the objective, the densities and the
    likelihood are computed from their outputs in float32.
    """
    if isinstance(outputs, (list, tuple)):
        return [ops.cast(tensor, "float32") for tensor in outputs]
    return ops.cast(outputs, "float32")


def build_conditional_prior(latent_dim=20, hidden_dim=512):
    """Builds p(z1|z2) of a two-layer VAE: a diagonal Gaussian given z2.

    z2 -> Dense `hidden_dim` (ReLU) -> (mean, log-variance) of z1, the same
    shape as the encoder's head.

    Returns:
        A `keras.Model` mapping z2 `(batch, latent_dim)` to `[z1_mean,
        z1_log_var]`, each `(batch, latent_dim)`.
    """
    z2 = keras.Input(shape=(latent_dim,), name="z2")
    x = layers.Dense(hidden_dim, activation="relu", name="hidden")(z2)
    mean = layers.Dense(latent_dim, name="z1_mean")(x)
    log_var = layers.Dense(latent_dim, name="z1_log_var")(x)
    return keras.Model(z2, [mean, log_var], name="prior_z1")


def renamed(network, name):
    """The same functional network (sharing its layers) under another name."""
    return keras.Model(network.inputs, network.outputs, name=name)


def residual_block(x, name):
    """x + Conv3x3(ReLU(Conv3x3(ReLU(x)))), keeping x's shape."""
    channels = x.shape[-1]
    y = layers.Activation("relu", name=f"{name}_relu1")(x)
    y = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv1")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    y = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def _image_features(images, architecture, filters, blocks):
    """The encoder's layers before the hidden Dense layer, flattened."""
    if architecture == "mlp":
        return layers.Flatten(name="flatten")(images)
    x = images
    for stage, channels in enumerate(filters):
        x = layers.Conv2D(
            channels, 3, strides=2, padding="same", activation="relu", name=f"down{stage}"
        )(x)
        if architecture == "resnet":
            for block in range(blocks):
                x = residual_block(x, name=f"down{stage}_block{block}")
    return layers.Flatten(name="flatten")(x)


def _image_from_features(x, architecture, filters, blocks, image_shape):
    """The decoder's layers after the hidden Dense layer, ending in the
    likelihood's parameters, `image_shape` with their channels."""
    if architecture == "mlp":
        x = layers.Dense(math.prod(image_shape), name="logits")(x)
        return layers.Reshape(image_shape, name="image")(x)
    scale = 2 ** len(filters)
    height, width = image_shape[0] // scale, image_shape[1] // scale
    x = layers.Dense(height * width * filters[-1], activation="relu", name="project")(x)
    x = layers.Reshape((height, width, filters[-1]), name="feature_map")(x)
    for stage in reversed(range(len(filters))):
        if architecture == "resnet":
            for block in range(blocks):
                x = residual_block(x, name=f"up{stage}_block{block}")
        # Mirror the encoder: stage s upsamples to the channels of stage s - 1.
        channels = filters[max(stage - 1, 0)]
        x = layers.Conv2DTranspose(
            channels, 3, strides=2, padding="same", activation="relu", name=f"up{stage}"
        )(x)
    return layers.Conv2D(image_shape[-1], 3, padding="same", name="logits")(x)


def _with_label(x, num_classes):
    """Adds the one-hot label input; returns `(label_input, joined)`."""
    if not num_classes:
        return None, x
    label = keras.Input(shape=(num_classes,), name="label")
    return label, layers.Concatenate(name="join_label")([x, label])


def build_encoder(
    latent_dim=20,
    hidden_dim=512,
    image_shape=IMAGE_SHAPE,
    architecture="mlp",
    filters=(32, 64),
    blocks=1,
    num_classes=0,
):
    """Builds the encoder.

    Args:
        latent_dim: size of z.
        hidden_dim: units of the hidden Dense layer.
        image_shape: shape of one input image, `(height, width, channels)`.
        architecture: `"mlp"`, `"conv"` or `"resnet"` (see the module).
        filters: channels of each stride-2 convolution (conv and resnet).
        blocks: residual blocks after each of them (resnet).
        num_classes: if > 0, a conditional encoder that also takes the
            one-hot label, shape `(batch, num_classes)`.

    Returns:
        A `keras.Model` mapping images (and labels) to `[z_mean, z_log_var]`,
        each of shape `(batch, latent_dim)`.
    """
    check_architecture(architecture, filters, blocks, image_shape)
    images = keras.Input(shape=image_shape, name="images")
    x = _image_features(images, architecture, filters, blocks)
    label, x = _with_label(x, num_classes)
    x = layers.Dense(hidden_dim, activation="relu", name="hidden")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    inputs = images if label is None else [images, label]
    return keras.Model(inputs, [z_mean, z_log_var], name="encoder")


def build_decoder(
    latent_dim=20,
    hidden_dim=512,
    image_shape=IMAGE_SHAPE,
    architecture="mlp",
    filters=(32, 64),
    blocks=1,
    num_classes=0,
    output_channels=None,
):
    """Builds the decoder.

    Args:
        latent_dim: size of z.
        hidden_dim: units of the hidden Dense layer.
        image_shape: shape of one output image, `(height, width, channels)`.
        architecture: `"mlp"`, `"conv"` or `"resnet"` (see the module).
        filters: channels of each stride-2 stage, from the image inwards.
        blocks: residual blocks before each upsampling (resnet).
        num_classes: if > 0, a conditional decoder that also takes the
            one-hot label, shape `(batch, num_classes)`.
        output_channels: the likelihood's parameters per pixel
            (`model.config.decoder_channels`); default the image's channels,
            one Bernoulli logit each.

    Returns:
        A `keras.Model` mapping z of shape `(batch, latent_dim)` (and labels)
        to the likelihood's parameters, `(batch, height, width,
        output_channels)`: Bernoulli logits by default (apply a sigmoid to
        get pixel probabilities; see `keras_vae.likelihoods`).
    """
    check_architecture(architecture, filters, blocks, image_shape)
    z = keras.Input(shape=(latent_dim,), name="z")
    label, x = _with_label(z, num_classes)
    x = layers.Dense(hidden_dim, activation="relu", name="hidden")(x)
    output_shape = (*image_shape[:2], output_channels or image_shape[-1])
    logits = _image_from_features(x, architecture, filters, blocks, output_shape)
    inputs = z if label is None else [z, label]
    return keras.Model(inputs, logits, name="decoder")
