"""Likelihood evaluation: the numbers that compare with the literature.

For each test image x this estimates, in nats:

- the negative ELBO, `reconstruction + KL`, with the reconstruction term
  E_q[-log p(x|z)] averaged over the k importance samples and the KL term
  exact for the one-layer N(0, I) model, else (VampPrior, two layers) the
  mean of log q(z|x) - log p(z) over the same k samples;
- the importance-weighted estimate of the negative log-likelihood (Burda et
  al., 2015), -log p(x) ~= -log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x),
  computed with log-sum-exp in float64; for two layers p(x, z) =
  p(x|z1, z2) p(z1|z2) p(z2) and q(z|x) = q(z2|x) q(z1|x, z2), for the
  VampPrior p(z) is its mixture density; it is a stochastic upper bound on -log p(x)
  that tightens as k grows, and equals the negative ELBO in expectation at
  k = 1;
- bits per dimension, NLL / (D ln 2) with D = 784 pixels;
- the number of active units (Burda et al.): latent dimensions whose posterior
  mean varies across the data, Cov_x(E_q[z_i|x]) > 0.01.

The likelihood is that of a Bernoulli decoder, so it is a likelihood only for
binary images (binarized MNIST); on grey-level pixels it is a loss, not a
log-likelihood. The noise is drawn with NumPy's seeded generator, so the same
model file and seed give the same numbers on every backend (up to round-off).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_vae import data, losses, pixels
from keras_vae.engines.common import batch_multiple, one_device
from keras_vae.memory import MAX_ROWS
from keras_vae.parallel import Topology, pad_rows

ACTIVE_UNIT_THRESHOLD = 0.01
# Latent vectors decoded per forward pass: one image's k = 5000 samples, the
# fastest of the sizes measured (docs/performance.md).


class ImportanceSampler(keras.Model):
    """Log-weights of importance samples from q(z|x), for a batch of images.

    Call arguments:
        inputs: a tuple `(images, epsilon)`, or `(images, epsilon, one_hot)`
            for a conditional VAE: images `(b, H, W, C)`, standard normal
            noise `(b, k, code_dim)` and one-hot labels `(b, classes)`.

    Returns:
        A tuple of `log p(x|z_i)` `(b, k)`, `log p(z_i) - log q(z_i|x)`
        `(b, k)`, and the KL term of each image `(b,)`: analytic for the
        one-layer N(0, I) model, else the mean over these k samples.
    """

    def __init__(self, vae, **kwargs):
        super().__init__(**kwargs)
        self.vae = vae

    def call(self, inputs):
        images, epsilon, *condition = inputs
        condition = condition[0] if condition else None
        vae = self.vae
        if vae.analytic_kl:
            z_mean, z_log_var = vae.encode_tensors(images, condition)
            z = z_mean[:, None, :] + ops.exp(0.5 * z_log_var[:, None, :]) * epsilon
            log_px_given_z, log_prior_ratio = losses.importance_log_terms(
                images, vae.decode_samples(z, condition), z, z_mean, z_log_var, vae.pixel_likelihood
            )
            return log_px_given_z, log_prior_ratio, losses.kl_divergence(z_mean, z_log_var)
        z, log_prior_ratio, _, _ = vae.latents.sample(images, ops.shape(epsilon)[1], epsilon)
        log_px_given_z = -losses.reconstruction_loss(
            images[:, None], vae.decode_samples(z), vae.pixel_likelihood
        )
        return log_px_given_z, log_prior_ratio, -ops.mean(log_prior_ratio, axis=1)


def check_numbers(vae, dataset, binarize, data_dir=None, images=200, iw_samples=100, seed=0):
    """-ELBO and IWAE NLL of the first `images` test images, rounded to 4 places
    (the check each pretrained model records, `pretrained.CHECK`)."""
    x, labels = data.load_split(dataset, "test", data_dir=data_dir, limit=images, binarization=binarize)
    result = evaluate_likelihood(
        vae, x, labels=labels if vae.conditional else None, iw_samples=iw_samples, seed=seed
    )
    return {"neg_elbo": round(result["neg_elbo"], 4), "iw_nll": round(result["iw_nll"], 4)}


def evaluation_scope(topology):
    """The block in which models are loaded and run for evaluation: the devices
    of one process (`topology.scope()`); with several processes, each on its own."""
    return topology.scope() if topology.processes == 1 else one_device()


def _logmeanexp(values, axis):
    """log(mean(exp(values))) along `axis`, without overflow, in float64."""
    values = np.asarray(values, dtype="float64")
    peak = values.max(axis=axis, keepdims=True)
    return np.log(np.exp(values - peak).mean(axis=axis)) + np.squeeze(peak, axis)


def evaluate_likelihood(
    vae, images, labels=None, iw_samples=5000, seed=0, max_rows=MAX_ROWS, verbose=0,
    topology=None,
):
    """Estimates the negative ELBO and log-likelihood of `images` under `vae`.

    The means over the images of `importance_estimates` (see there for the
    arguments), with bits per dimension and the active units.

    Returns:
        A dict of floats, each a mean over the images, in nats unless noted:
        `neg_elbo`, `reconstruction`, `kl`, `iw_nll`, `bits_per_dim`, and
        `active_units` (a count, over the `code_dim` units of z), `latent_dim`
        (`code_dim`: all layers), `iw_samples`, `num_examples`, `seed`.
    """
    topology = topology or Topology()
    per_image = importance_estimates(vae, images, labels, iw_samples, seed, max_rows, verbose, topology)
    iw_nll = float(per_image["nll"].mean())
    with evaluation_scope(topology):
        z_means = encoded_means(vae, pixels.as_unit(images), labels)
    return {
        "neg_elbo": float((per_image["reconstruction"] + per_image["kl"]).mean()),
        "reconstruction": float(per_image["reconstruction"].mean()),
        "kl": float(per_image["kl"].mean()),
        "iw_nll": iw_nll,
        "bits_per_dim": bits_per_dim(iw_nll, vae.image_shape),
        "active_units": active_units(z_means),
        "latent_dim": vae.code_dim,
        "iw_samples": int(iw_samples),
        "num_examples": int(len(images)),
        "seed": int(seed),
    }


def bits_per_dim(nll, image_shape):
    """Nats per image as bits per pixel and channel: NLL / (D ln 2)."""
    return float(nll) / (math.prod(image_shape) * math.log(2.0))


def importance_estimates(
    vae, images, labels=None, iw_samples=5000, seed=0, max_rows=MAX_ROWS, verbose=0,
    topology=None, sampler=None,
):
    """-log p(x) and the ELBO's two terms of each image, by importance sampling.

    Works in batches: each forward pass decodes at most `max_rows` latent
    vectors per device, so k = 5000 over 10 000 images fits in a few
    hundred MB. The noise is drawn image by image in the same order however
    the work is split, so any number of devices gives the one-device numbers.

    Args:
        vae: a trained `VAE` (built in `topology.scope()` when parallel).
        images: array `(n, *vae.image_shape)`: uint8 levels or values in
            [0, 1] (`keras_vae.pixels`); binary pixels for a Bernoulli
            likelihood, 8-bit ones for the logistics.
        labels: integer labels `(n,)`, for a conditional VAE only (which
            then estimates the conditional likelihood -log p(x|y)).
        iw_samples: importance samples k per image (5000 in Burda et al.).
        seed: seed of NumPy's generator for the noise.
        max_rows: latent vectors per forward pass and device (memory vs. speed).
        verbose: 1 shows a progress bar over the images.
        topology: a `parallel.Topology` to split the images over: each
            pass takes one batch per device, and the processes of a torch
            run take turns (default: one device).
        sampler: the `ImportanceSampler` of `vae`, for a caller that
            estimates often (its compiled step is kept); default a new one.

    Returns:
        A dict of float64 arrays `(n,)`, in nats: `nll` (the importance-
        weighted estimate), `reconstruction` and `kl` (the negative ELBO's
        terms).
    """
    topology = topology or Topology()
    images = pixels.as_unit(images)
    if iw_samples < 1:
        raise ValueError(f"iw_samples must be >= 1, got {iw_samples}")
    condition = vae.one_hot(labels, len(images))
    if sampler is None:
        with evaluation_scope(topology):
            sampler = ImportanceSampler(vae)
    rng = np.random.default_rng(seed)
    chunk = min(iw_samples, max_rows)
    group = max(1, max_rows // chunk)  # images per device and pass
    # One batch per device and pass; with several processes, one batch per
    # process and pass, each on its own device.
    local_devices = topology.devices if topology.processes == 1 else 1
    groups = range(0, len(images), group)
    mine = []  # (first image, nll, reconstruction, kl) of this process's groups
    pending = []  # groups waiting for one pass over the local devices
    progress = keras.utils.Progbar(len(images), verbose=verbose, unit_name="image")
    for index, start in enumerate(groups):
        x = images[start : start + group]
        # Every process draws every group's noise, in the one-device order.
        epsilon = np.concatenate(
            [
                rng.standard_normal((len(x), min(chunk, iw_samples - first), vae.code_dim), dtype="float32")
                for first in range(0, iw_samples, chunk)
            ],
            axis=1,
        )
        if index % topology.processes == topology.rank:
            pending.append((start, x, epsilon))
        if len(pending) == local_devices or (pending and index == len(groups) - 1):
            with evaluation_scope(topology):
                mine += _importance_pass(sampler, pending, condition, iw_samples, chunk)
            progress.add(sum(len(x) for _, x, _ in pending) * topology.processes)
            pending = []
    per_image = np.zeros((3, len(images)))  # each process fills its images' columns
    for start, *values in mine:
        per_image[:, start : start + len(values[0])] = values
    nll, reconstruction, kl = topology.sum_over_processes(per_image)
    return {"nll": nll, "reconstruction": reconstruction, "kl": kl}


def _importance_pass(sampler, pending, condition, iw_samples, chunk):
    """One forward pass per chunk of samples over the pending groups of images.

    The groups are stacked (one per device); under a JAX `DataParallel` the
    rows are padded to a multiple of the devices, whose results are dropped.

    Returns:
        A list of `(first image, nll, reconstruction, kl)`, one per group.
    """
    sizes = [len(x) for _, x, _ in pending]
    x = np.concatenate([x for _, x, _ in pending])
    epsilon = np.concatenate([e for _, _, e in pending])
    extra = []
    if condition is not None:
        extra = [np.concatenate([condition[start : start + n] for (start, _, _), n in zip(pending, sizes)])]
    rows = len(x)
    multiple = batch_multiple()
    x, _ = pad_rows(x, multiple)
    epsilon, _ = pad_rows(epsilon, multiple)
    extra = [pad_rows(e, multiple)[0] for e in extra]
    log_weights, log_px, kl_sum = [], [], 0.0
    for first in range(0, iw_samples, chunk):
        count = min(chunk, iw_samples - first)
        log_px_given_z, log_prior_ratio, chunk_kl = (
            ops.convert_to_numpy(t)[:rows]
            for t in sampler.predict_on_batch([x, epsilon[:, first : first + count], *extra])
        )
        log_px.append(log_px_given_z)
        log_weights.append(log_px_given_z.astype("float64") + log_prior_ratio)
        kl_sum = kl_sum + chunk_kl.astype("float64") * count
    nll = -_logmeanexp(np.concatenate(log_weights, axis=1), axis=1)
    reconstruction = -np.concatenate(log_px, axis=1).astype("float64").mean(1)
    kl = kl_sum / iw_samples
    bounds = np.cumsum([0, *sizes])
    return [
        (start, nll[a:b], reconstruction[a:b], kl[a:b])
        for (start, _, _), a, b in zip(pending, bounds[:-1], bounds[1:])
    ]


def encoded_means(vae, images, labels=None, batch_size=512):
    """`vae.encode(images)`'s means, on one device or split over many (the
    rows padded to a multiple of the devices and the padding dropped)."""
    multiple = batch_multiple()
    padded, n = pad_rows(images, multiple)
    if labels is not None:
        labels = pad_rows(np.asarray(labels), multiple)[0]
    z_means, _ = vae.encode(padded, labels, batch_size=max(multiple, batch_size - batch_size % multiple))
    return z_means[:n]


def active_units(z_means, threshold=ACTIVE_UNIT_THRESHOLD):
    """Latent dimensions whose posterior mean varies across the data.

    Args:
        z_means: array `(n, latent_dim)` of E_q[z|x] for n examples.
        threshold: minimum variance across examples (0.01, Burda et al.).

    Returns:
        The number of dimensions with Cov_x(E_q[z_i|x]) > threshold.
    """
    return int((np.var(np.asarray(z_means, dtype="float64"), axis=0) > threshold).sum())
