"""Likelihood evaluation against exact values, binarization, and the pictures."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import run_here
from keras_vae.model import load_model, save_model
from keras_vae import VAE, data, evaluation
from keras_vae.layers import DynamicBinarization
from keras_vae.pixels import as_unit


@pytest.fixture(scope="module")
def one_dim_model(mnist_subset):
    """A small trained VAE with latent_dim=1, whose p(x) can be integrated."""
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=1, hidden_dim=64)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    train = data.binarize(mnist_subset.x_train, seed=1)
    model.fit(train, epochs=10, batch_size=64, verbose=0)
    return model, as_unit(data.binarize(mnist_subset.x_test[:20], seed=0))


def exact_nll(model, images, low=-10.0, high=10.0, points=20001):
    """-log p(x) = -log integral p(x|z) N(z; 0, 1) dz, by the midpoint rule."""
    z = np.linspace(low, high, points)
    step = z[1] - z[0]
    logits = model.decoder.predict(z[:, None].astype("float32"), batch_size=4096, verbose=0)
    logits = logits.reshape(points, -1).astype("float64")
    x = images.reshape(len(images), -1).astype("float64")
    # log p(x|z) = sum_pixels x*l - softplus(l), for every image and grid point.
    log_px_given_z = x @ logits.T - np.logaddexp(0.0, logits).sum(1)[None, :]
    log_joint = log_px_given_z - 0.5 * (z**2 + np.log(2 * np.pi))[None, :] + np.log(step)
    peak = log_joint.max(1, keepdims=True)
    return -(np.log(np.exp(log_joint - peak).sum(1)) + peak[:, 0])


def test_iwae_estimate_is_a_bound_that_closes_on_the_exact_likelihood(one_dim_model):
    model, images = one_dim_model
    exact = exact_nll(model, images).mean()
    estimates = {
        k: evaluation.evaluate_likelihood(model, images, iw_samples=k, seed=0)
        for k in (1, 10, 100, 5000)
    }
    nll = {k: r["iw_nll"] for k, r in estimates.items()}
    # An upper bound on -log p(x) (up to Monte-Carlo noise) that tightens as
    # k grows, closing most of the gap left by the ELBO.
    assert nll[1] > nll[10] > nll[100] > nll[5000] >= exact - 0.05
    # The ELBO is below the log-likelihood: -ELBO above the NLL.
    assert estimates[5000]["neg_elbo"] > exact
    assert estimates[5000]["neg_elbo"] == pytest.approx(
        estimates[5000]["reconstruction"] + estimates[5000]["kl"], rel=1e-7
    )


def test_iwae_estimate_is_exact_where_q_covers_the_posterior(one_dim_model):
    # Image by image, equal to -log p(x) within 0.1 nats on the typical image.
    # On a few images this briefly trained q sits on the wrong mode of a
    # multimodal posterior, where importance sampling converges slowly (and a
    # single estimate, an upper bound only in expectation, can land on either
    # side): hence the median. A constant error (a missing log k, a wrong
    # density constant) would still fail here.
    model, images = one_dim_model
    exact = exact_nll(model, images)
    estimate = np.array([
        evaluation.evaluate_likelihood(model, images[i : i + 1], iw_samples=5000, seed=i)["iw_nll"]
        for i in range(len(images))
    ])
    assert np.median(np.abs(estimate - exact)) < 0.1, np.round(estimate - exact, 3)


def test_iwae_estimate_matches_an_independent_numpy_computation(one_dim_model):
    model, images = one_dim_model
    k, seed = 7, 3
    result = evaluation.evaluate_likelihood(model, images, iw_samples=k, seed=seed)
    # The same noise: one draw of shape (images, k, latent_dim).
    epsilon = np.random.default_rng(seed).standard_normal((len(images), k, 1), dtype="float32")
    mean, log_var = (a.astype("float64")[:, None, :] for a in model.encode(images))
    z = mean + np.exp(0.5 * log_var) * epsilon
    logits = model.decoder.predict(z.reshape(-1, 1).astype("float32"), verbose=0)
    logits = logits.reshape(len(images), k, -1).astype("float64")
    x = images.reshape(len(images), 1, -1)
    log_px = (x * logits - np.logaddexp(0.0, logits)).sum(-1)
    log_pz = -0.5 * (z**2 + np.log(2 * np.pi)).sum(-1)
    log_qz = -0.5 * ((z - mean) ** 2 / np.exp(log_var) + log_var + np.log(2 * np.pi)).sum(-1)
    log_w = log_px + log_pz - log_qz
    peak = log_w.max(1, keepdims=True)
    expected = -(np.log(np.exp(log_w - peak).mean(1)) + peak[:, 0])
    assert result["iw_nll"] == pytest.approx(expected.mean(), rel=1e-5)
    assert result["reconstruction"] == pytest.approx(-log_px.mean(), rel=1e-5)


def test_bits_per_dimension_and_metadata(one_dim_model):
    model, images = one_dim_model
    r = evaluation.evaluate_likelihood(model, images, iw_samples=3, seed=1, max_rows=4)
    assert r["bits_per_dim"] == pytest.approx(r["iw_nll"] / (784 * np.log(2)))
    assert (r["iw_samples"], r["num_examples"], r["latent_dim"]) == (3, 20, 1)
    # Chunked (max_rows=4 < k * images) and unchunked runs agree in distribution:
    # the same seed and layout give identical numbers.
    again = evaluation.evaluate_likelihood(model, images, iw_samples=3, seed=1, max_rows=4)
    assert again == r


def test_logmeanexp_is_stable():
    values = np.array([[1000.0, 1000.0], [-1000.0, -1000.0 + np.log(3.0)]])
    np.testing.assert_allclose(
        evaluation._logmeanexp(values, axis=1), [1000.0, -1000.0 + np.log(2.0)]
    )


def test_active_units_counts_dimensions_that_vary():
    rng = np.random.default_rng(0)
    means = np.stack([rng.normal(0, 1.0, 1000), rng.normal(0, 0.05, 1000), np.zeros(1000)], 1)
    assert evaluation.active_units(means) == 1
    assert evaluation.active_units(means, threshold=0.001) == 2


def test_static_binarization_is_a_fixed_bernoulli_sample():
    grey = np.full((200, 28, 28, 1), 0.3, dtype="float32")
    binary = data.binarize(grey, seed=0)
    assert set(np.unique(binary)) == {0, 255} and binary.dtype == np.uint8  # binary levels
    assert as_unit(binary).mean() == pytest.approx(0.3, abs=0.01)
    levels = np.full((200, 28, 28, 1), 77, dtype="uint8")  # 77/255 = 0.302
    np.testing.assert_array_equal(data.binarize(levels, seed=0), data.binarize(as_unit(levels), seed=0))
    np.testing.assert_array_equal(binary, data.binarize(grey, seed=0))


def test_dynamic_binarization_draws_fresh_samples_only_in_training():
    layer = DynamicBinarization(seed=0)
    grey = np.full((64, 28, 28, 1), 0.7, dtype="float32")
    first = keras.ops.convert_to_numpy(layer(grey, training=True))
    second = keras.ops.convert_to_numpy(layer(grey, training=True))
    assert set(np.unique(first)) == {0.0, 1.0}
    assert first.mean() == pytest.approx(0.7, abs=0.01)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(grey, training=False)), grey)


def test_dynamic_binarization_model_trains_saves_and_loads(mnist_subset, tmp_path):
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=4, hidden_dim=32, dynamic_binarization=True)
    model.compile(optimizer="adam")
    history = model.fit(mnist_subset.x_train[:512], epochs=2, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    outputs = model(mnist_subset.x_train[:4], training=True)
    assert set(np.unique(keras.ops.convert_to_numpy(outputs["targets"]))) <= {0.0, 1.0}
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.dynamic_binarization and loaded.get_config() == model.get_config()


@pytest.fixture(scope="module")
def saved_model(one_dim_model, tmp_path_factory):
    model, _ = one_dim_model
    path = tmp_path_factory.mktemp("model") / "model.keras"
    save_model(model, path)
    return path


@pytest.mark.slow
@pytest.mark.any_backend  # the numbers on every backend: test_across_backends
def test_evaluate_script_prints_and_writes_the_numbers(saved_model, tmp_path, backend):
    # The same numbers on every backend: tests/test_across_backends.py.
    out = tmp_path / "numbers.json"
    result = run_here(
        "evaluate.py", saved_model, "--iw-samples", "50", "--num-examples", "40",
        "--binarize", "dynamic", "--output", out,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IWAE NLL (k=50)" in result.stdout and "active units" in result.stdout
    numbers = json.loads(out.read_text())
    assert numbers["backend"] == backend and numbers["num_examples"] == 40
    model = load_model(saved_model)
    images, _ = data.load_split("mnist", "test", limit=40, binarization="dynamic")
    here = evaluation.evaluate_likelihood(model, images, iw_samples=50, seed=0)
    for key in ("neg_elbo", "reconstruction", "kl", "iw_nll", "bits_per_dim"):
        assert numbers[key] == pytest.approx(here[key], abs=1e-3), key


@pytest.mark.slow
@pytest.mark.any_backend  # every backend draws the pictures at the end of test_scripts' run
def test_visualize_script_writes_every_picture(saved_model, tmp_path):
    result = run_here("visualize.py", saved_model, "--output-dir", tmp_path, "--num-examples", "300")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("latent_scatter.png", "latent_manifold.png", "interpolation.png", "reconstructions.png"):
        pixels = np.asarray(Image.open(tmp_path / name).convert("L"))
        assert len(np.unique(pixels)) > 50, name  # drawn, not blank
