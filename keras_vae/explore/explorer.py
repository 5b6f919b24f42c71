"""What the explorer computes, from a model and the images of its test split.

No web here: every method takes and returns NumPy arrays and plain numbers
(`server.py` turns them into JSON and PNG), so the tests compare each one
with what `model.encode`, `model.decode` and the evaluator give.

- the latent map: the test images' posterior means on two axes
  (`latent_space.map_points`), and for a point of the map its decoding and
  the test images nearest to it;
- sliders: one per latent dimension up to `MAX_SLIDERS`, else one per
  principal direction (in units of the data's spread along it); a code is
  `offset + sum_i value_i * direction_i`;
- a drawing: its posterior, reconstruction and -log p(x) by importance
  sampling (k = `IW_SAMPLES`), beside the same number for the first
  `TEST_IMAGES` test images (the protocol of the pretrained models' check);
- paths between the posterior means of two test images.

The posterior means and the test numbers are computed once and cached in
a file (`Explorer.load`), keyed by the model file's hash and the data.
"""

import numpy as np

from keras_vae import evaluation, latent_space, pixels

#: Sliders at most: one per latent dim up to this, else principal directions.
MAX_SLIDERS = 16
#: Test images shown nearest to a point of the map.
NEAREST = 8
#: The test images whose -log p(x) the drawing is compared with, and k:
#: the protocol of the pretrained models' recorded check (`pretrained.CHECK`).
TEST_IMAGES = 200
IW_SAMPLES = 100
#: Codes on an interpolation path at most.
MAX_STEPS = 32


class Explorer:
    """A trained VAE and its test images, as the explorer's views use them.

    Args:
        model: a trained `VAE`.
        images: the test split `(n, *image_shape)` that the map shows.
        labels: their integer labels `(n,)`.
        z_means: the posterior means of `images` (`posterior_means`).
        test_nll: -log p(x) of each of the first test images, as the
            likelihood is measured (`likelihoods_of`).
        binary: whether the model's pixels are binary, so that -log p(x)
            is a likelihood (else it is a loss on grey levels).
    """

    def __init__(self, model, images, labels, z_means, test_nll, binary):
        self.model = model
        self.images = np.asarray(images, dtype="float32")
        self.labels = np.asarray(labels)
        self.z_means = np.asarray(z_means, dtype="float32")
        self.test_nll = np.asarray(test_nll, dtype="float64")
        self.binary = binary
        self.sampler = evaluation.ImportanceSampler(model)  # one compiled step for every drawing
        count = min(model.code_dim, MAX_SLIDERS)
        self.center, self.axes, self.scales, _ = latent_space.latent_axes(self.z_means, count)
        self.scales = np.maximum(self.scales, 1e-12)  # a direction the data do not spread along
        self.principal = model.code_dim > MAX_SLIDERS
        # The map: the two latent dims, or the first two principal directions.
        self.map_center, self.map_axes, _, self.map_label = latent_space.latent_axes(self.z_means)
        self.points, self.point_names = latent_space.map_points(
            self.z_means, self.labels, self.map_center, self.map_axes
        )

    # The views ------------------------------------------------------------

    def directions(self):
        """The sliders' directions `(count, code_dim)` and their offset `(code_dim,)`."""
        if not self.principal:
            return np.eye(self.model.code_dim), np.zeros(self.model.code_dim)
        return self.axes * self.scales[:, None], self.center

    def decode(self, values, offset=None, label=None):
        """The image of the sliders: `offset + sum_i values[i] * direction_i`.

        Returns:
            A pair `(z, image)`: the code `(code_dim,)` and its decoding.
        """
        directions, default = self.directions()
        values = self._vector(values, len(directions), "slider values")
        offset = default if offset is None else self._vector(offset, self.model.code_dim, "offset")
        z = (offset + values @ directions).astype("float32")
        return z, self._decoded(z[None], label)[0]

    def prior_sample(self, seed, label=None):
        """A code from the prior as slider values and offset, and its image.

        The offset carries what the sliders cannot reach, so that the
        sliders' code is the sample itself.
        """
        z = self.model.sample_prior(1, seed=seed)[0].astype("float64")
        directions, offset = self.directions()
        if self.principal:
            values = (z - offset) @ directions.T / self.scales**2
            offset = z - values @ directions
        else:
            values = z
        return values, offset, self._decoded(z[None].astype("float32"), label)[0]

    def map_point(self, x, y, label=None):
        """A point of the latent map: its code, its image and the nearest test images.

        Returns:
            A tuple `(z, image, nearest)`, `nearest` the indices of the
            `NEAREST` test images closest to the point on the map.
        """
        point = self._vector([x, y], 2, "a point of the map")
        code_dim = self.model.code_dim
        if code_dim == 1:
            z = point[:1]
        elif code_dim == 2:
            z = point
        else:
            z = self.map_center + point @ self.map_axes
        nearest = np.argsort(((self.points - point) ** 2).sum(1), kind="stable")[:NEAREST]
        z = z.astype("float32")
        return z, self._decoded(z[None], label)[0], nearest

    def drawing(self, image, label=None, seed=0):
        """What the model makes of a picture at its input size.

        Args:
            image: array `image_shape` in [0, 1] (grey levels; a binary
                model sees it thresholded at 1/2), or `(H, W)` grey levels,
                repeated over a colour model's channels.
            label: its class, for a conditional model.
            seed: seed of the importance samples.

        Returns:
            A dict: the `input` as the model sees it, its `reconstruction`
            (decoded posterior mean), the posterior `mean` and `std`, `nll`
            in nats and `bits_per_dim`, and `rank`: the share of the test
            images with a lower -log p(x).
        """
        x = pixels.as_unit(image)
        channels = self.model.image_shape[-1]
        if x.ndim == 2 or x.shape[-1] != channels:  # a grey drawing, for a colour model
            x = np.repeat(x.reshape(*self.model.image_shape[:2], 1), channels, axis=-1)
        x = x.reshape(1, *self.model.image_shape)
        if self.binary:
            x = (x > 0.5).astype("float32")
        labels = self._labels(label, 1)
        mean, log_var = self.model.encode(x, labels)
        nll = evaluation.importance_estimates(
            self.model, x, labels, iw_samples=IW_SAMPLES, seed=seed, sampler=self.sampler
        )["nll"][0]
        return {
            "input": x[0],
            "reconstruction": self.model.decode(mean, labels)[0],
            "mean": mean[0],
            "std": np.exp(0.5 * log_var[0]),
            "nll": float(nll),
            "bits_per_dim": evaluation.bits_per_dim(nll, self.model.image_shape),
            "rank": float((self.test_nll < nll).mean()),
        }

    def interpolate(self, first, second, steps, label=None):
        """Decodings on the straight and the spherical path between the
        posterior means of test images `first` and `second`.

        A conditional model decodes both paths as `label`, by default the
        first image's.

        Returns:
            A pair of arrays `(steps, *image_shape)`: linear, spherical.
        """
        for index in (first, second):
            if not 0 <= index < len(self.images):
                raise ValueError(f"test image {index} is not in 0..{len(self.images) - 1}")
        if not 2 <= steps <= MAX_STEPS:
            raise ValueError(f"steps must be in 2..{MAX_STEPS}, got {steps}")
        if self.model.conditional and label is None:
            label = int(self.labels[first])
        start, end = self.z_means[first], self.z_means[second]
        return tuple(
            self._decoded(latent_space.path(start, end, steps, spherical), label)
            for spherical in (False, True)
        )

    # Helpers --------------------------------------------------------------

    def _labels(self, label, count):
        if not self.model.conditional:
            return None
        if label is None or not 0 <= int(label) < self.model.num_classes:
            raise ValueError(f"a conditional model needs a label in 0..{self.model.num_classes - 1}")
        return np.full(count, int(label))

    def _decoded(self, z, label):
        return self.model.decode(z, self._labels(label, len(z)))

    @staticmethod
    def _vector(values, size, what):
        vector = np.asarray(values, dtype="float64")
        if vector.shape != (size,) or not np.isfinite(vector).all():
            raise ValueError(f"{what}: {size} finite numbers are needed")
        return vector


def posterior_means(model, images, labels):
    """The posterior means of `images` (with their labels for a conditional model)."""
    return evaluation.encoded_means(model, images, labels if model.conditional else None)


def likelihoods_of(model, images, labels, seed=0):
    """-log p(x) of each image by importance sampling, k = `IW_SAMPLES`."""
    labels = labels if model.conditional else None
    return evaluation.importance_estimates(model, images, labels, iw_samples=IW_SAMPLES, seed=seed)["nll"]
