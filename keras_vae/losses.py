"""The VAE objective, written once in `keras.ops` for every backend.

All quantities are in nats. Per-example functions sum over the event axes
(the three image axes `(height, width, channels)`, or the latent axis) and keep
every leading axis, so they serve a batch `(batch, ...)` as well as several
samples per image `(batch, k, ...)`. `elbo_losses` and `objective` average
over the batch (and over the samples).

`objective` is what training minimizes: the negative ELBO, or one of its
variants, each a keyword argument:

- `kl_weight` w multiplies the KL term: w = beta gives the beta-VAE
  (Higgins et al., 2017), and a w growing from 0 to beta is KL warm-up
  (Bowman et al., 2016; Sonderby et al., 2016);
- `free_bits` lambda floors the KL of each latent dimension, averaged over
  the batch, at lambda nats (Kingma et al., 2016), so the optimizer gains
  nothing by closing a unit below it;
- k > 1 samples of z per image give the importance-weighted bound of Burda et
  al. (2015), -log (1/k) sum_i p(x|z_i) p(z_i)^w / q(z_i|x)^w, which tightens
  as k grows; k = 1 is the VAE.

The one-layer VAE with the N(0, I) prior has an analytic KL term. Models
whose KL has no closed form (the VampPrior's mixture, two stochastic layers;
see `VAE`) hand `objective` the log prior ratio log p(z) - log q(z|x) of
each sample instead, under the key `log_prior_ratio`, and the KL term is its
Monte Carlo estimate, E_q[log q(z|x) - log p(z)] over the samples drawn.
"""

import math

from keras import ops

from keras_vae import likelihoods

LOG_2PI = math.log(2.0 * math.pi)


IMAGE_AXES = (-3, -2, -1)  # height, width, channels
BERNOULLI = likelihoods.Bernoulli()


def reconstruction_loss(images, logits, likelihood=BERNOULLI):
    """-log p(x|z) per example, in nats: the decoder's outputs read by a
    pixel likelihood (`keras_vae.likelihoods`; Bernoulli by default, whose
    outputs are logits and whose loss is the binary cross-entropy).

    Args:
        images: tensor of pixel values in [0, 1], shape `(..., H, W, C)`,
            broadcastable to `logits` (e.g. `(batch, 1, H, W, C)` against
            `k` samples of logits per image).
        logits: the decoder's outputs, shape `(..., H, W, parameters)`.
        likelihood: a `likelihoods.Likelihood`.

    Returns:
        A tensor of the leading shape `(...)`, e.g. `(batch,)`.
    """
    return likelihood.negative_log_likelihood(images, logits)


def kl_per_dimension(z_mean, z_log_var):
    """Analytic KL(N(mean, exp(log_var)) || N(0, 1)) of each latent dimension.

    KL_j = -1/2 * (1 + log_var_j - mean_j^2 - exp(log_var_j)).

    Args:
        z_mean: posterior means, shape `(..., latent_dim)`.
        z_log_var: posterior log-variances, same shape.

    Returns:
        A tensor of the same shape.
    """
    z_mean = ops.convert_to_tensor(z_mean)
    z_log_var = ops.convert_to_tensor(z_log_var)
    return -0.5 * (1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))


def kl_divergence(z_mean, z_log_var):
    """Analytic KL(N(mean, exp(log_var)) || N(0, I)), per example.

    The sum over latent dimensions of `kl_per_dimension`.

    Args:
        z_mean: posterior means, shape `(..., latent_dim)`.
        z_log_var: posterior log-variances, same shape.

    Returns:
        A tensor of shape `(...)`, e.g. `(batch,)`.
    """
    return ops.sum(kl_per_dimension(z_mean, z_log_var), axis=-1)


def free_bits_kl(kl_dims, free_bits=0.0):
    """The batch's mean KL with each dimension's share floored at `free_bits`.

    sum_j max(free_bits, mean_batch KL_j) (Kingma et al., 2016): below the
    floor a dimension's KL costs a constant, so its gradient is zero. With
    `free_bits=0` this is the mean KL.

    Args:
        kl_dims: the KL of each latent dimension, shape `(batch, latent_dim)`,
            from `kl_per_dimension`.
        free_bits: the floor in nats per latent dimension.

    Returns:
        A scalar tensor, in nats per image.
    """
    per_dimension = ops.mean(kl_dims, axis=0)
    if free_bits > 0:
        per_dimension = ops.maximum(per_dimension, free_bits)
    return ops.sum(per_dimension)


def _has_sample_axis(outputs):
    """True when `outputs` hold k samples per image: logits `(b, k, H, W, C)`."""
    return len(outputs["logits"].shape) == len(IMAGE_AXES) + 2


def elbo_losses(images, outputs, likelihood=BERNOULLI):
    """The negative ELBO and its two terms, averaged over the batch.

    Args:
        images: the images to reconstruct, pixel values in [0, 1].
        outputs: the dict returned by `VAE.call` on `images`: `z_mean`,
            `z_log_var`, `z` and `logits`, decoded from one sample of z per
            image (`z` of shape `(batch, d)`), or from k samples (`z` of
            shape `(batch, k, d)`, logits `(batch, k, H, W, C)`), whose
            reconstruction terms are averaged.
        likelihood: the pixel likelihood reading `logits`.

    Returns:
        A dict with scalar tensors `reconstruction_loss`, `kl_loss` and
        `loss` = `reconstruction_loss` + `kl_loss` (nats per image).
    """
    if _has_sample_axis(outputs):
        images = images[:, None]  # broadcast against the k samples
    reconstruction = ops.mean(reconstruction_loss(images, outputs["logits"], likelihood))
    kl = ops.mean(kl_divergence(outputs["z_mean"], outputs["z_log_var"]))
    return {
        "loss": reconstruction + kl,
        "reconstruction_loss": reconstruction,
        "kl_loss": kl,
    }


def importance_log_terms(images, logits, z, z_mean, z_log_var, likelihood=BERNOULLI):
    """The two terms of the log importance weights of samples z_i ~ q(z|x).

    log w_i = log p(x|z_i) + [log p(z_i) - log q(z_i|x)].

    Args:
        images: pixel values in [0, 1], shape `(b, H, W, C)`.
        logits: decoder logits of the samples, shape `(b, k, H, W, C)`.
        z: the samples, shape `(b, k, latent_dim)`.
        z_mean, z_log_var: the posterior of each image, `(b, latent_dim)`.
        likelihood: the pixel likelihood reading `logits`.

    Returns:
        A pair of tensors of shape `(b, k)`: `log p(x|z_i)` and
        `log p(z_i) - log q(z_i|x)`.
    """
    z_mean, z_log_var = ops.convert_to_tensor(z_mean), ops.convert_to_tensor(z_log_var)
    mean, log_var = z_mean[:, None, :], z_log_var[:, None, :]
    log_px_given_z = -reconstruction_loss(images[:, None], logits, likelihood)
    log_prior_ratio = standard_normal_log_density(z) - gaussian_log_density(
        z, mean, log_var
    )
    return log_px_given_z, log_prior_ratio


def _iwae_from_terms(log_px_given_z, log_prior_ratio, kl_weight):
    """-mean_b log (1/k) sum_i exp(log p(x|z_i) + kl_weight * log-ratio_i)."""
    log_weights = log_px_given_z + kl_weight * log_prior_ratio
    samples = ops.cast(ops.shape(log_weights)[1], log_weights.dtype)
    return -ops.mean(ops.logsumexp(log_weights, axis=1) - ops.log(samples))


def iwae_loss(images, outputs, kl_weight=1.0, likelihood=BERNOULLI):
    """The negative importance-weighted bound (Burda et al., 2015), batch mean.

    -log (1/k) sum_i exp(log p(x|z_i) + kl_weight * [log p(z_i) - log q(z_i|x)]),
    with log-sum-exp. At kl_weight = 1 this is the IWAE bound on -log p(x);
    other weights temper the prior ratio, as beta and warm-up temper the KL.

    Args:
        images: pixel values in [0, 1], shape `(b, H, W, C)`.
        outputs: `VAE.call`'s outputs with k samples per image.
        kl_weight: scalar weight of the log prior ratio.
        likelihood: the pixel likelihood reading the logits.

    Returns:
        A scalar tensor, in nats per image.
    """
    return _iwae_from_terms(*_log_terms(images, outputs, likelihood), kl_weight)


def _log_terms(images, outputs, likelihood):
    return importance_log_terms(
        images, outputs["logits"], outputs["z"], outputs["z_mean"], outputs["z_log_var"], likelihood
    )


def _monte_carlo_objective(images, outputs, kl_weight, likelihood):
    """`objective` for models that give `log_prior_ratio` instead of an analytic KL."""
    if _has_sample_axis(outputs):
        images = images[:, None]
    log_px_given_z = -reconstruction_loss(images, outputs["logits"], likelihood)
    log_prior_ratio = outputs["log_prior_ratio"]
    reconstruction = -ops.mean(log_px_given_z)
    kl = -ops.mean(log_prior_ratio)
    if _has_sample_axis(outputs):
        loss = _iwae_from_terms(log_px_given_z, log_prior_ratio, kl_weight)
    else:
        loss = reconstruction + kl_weight * kl
    return {
        "loss": loss,
        "neg_elbo": reconstruction + kl,
        "reconstruction_loss": reconstruction,
        "kl_loss": kl,
    }


def objective(images, outputs, kl_weight=1.0, free_bits=0.0, likelihood=BERNOULLI):
    """The training objective, with the ELBO and its terms for comparison.

    One sample per image: `reconstruction + kl_weight * free_bits_kl`, which
    is the negative ELBO at the defaults. k samples per image: `iwae_loss`.

    Args:
        images: the images to reconstruct, pixel values in [0, 1].
        outputs: the dict returned by `VAE.call` (see `elbo_losses`).
        kl_weight: weight of the KL term (beta, times the warm-up factor).
        free_bits: KL floor per latent dimension, in nats (one sample only).
        likelihood: the pixel likelihood reading the logits.

    Returns:
        A dict of scalar tensors in nats per image: `loss` (the objective),
        `neg_elbo`, `reconstruction_loss` and `kl_loss` (its two terms).
        With `log_prior_ratio` in `outputs` (a KL without closed form),
        `kl_loss` is its Monte Carlo estimate.
    """
    if "log_prior_ratio" in outputs:
        if free_bits > 0:
            raise ValueError("free bits need the analytic KL of the one-layer N(0, I) model")
        return _monte_carlo_objective(images, outputs, kl_weight, likelihood)
    kl_dims = kl_per_dimension(outputs["z_mean"], outputs["z_log_var"])
    kl = ops.mean(ops.sum(kl_dims, axis=-1))
    if _has_sample_axis(outputs):
        if free_bits > 0:
            raise ValueError("free bits apply to one sample per image, not to the IWAE bound")
        log_px_given_z, log_prior_ratio = _log_terms(images, outputs, likelihood)
        reconstruction = -ops.mean(log_px_given_z)
        loss = _iwae_from_terms(log_px_given_z, log_prior_ratio, kl_weight)
    else:
        reconstruction = ops.mean(reconstruction_loss(images, outputs["logits"], likelihood))
        loss = reconstruction + kl_weight * free_bits_kl(kl_dims, free_bits)
    return {
        "loss": loss,
        "neg_elbo": reconstruction + kl,
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
    z, mean, log_var = (ops.convert_to_tensor(t) for t in (z, mean, log_var))
    return -0.5 * ops.sum(
        LOG_2PI + log_var + ops.square(z - mean) * ops.exp(-log_var), axis=-1
    )


def mixture_log_density(z, means, log_vars):
    """log of the mixture (1/K) sum_k N(z; mean_k, diag(exp(log_var_k))).

    The VampPrior's density (Tomczak & Welling, 2018), with one component per
    pseudo-input, in log-sum-exp form. Each component's density is computed
    directly from z - mean_k (no expanded quadratic form, which loses
    digits in float32).

    Args:
        z: tensor of shape `(..., latent_dim)`.
        means, log_vars: the components, each `(K, latent_dim)`.

    Returns:
        A tensor of shape `(...)`.
    """
    z = ops.convert_to_tensor(z)
    means, log_vars = ops.convert_to_tensor(means), ops.convert_to_tensor(log_vars)
    per_component = gaussian_log_density(z[..., None, :], means, log_vars)  # (..., K)
    count = ops.cast(ops.shape(means)[0], per_component.dtype)
    return ops.logsumexp(per_component, axis=-1) - ops.log(count)
