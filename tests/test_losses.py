"""The objective against independent NumPy computations."""

import keras
import numpy as np
import pytest

from conftest import gradient
from keras_vae import elbo_losses, kl_divergence, reconstruction_loss


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_kl_matches_monte_carlo_estimate():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(5, 3)).astype("float32")
    log_var = rng.normal(scale=0.7, size=(5, 3)).astype("float32")
    analytic = to_numpy(kl_divergence(mean, log_var))

    # KL(q || p) = E_q[log q(z) - log p(z)], estimated with many draws.
    draws = 200_000
    std = np.exp(0.5 * log_var)
    eps = rng.standard_normal((draws, *mean.shape))
    z = mean + std * eps
    log_q = (-0.5 * (eps**2 + np.log(2 * np.pi) + log_var)).sum(-1)
    log_p = (-0.5 * (z**2 + np.log(2 * np.pi))).sum(-1)
    terms = log_q - log_p
    estimate = terms.mean(0)
    standard_error = terms.std(0) / np.sqrt(draws)
    np.testing.assert_array_less(np.abs(analytic - estimate), 5 * standard_error + 1e-4)


def test_kl_is_zero_at_the_prior():
    zeros = np.zeros((3, 4), dtype="float32")
    np.testing.assert_allclose(to_numpy(kl_divergence(zeros, zeros)), 0.0, atol=1e-7)


def test_reconstruction_is_binary_cross_entropy_summed_over_pixels():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=4.0, size=(3, 28, 28, 1)).astype("float32")
    images = rng.random((3, 28, 28, 1)).astype("float32")
    p = 1.0 / (1.0 + np.exp(-logits.astype("float64")))
    expected = -(images * np.log(p) + (1 - images) * np.log1p(-p)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(
        to_numpy(reconstruction_loss(images, logits)), expected, rtol=1e-5
    )


def test_reconstruction_is_stable_for_extreme_logits():
    logits = np.array([-200.0, 200.0, 0.0], dtype="float32").reshape(1, 1, 3, 1)
    images = np.array([0.0, 1.0, 1.0], dtype="float32").reshape(1, 1, 3, 1)
    value = to_numpy(reconstruction_loss(images, logits))
    np.testing.assert_allclose(value, [np.log(2.0)], rtol=1e-5)


def test_elbo_loss_is_sum_of_batch_means():
    rng = np.random.default_rng(2)
    outputs = {
        "z_mean": rng.normal(size=(4, 2)).astype("float32"),
        "z_log_var": rng.normal(size=(4, 2)).astype("float32"),
        "logits": rng.normal(size=(4, 28, 28, 1)).astype("float32"),
    }
    images = rng.random((4, 28, 28, 1)).astype("float32")
    losses = {k: float(to_numpy(v)) for k, v in elbo_losses(images, outputs).items()}
    recon = to_numpy(reconstruction_loss(images, outputs["logits"])).mean()
    kl = to_numpy(kl_divergence(outputs["z_mean"], outputs["z_log_var"])).mean()
    assert losses["reconstruction_loss"] == pytest.approx(recon, rel=1e-6)
    assert losses["kl_loss"] == pytest.approx(kl, rel=1e-6)
    assert losses["loss"] == pytest.approx(recon + kl, rel=1e-6)


def test_per_example_functions_keep_leading_axes():
    # (batch, k, ...) inputs, as in importance sampling: one value per sample.
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 28, 28, 1)).astype("float32")
    images = rng.random((2, 1, 28, 28, 1)).astype("float32")
    values = to_numpy(reconstruction_loss(images, logits))
    assert values.shape == (2, 5)
    np.testing.assert_allclose(
        values[1, 3], to_numpy(reconstruction_loss(images[1], logits[1, 3:4]))[0], rtol=1e-6
    )
    assert to_numpy(kl_divergence(logits[..., 0, 0, 0], logits[..., 1, 0, 0])).shape == (2,)


def test_reconstruction_gradient_is_sigmoid_minus_pixels():
    # d/dl [softplus(l) - x l] = sigmoid(l) - x: the stable form must keep it.
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=6.0, size=(2, 3, 28, 28, 1)).astype("float32")
    images = rng.random((2, 1, 28, 28, 1)).astype("float32")
    grad = gradient(lambda l: reconstruction_loss(images, l), logits)
    expected = 1.0 / (1.0 + np.exp(-logits.astype("float64"))) - images
    np.testing.assert_allclose(grad, expected, atol=1e-6)
