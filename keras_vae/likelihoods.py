"""Pixel likelihoods p(x|z): what the decoder's outputs mean, in `keras.ops`.

The decoder ends in `parameters` channels per pixel (`model.config.
decoder_channels`); a likelihood turns them into -log p(x|z) in nats, into
the image the distribution expects, and into sampled pixels. Three
(`model.config.LIKELIHOODS`):

- `bernoulli`: one logit per pixel and channel, p(x=1) = sigmoid(logit). A
  likelihood of binary pixels; on grey levels in [0, 1] it is the binary
  cross-entropy of the original design, a loss but not a likelihood.
- `logistic`: a discretized logistic per pixel and channel on the 256
  levels k/255 (Kingma et al., 2016; Salimans et al., 2017): a mean and a
  log-scale each; level k gets the logistic's mass between (k - 1/2)/255
  and (k + 1/2)/255, with the edges open (level 0 takes everything below,
  255 everything above), so the 256 probabilities sum to one.
- `logistic-mixture`: K discretized logistics per pixel with shared mixture
  weights (Salimans et al., 2017). In colour each channel's mean depends
  linearly on the previous channels' values (G on R, B on R and G), so a
  pixel's colours are modelled jointly, not channel by channel.

Images are pixel values in [0, 1] (level k is k/255). Every function keeps
the leading axes, so a batch `(b, H, W, ·)` and k samples per image `(b, k,
H, W, ·)` work alike, with the images broadcast against the samples.
"""

import numpy as np
from keras import ops

from keras_vae.model.config import LIKELIHOODS, decoder_channels
from keras_vae.pixels import LEVELS
# A logistic's log-scale is clipped to [MIN_LOG_SCALE, MAX_LOG_SCALE]: below
# e^-7 (a quarter of a level) one level holds nearly all of the mass anyway,
# above e^7 the distribution is flat over [0, 1].
MIN_LOG_SCALE, MAX_LOG_SCALE = -7.0, 7.0


def _flat_pixels(tensor, event_axes=3):
    """`(..., H, W, C)` -> `(..., H * W * C)`."""
    return ops.reshape(tensor, (*ops.shape(tensor)[:-event_axes], -1))


def bernoulli_nll(images, logits):
    """Bernoulli negative log-likelihood -log p(x|z), per example.

    The binary cross-entropy of the pixels given the decoder's logits,
    summed over pixels: softplus(l) - x * l, written in the stable form
    max(l, 0) + log(1 + exp(-|l|)) - x * l. It accepts grey levels x in
    [0, 1] as well as binary pixels.

    The pixels are flattened before the sum, and softplus is spelled out:
    XLA on CPU (JAX) fuses a sum over one flat axis of this form far better
    than the same sum over `(H, W, 1)` with `softplus`, which is what makes
    the k = 5000 likelihood estimate fast on JAX (docs/performance.md).

    Args:
        images: tensor of pixel values in [0, 1], shape `(..., H, W, C)`,
            broadcastable to `logits` (e.g. `(batch, 1, H, W, C)` against
            `k` samples of logits per image).
        logits: decoder logits, shape `(..., H, W, C)`.

    Returns:
        A tensor of the leading shape `(...)`, e.g. `(batch,)`.
    """
    logits = _flat_pixels(ops.convert_to_tensor(logits))
    images = _flat_pixels(ops.cast(images, logits.dtype))
    per_pixel = ops.relu(logits) - images * logits + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(per_pixel, axis=-1)


def discretized_logistic_log_prob(x, mean, log_scale):
    """log P(x) of the logistic(mean, exp(log_scale)) discretized on 256 levels.

    For an interior level, P = sigmoid(u) - sigmoid(l) with u, l the bin's
    edges standardized; it is computed as log sigmoid(u) + log sigmoid(-l) +
    log(1 - exp(l - u)), an identity with no cancellation, so tiny
    probabilities keep their digits and the gradient stays finite. Level 0
    is log sigmoid(u), level 255 log sigmoid(-l): the open edges.

    The edges are computed in units of levels, from x rounded to its level
    k: the upper edge of level k and the lower edge of level k + 1 are then
    the same float (k + 1/2), so the probabilities telescope to one in
    float32 too, however narrow the logistic.

    Args:
        x: pixel values k/255, broadcastable against `mean`.
        mean, log_scale: the logistic's location (in the units of x) and
            log-scale (clipped to [`MIN_LOG_SCALE`, `MAX_LOG_SCALE`]).

    Returns:
        The log-probabilities, elementwise, in nats.
    """
    mean = ops.convert_to_tensor(mean)
    log_scale = ops.clip(ops.convert_to_tensor(log_scale), MIN_LOG_SCALE, MAX_LOG_SCALE)
    top = LEVELS - 1
    inverse_scale = ops.exp(-log_scale) / top  # per level
    level = ops.round(ops.cast(x, mean.dtype) * top)
    centered = level - mean * top
    upper = inverse_scale * (centered + 0.5)
    lower = inverse_scale * (centered - 0.5)
    log_cdf_upper = -ops.softplus(-upper)  # log sigmoid(upper)
    log_survival_lower = -ops.softplus(lower)  # log (1 - sigmoid(lower))
    log_width = ops.log(-ops.expm1(-inverse_scale))  # log (1 - exp(lower - upper))
    interior = log_cdf_upper + log_survival_lower + log_width
    return ops.where(
        level < 0.5, log_cdf_upper, ops.where(level > top - 0.5, log_survival_lower, interior)
    )


def clipped_logistic_mean(mean, log_scale):
    """E[clip(Y, 0, 1)] for Y ~ logistic(mean, exp(log_scale)), in closed form.

    s * (softplus(mean / s) - softplus((mean - 1) / s)): the integral of
    P(Y > t) over [0, 1]. Rounding Y to the nearest level (the discretized
    distribution) moves the mean by less than half a level, 1/510.
    """
    mean = ops.convert_to_tensor(mean)
    scale = ops.exp(ops.clip(ops.convert_to_tensor(log_scale), MIN_LOG_SCALE, MAX_LOG_SCALE))
    return scale * (ops.softplus(mean / scale) - ops.softplus((mean - 1.0) / scale))


class Likelihood:
    """p(x|z) of a decoder with `parameters` output channels per pixel.

    Args:
        channels: the image's channels C.
        components: mixture components K (`logistic-mixture` only).
    """

    name = None
    #: True when the likelihood is of binary pixels (Bernoulli).
    binary = False

    def __init__(self, channels=1, components=1):
        self.channels = channels
        self.components = components
        self.parameters = decoder_channels(self.name, channels, components)

    def negative_log_likelihood(self, images, outputs):
        """-log p(x|z) in nats per example: images `(..., H, W, C)`, outputs
        `(..., H, W, parameters)`; returns `(...)`."""
        raise NotImplementedError

    def mean(self, outputs):
        """The image the distribution expects, `(..., H, W, C)` in [0, 1]."""
        raise NotImplementedError

    def sample(self, outputs, rng):
        """Pixels drawn from p(x|z) with NumPy's generator `rng`, in [0, 1].

        Args:
            outputs: NumPy array `(n, H, W, parameters)`.
            rng: a `numpy.random.Generator`.

        Returns:
            A float32 NumPy array `(n, H, W, C)`: binary pixels for a
            Bernoulli decoder, levels k/255 for the logistics.
        """
        raise NotImplementedError


class Bernoulli(Likelihood):
    """One logit per pixel and channel (see the module docstring)."""

    name = "bernoulli"
    binary = True

    def negative_log_likelihood(self, images, outputs):
        return bernoulli_nll(images, outputs)

    def mean(self, outputs):
        return ops.sigmoid(outputs)

    def sample(self, outputs, rng):
        probabilities = 1.0 / (1.0 + np.exp(-np.asarray(outputs, dtype="float64")))
        return (rng.random(probabilities.shape) < probabilities).astype("float32")


class DiscretizedLogistic(Likelihood):
    """A mean and a log-scale per pixel and channel: the first C output
    channels are the means, the last C the log-scales."""

    name = "logistic"

    def _split(self, outputs):
        outputs = ops.convert_to_tensor(outputs)
        return outputs[..., : self.channels], outputs[..., self.channels :]

    def negative_log_likelihood(self, images, outputs):
        mean, log_scale = self._split(outputs)
        log_prob = discretized_logistic_log_prob(images, mean, log_scale)
        return -ops.sum(_flat_pixels(log_prob), axis=-1)

    def mean(self, outputs):
        return clipped_logistic_mean(*self._split(outputs))

    def sample(self, outputs, rng):
        outputs = np.asarray(outputs, dtype="float64")
        mean, log_scale = outputs[..., : self.channels], outputs[..., self.channels :]
        return _sample_levels(mean, log_scale, rng)


def _sample_levels(mean, log_scale, rng):
    """Levels k/255 drawn from discretized logistics (NumPy, float64 inputs).

    A logistic sample rounded to the nearest level and clipped to [0, 1]:
    exactly the discretized distribution with open edges.
    """
    scale = np.exp(np.clip(log_scale, MIN_LOG_SCALE, MAX_LOG_SCALE))
    u = rng.uniform(1e-7, 1.0 - 1e-7, size=mean.shape)
    y = mean + scale * (np.log(u) - np.log1p(-u))
    return (np.clip(np.round(y * (LEVELS - 1)), 0, LEVELS - 1) / (LEVELS - 1)).astype("float32")


class LogisticMixture(Likelihood):
    """K discretized logistics per pixel (see the module docstring).

    The output channels are, in order: K mixture logits; K * C means; K * C
    log-scales; and, in colour, K * C(C-1)/2 coefficients (tanh-squashed) of
    each channel's mean on the previous channels' values: (1, 0), (2, 0),
    (2, 1), ... .
    """

    name = "logistic-mixture"

    def _split(self, outputs):
        """`(log weights (..., K), means, log-scales (..., K, C), coefficients
        (..., K, pairs))` from the decoder's outputs."""
        outputs = ops.convert_to_tensor(outputs)
        k, c = self.components, self.channels
        lead = ops.shape(outputs)[:-1]
        logits = outputs[..., :k]
        means = ops.reshape(outputs[..., k : k + k * c], (*lead, k, c))
        log_scales = ops.reshape(outputs[..., k + k * c : k + 2 * k * c], (*lead, k, c))
        pairs = c * (c - 1) // 2
        coefficients = ops.reshape(ops.tanh(outputs[..., k + 2 * k * c :]), (*lead, k, pairs))
        return logits - ops.logsumexp(logits, axis=-1, keepdims=True), means, log_scales, coefficients

    def _chain(self, means, coefficients, value_of):
        """Each channel's centre: its mean plus the coefficients times the
        previous channels' values, where `value_of(channel, centre)` gives a
        channel's value (observed, expected or drawn). Plain arithmetic, so
        it serves tensors and NumPy arrays alike; returns the centres."""
        centres, values, pair = [], [], 0
        for channel in range(self.channels):
            centre = means[..., channel]
            for earlier in range(channel):
                centre = centre + coefficients[..., pair] * values[earlier]
                pair += 1
            centres.append(centre)
            values.append(value_of(channel, centre))
        return centres

    def negative_log_likelihood(self, images, outputs):
        log_weights, means, log_scales, coefficients = self._split(outputs)
        x = ops.cast(images, means.dtype)[..., None, :]  # (..., H, W, 1, C)
        means = means + ops.zeros_like(x)  # broadcast to the images' leading axes
        centres = ops.stack(self._chain(means, coefficients, lambda c, _: x[..., c]), axis=-1)
        log_prob = ops.sum(discretized_logistic_log_prob(x, centres, log_scales), axis=-1)
        per_pixel = ops.logsumexp(log_weights + log_prob, axis=-1)  # (..., H, W)
        return -ops.sum(_flat_pixels(per_pixel, event_axes=2), axis=-1)

    def mean(self, outputs):
        """The weighted mean of the components' means; in colour each
        channel's dependence is taken at the previous channels' means."""
        log_weights, means, log_scales, coefficients = self._split(outputs)

        def expected(channel, centre):
            return clipped_logistic_mean(centre, log_scales[..., channel])

        centres = self._chain(means, coefficients, expected)
        component_means = ops.stack(
            [expected(c, centre) for c, centre in enumerate(centres)], axis=-1
        )  # (..., K, C)
        return ops.sum(ops.exp(log_weights)[..., None] * component_means, axis=-2)

    def sample(self, outputs, rng):
        log_weights, means, log_scales, coefficients = (
            np.asarray(ops.convert_to_numpy(t), dtype="float64") for t in self._split(outputs)
        )
        gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=log_weights.shape)))
        chosen = np.argmax(log_weights + gumbel, axis=-1)[..., None, None]
        means, log_scales, coefficients = (
            np.take_along_axis(t, chosen, axis=-2)[..., 0, :] for t in (means, log_scales, coefficients)
        )
        drawn = []

        def draw(channel, centre):
            drawn.append(_sample_levels(centre, log_scales[..., channel], rng).astype("float64"))
            return drawn[-1]

        self._chain(means, coefficients, draw)
        return np.stack(drawn, axis=-1).astype("float32")


_CLASSES = {cls.name: cls for cls in (Bernoulli, DiscretizedLogistic, LogisticMixture)}
assert tuple(_CLASSES) == LIKELIHOODS


def get(name="bernoulli", channels=1, components=1):
    """The `Likelihood` called `name` for images of `channels` channels.

    Raises:
        ValueError: an unknown name.
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown likelihood {name!r}; choose from {', '.join(LIKELIHOODS)}")
    return _CLASSES[name](channels, components)

