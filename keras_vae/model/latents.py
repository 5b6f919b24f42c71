"""The latent side of a VAE: priors, and hierarchies of stochastic layers.

Each is a small plain class over layers that the `VAE` owns (so the weights
keep their places in a saved model): a prior has `log_density` and `sample`;
a hierarchy draws z from the posterior with the log prior ratio of each
sample, gives the posterior of the decoder's input, and samples the prior.
A new prior is one class here plus one `ModelConfig.prior` choice.

Every draw for generation is made with NumPy's seeded generator, so the same
model and seed give the same z on every backend.
"""

import numpy as np
from keras import ops

from keras_vae import losses
from keras_vae.networks import float32

# The VampPrior's pseudo-inputs start as grey images near black, as in
# Tomczak & Welling's code (mean 0.05, standard deviation 0.01).
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STDDEV = 0.05, 0.01


def repeat_samples(tensor, samples):
    """`(b, d)` -> `(b, samples, d)`, repeating each row."""
    return ops.repeat(tensor[:, None, :], samples, axis=1)


def gaussian_numpy(rng, mean, log_var):
    """A NumPy draw from N(mean, exp(log_var)), float32."""
    noise = rng.standard_normal(np.shape(mean)).astype("float32")
    return (mean + np.exp(0.5 * log_var) * noise).astype("float32")


class StandardNormal:
    """The prior N(0, I) of the original model; it has no weights."""

    learned = False

    def __init__(self, latent_dim):
        self.latent_dim = latent_dim

    def log_density(self, z, training=False):
        return losses.standard_normal_log_density(z)

    def sample(self, rng, num):
        return rng.standard_normal((num, self.latent_dim)).astype("float32")


class VampPrior:
    """The VampPrior (Tomczak & Welling, 2018): p(z) = (1/K) sum_k q(z|u_k).

    The mixture of the encoder's posteriors of K learned pseudo-inputs u_k,
    images kept in [0, 1] by clipping.

    Args:
        encoder: the encoder q(z|x).
        pseudo_inputs: the variable `(K, *image_shape)` of the u_k.
    """

    learned = True

    def __init__(self, encoder, pseudo_inputs):
        self.encoder = encoder
        self.pseudo_inputs = pseudo_inputs

    def pseudo_images(self):
        """The pseudo-inputs as images, `(K, *image_shape)`, in [0, 1]."""
        return ops.clip(self.pseudo_inputs, 0.0, 1.0)

    def components(self, training=False):
        """The components q(z|u_k): `(means, log_vars)`, each `(K, latent_dim)`."""
        return float32(self.encoder(self.pseudo_images(), training=training))

    def log_density(self, z, training=False):
        return losses.mixture_log_density(z, *self.components(training))

    def sample(self, rng, num):
        """Picks a component uniformly for each z, then draws from it."""
        means, log_vars = (ops.convert_to_numpy(t) for t in self.components())
        chosen = rng.integers(len(means), size=num)
        noise = rng.standard_normal((num, means.shape[1])).astype("float32")
        return (means[chosen] + np.exp(0.5 * log_vars[chosen]) * noise).astype("float32")


class OneLayer:
    """One stochastic layer z: q(z|x), the prior p(z).

    Args:
        encoder: q(z|x) (with the one-hot label for a conditional VAE).
        prior: a prior (`StandardNormal`, `VampPrior`).
        draw: function `(mean, log_var)` -> a reparameterized sample (the
            VAE's `Sampling` layer).
    """

    layers = 1

    def __init__(self, encoder, prior, draw):
        self.encoder, self.prior, self.draw = encoder, prior, draw

    def posterior(self, images, condition=None, training=False):
        """q(z|x) of the decoder's input: `(mean, log_var)`, each `(b, code_dim)`."""
        inputs = images if condition is None else [images, condition]
        return float32(self.encoder(inputs, training=training))

    def _draw(self, mean, log_var, epsilon):
        """mean + std * epsilon; the sampling layer draws epsilon when None."""
        if epsilon is None:
            return self.draw([mean, log_var])
        return mean + ops.exp(0.5 * log_var) * epsilon

    def _top(self, images, samples, epsilon, training):
        """Draws the top layer: `(z, log p - log q, mean, log_var)`."""
        mean, log_var = float32(self.encoder(images, training=training))
        means, log_vars = repeat_samples(mean, samples), repeat_samples(log_var, samples)
        z = self._draw(means, log_vars, epsilon)  # (b, k, d)
        log_ratio = self.prior.log_density(z, training) - losses.gaussian_log_density(
            z, means, log_vars
        )
        return z, log_ratio, mean, log_var

    def sample(self, images, samples, epsilon=None, training=False):
        """Draws `samples` latent vectors per image from q and weighs them.

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
        return self._top(images, samples, epsilon, training)

    def sample_prior(self, rng, num, predict):
        """`num` vectors z from the prior, `(num, code_dim)` float32.

        Args:
            rng: a NumPy generator.
            num: how many.
            predict: function `(network, inputs)` -> NumPy outputs, to run
                the networks of the lower layers (unused for one layer).
        """
        return self.prior.sample(rng, num)


class TwoLayers(OneLayer):
    """Two stochastic layers, the HVAE of Tomczak & Welling (2018).

    The generative path is p(z2) p(z1|z2) p(x|z1, z2), the inference path
    q(z2|x) q(z1|x, z2); the decoder sees z = [z1, z2].

    Args:
        encoder: q(z2|x).
        prior: the prior of z2.
        draw: as `OneLayer`'s.
        encoder_z1: q(z1|x, z2), the encoder's architecture with z2 joined
            like a conditional VAE's label.
        prior_z1: p(z1|z2) (`networks.build_conditional_prior`).
        latent_dim: the size of each layer.
    """

    layers = 2

    def __init__(self, encoder, prior, draw, encoder_z1, prior_z1, latent_dim):
        super().__init__(encoder, prior, draw)
        self.encoder_z1, self.prior_z1 = encoder_z1, prior_z1
        self.latent_dim = latent_dim

    def posterior(self, images, condition=None, training=False):
        """z = [z1, z2] with q(z2|x), and q(z1|x, z2) at z2's posterior mean.

        What `encode`, the pictures and the exported encoder use; works on
        tensors and on Keras inputs.
        """
        mean, log_var = float32(self.encoder(images, training=training))
        mean1, log_var1 = float32(self.encoder_z1([images, mean], training=training))
        return (
            ops.concatenate([mean1, mean], axis=-1),
            ops.concatenate([log_var1, log_var], axis=-1),
        )

    def sample(self, images, samples, epsilon=None, training=False):
        d = self.latent_dim
        top_eps = None if epsilon is None else epsilon[..., d:]
        z_top, log_ratio, top_mean, top_log_var = self._top(images, samples, top_eps, training)
        batch = ops.shape(top_mean)[0]
        flat_top = ops.reshape(z_top, (-1, d))
        repeated = ops.repeat(images, samples, axis=0)  # image-major, as the reshape
        mean1, log_var1 = float32(self.encoder_z1([repeated, flat_top], training=training))
        bottom_eps = None if epsilon is None else ops.reshape(epsilon[..., :d], (-1, d))
        z1 = self._draw(mean1, log_var1, bottom_eps)
        prior_mean1, prior_log_var1 = float32(self.prior_z1(flat_top, training=training))
        log_ratio1 = losses.gaussian_log_density(
            z1, prior_mean1, prior_log_var1
        ) - losses.gaussian_log_density(z1, mean1, log_var1)
        log_ratio = log_ratio + ops.reshape(log_ratio1, (batch, samples))
        z = ops.reshape(ops.concatenate([z1, flat_top], axis=-1), (batch, samples, 2 * d))
        return z, log_ratio, top_mean, top_log_var

    def sample_prior(self, rng, num, predict):
        """z2 from its prior, then z1 from p(z1|z2): `[z1, z2]`."""
        z2 = self.prior.sample(rng, num)
        means, log_vars = (np.asarray(t) for t in predict(self.prior_z1, z2))
        return np.concatenate([gaussian_numpy(rng, means, log_vars), z2], axis=1)
