"""The latent space as the pictures and the explorer show it.

- `latent_axes`: the directions to look along: the latent dims themselves
  when there are few, else the principal directions of the posterior means;
- `map_points`: each image's place on a 2-D map along the first two axes;
- `path`: codes between two codes, on a straight line or a great circle.

NumPy only: the model gives the codes, these functions arrange them.
"""

import numpy as np


def latent_axes(z_means, count=2):
    """The first `count` axes of the latent space to draw or move along.

    Args:
        z_means: array `(n, latent_dim)` of posterior means.
        count: the axes wanted; the latent dims themselves when
            `latent_dim <= count`, else the principal directions.

    Returns:
        A tuple `(center, axes, scales, label)`: the mean of `z_means`, unit
        vectors `(min(count, latent_dim), latent_dim)`, the standard
        deviation of the data along each, and a label for titles.
    """
    z_means = np.asarray(z_means, dtype="float64")
    center = z_means.mean(0)
    latent_dim = z_means.shape[1]
    if latent_dim <= count:
        dims = "the latent dim" if latent_dim == 1 else f"the {_number(latent_dim)} latent dims"
        axes, label = np.eye(latent_dim), f"{dims} of E[z|x]"
    else:
        _, _, vt = np.linalg.svd(z_means - center, full_matrices=False)
        axes = vt[:count]
        label = f"first {_number(count)} principal components of E[z|x]"
    scales = ((z_means - center) @ axes.T).std(0)
    return center, axes, scales, label


def _number(count):
    return {1: "one", 2: "two", 3: "three"}.get(count, str(count))


def map_points(z_means, labels=None, center=None, axes=None):
    """Each code's place on a 2-D map, and the names of the map's axes.

    The code itself in two dimensions; its coordinates along the first two
    principal axes in more (`latent_axes`, or the `center` and `axes`
    given); in one dimension the code against the label, jittered, so the
    classes sit in rows.

    Returns:
        A pair: an array `(n, 2)`, and the names of its two coordinates.
    """
    z_means = np.asarray(z_means, dtype="float64")
    if z_means.shape[1] == 1:
        labels = np.zeros(len(z_means)) if labels is None else np.maximum(labels, 0)
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(z_means))
        return np.stack([z_means[:, 0], labels + jitter], axis=1), ("z[0]", "label (jittered)")
    if z_means.shape[1] == 2:
        return z_means, ("z[0]", "z[1]")
    if axes is None:
        center, axes, _, _ = latent_axes(z_means)
    return (z_means - center) @ np.asarray(axes)[:2].T, ("PC 1", "PC 2")


def path(start, end, steps, spherical=False):
    """`steps` codes from `start` to `end`, both included.

    Args:
        start, end: arrays `(code_dim,)`.
        steps: the number of codes, at least 2.
        spherical: follow the great circle between the two (slerp,
            Shoemake 1985, as in White 2016's "Sampling generative
            networks"): under a Gaussian prior the midpoints keep a typical
            norm, where the straight line's shrink towards the origin.

    Returns:
        A float32 array `(steps, code_dim)`.
    """
    start, end = np.asarray(start, dtype="float64"), np.asarray(end, dtype="float64")
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    norms = np.linalg.norm(start) * np.linalg.norm(end)
    angle = np.arccos(np.clip(start @ end / norms, -1.0, 1.0)) if norms > 0 else 0.0
    if not spherical or angle < 1e-6:  # (nearly) parallel: the line is the circle
        return ((1 - weights) * start + weights * end).astype("float32")
    codes = (np.sin((1 - weights) * angle) * start + np.sin(weights * angle) * end) / np.sin(angle)
    return codes.astype("float32")
