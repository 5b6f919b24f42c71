"""The VAE objective, written once in `keras.ops` for every backend.

All quantities are in nats. Per-example functions sum over the event axes
(the three image axes `(height, width, channels)`, or the latent axis) and keep
every leading axis, so they serve a batch `(batch, ...)` as well as several
samples per image `(batch, k, ...)`. `elbo_losses` averages over the batch.
"""

import math

from keras import ops

LOG_2PI = math.log(2.0 * math.pi)


IMAGE_AXES = (-3, -2, -1)  # height, width, channels


def reconstruction_loss(images, logits):
    """Bernoulli negative log-likelihood -log p(x|z), per example.

    This is the binary cross-entropy of the pixels given the decoder's logits,
    summed over pixels, in the stable form softplus(l) - x * l. It accepts
    grey levels x in [0, 1] as well as binary pixels.

    Args:
        images: tensor of pixel values in [0, 1], shape `(..., H, W, C)`,
            broadcastable to `logits` (e.g. `(batch, 1, H, W, C)` against
            `k` samples of logits per image).
        logits: decoder logits, shape `(..., H, W, C)`.

    Returns:
        A tensor of the leading shape `(...)`, e.g. `(batch,)`.
    """
    logits = ops.convert_to_tensor(logits)
    images = ops.cast(images, logits.dtype)
    return ops.sum(ops.softplus(logits) - images * logits, axis=IMAGE_AXES)


def kl_divergence(z_mean, z_log_var):
    """Analytic KL(N(mean, exp(log_var)) || N(0, I)), per example.

    KL = -1/2 * sum_j (1 + log_var_j - mean_j^2 - exp(log_var_j)).

    Args:
        z_mean: posterior means, shape `(..., latent_dim)`.
        z_log_var: posterior log-variances, same shape.

    Returns:
        A tensor of shape `(...)`, e.g. `(batch,)`.
    """
    z_mean = ops.convert_to_tensor(z_mean)
    z_log_var = ops.convert_to_tensor(z_log_var)
    return -0.5 * ops.sum(
        1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1
    )


def elbo_losses(images, outputs):
    """The negative ELBO and its two terms, averaged over the batch.

    Args:
        images: the images to reconstruct, pixel values in [0, 1].
        outputs: the dict returned by `VAE.call` on `images`: `z_mean`,
            `z_log_var` and `logits` (decoded from one sample of z).

    Returns:
        A dict with scalar tensors `reconstruction_loss`, `kl_loss` and
        `loss` = `reconstruction_loss` + `kl_loss` (nats per image).
    """
    reconstruction = ops.mean(reconstruction_loss(images, outputs["logits"]))
    kl = ops.mean(kl_divergence(outputs["z_mean"], outputs["z_log_var"]))
    return {
        "loss": reconstruction + kl,
        "reconstruction_loss": reconstruction,
        "kl_loss": kl,
    }


def standard_normal_log_density(z):
    """log N(z; 0, I), summed over the last axis.

    Args:
        z: tensor of shape `(..., latent_dim)`.

    Returns:
        A tensor of shape `(...)`.
    """
    z = ops.convert_to_tensor(z)
    return -0.5 * ops.sum(ops.square(z) + LOG_2PI, axis=-1)


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))), summed over the last axis.

    Args:
        z: tensor of shape `(..., latent_dim)`.
        mean, log_var: tensors broadcastable to `z`'s shape.

    Returns:
        A tensor of shape `(...)`.
    """
    z = ops.convert_to_tensor(z)
    return -0.5 * ops.sum(
        LOG_2PI + log_var + ops.square(z - mean) * ops.exp(-log_var), axis=-1
    )
