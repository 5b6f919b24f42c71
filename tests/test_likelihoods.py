"""The pixel likelihoods: normalized over the 256 levels, equal to a NumPy
reference, finite gradients at the edges, and a VAE that trains, evaluates,
saves and generates with each of them."""

import keras
import numpy as np
import pytest
from keras import ops

from conftest import gradient
from keras_vae import VAE, evaluation, likelihoods
from keras_vae.likelihoods import LEVELS
from keras_vae.model import ModelConfig, load_model, save_model
from keras_vae.run.config import TrainConfig
from keras_vae.errors import UserError

to_numpy = keras.ops.convert_to_numpy
GRID = np.arange(LEVELS, dtype="float32") / (LEVELS - 1)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_log_prob(x, mean, log_scale):
    """log P(level x) of the discretized logistic, from its definition, in float64."""
    x, mean = np.asarray(x, "float64"), np.asarray(mean, "float64")
    scale = np.exp(np.clip(np.asarray(log_scale, "float64"), -7.0, 7.0))
    half = 0.5 / 255
    u, l = (x + half - mean) / scale, (x - half - mean) / scale
    first, last = x < half, x > 1 - half  # the open edge levels
    # F(u) - F(l) left of the mean; right of it the same number as S(l) - S(u)
    # with S = 1 - F, which does not cancel to 0 in float64.
    left_form = (np.where(last, 1.0, sigmoid(u)), np.where(first, 0.0, sigmoid(l)))
    right_form = (np.where(first, 1.0, sigmoid(-l)), np.where(last, 0.0, sigmoid(-u)))
    right = l > 0
    upper = np.where(right, right_form[0], left_form[0])
    lower = np.where(right, right_form[1], left_form[1])
    return np.log(upper - lower)


def reference_mixture_nll(images, outputs, components):
    """-log p(x) of the colour mixture, channel by channel from its definition."""
    k, c = components, images.shape[-1]
    outputs = np.asarray(outputs, "float64")
    logits = outputs[..., :k]
    log_weights = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    means = outputs[..., k : k + k * c].reshape(*outputs.shape[:-1], k, c)
    log_scales = outputs[..., k + k * c : k + 2 * k * c].reshape(*outputs.shape[:-1], k, c)
    coefficients = np.tanh(outputs[..., k + 2 * k * c :]).reshape(*outputs.shape[:-1], k, -1)
    x = images[..., None, :].astype("float64")
    centre = [means[..., 0], means[..., 1] + coefficients[..., 0] * x[..., 0],
              means[..., 2] + coefficients[..., 1] * x[..., 0] + coefficients[..., 2] * x[..., 1]]
    log_prob = sum(reference_log_prob(x[..., i], centre[i], log_scales[..., i]) for i in range(3))
    terms = log_weights + log_prob
    peak = terms.max(-1, keepdims=True)
    per_pixel = np.log(np.exp(terms - peak).sum(-1)) + peak[..., 0]
    return -per_pixel.reshape(len(images), -1).sum(-1)


def outputs_with_extremes(likelihood, pixels, seed=0):
    """Decoder outputs `(1, pixels, 1, P)`: random, and at the extremes of
    the means and log-scales (far below 0, far above 1, scales at the clip)."""
    rng = np.random.default_rng(seed)
    outputs = rng.normal(scale=2.0, size=(1, pixels, 1, likelihood.parameters)).astype("float32")
    c = likelihood.channels
    if likelihood.name == "logistic":
        outputs[0, 0, 0, :c], outputs[0, 1, 0, :c], outputs[0, 2, 0, :c] = -40.0, 40.0, 0.5
        outputs[0, 0, 0, c:], outputs[0, 1, 0, c:], outputs[0, 2, 0, c:] = -9.0, 9.0, -7.0
    return outputs


@pytest.mark.parametrize("name,channels", [("logistic", 1), ("logistic", 3), ("logistic-mixture", 1)])
def test_probabilities_sum_to_one_over_the_256_levels(name, channels):
    likelihood = likelihoods.get(name, channels, components=4)
    outputs = outputs_with_extremes(likelihood, pixels=12)
    # Every level in every channel at once: images (256, 12, 1, C) against
    # the outputs of 12 pixels; one pixel per "image" so the sum is per pixel.
    images = np.broadcast_to(GRID[:, None, None, None], (LEVELS, 12, 1, channels))
    nll = to_numpy(likelihood.negative_log_likelihood(images[:, :, None], outputs[:, :, None]))
    # nll is (256, 12): one pixel each; with several channels it is the sum
    # over channels of the same level, so test a channel at a time below.
    if channels == 1:
        total = np.exp(-nll.astype("float64")).sum(0)
        np.testing.assert_allclose(total, 1.0, atol=2e-6)
        return
    mean, log_scale = outputs[..., :channels], outputs[..., channels:]
    log_prob = to_numpy(likelihoods.discretized_logistic_log_prob(GRID[:, None, None, None], mean, log_scale))
    np.testing.assert_allclose(np.exp(log_prob.astype("float64")).sum(0), 1.0, atol=2e-6)


def test_the_colour_mixture_sums_to_one_over_all_256_cubed_colours():
    likelihood = likelihoods.get("logistic-mixture", 3, components=2)
    outputs = np.random.default_rng(1).normal(scale=1.5, size=(1, 1, 1, likelihood.parameters)).astype("float32")
    green_blue = np.stack(np.meshgrid(GRID, GRID, indexing="ij"), -1).reshape(-1, 2)
    total = 0.0
    for start in range(0, LEVELS, 32):  # 32 red levels x 65 536 (green, blue) at a time
        red = np.repeat(GRID[start : start + 32], len(green_blue))[:, None]
        colours = np.concatenate([red, np.tile(green_blue, (32, 1))], 1).reshape(-1, 1, 1, 3)
        nll = to_numpy(likelihood.negative_log_likelihood(colours, outputs))
        total += np.exp(-nll.astype("float64")).sum()
    assert abs(total - 1.0) < 1e-5


def reasonable_outputs(rng, shape, channels, components=0):
    """Decoder outputs whose means lie in [-0.5, 1.5] and log-scales in [-5, 1],
    so that no level's probability underflows float64 in the reference."""
    outputs = rng.normal(scale=2.0, size=shape)
    k, c = components, channels
    means = slice(k, k + max(k, 1) * c)
    scales = slice(means.stop, means.stop + max(k, 1) * c)
    outputs[..., means] = rng.uniform(-0.5, 1.5, size=outputs[..., means].shape)
    outputs[..., scales] = rng.uniform(-5.0, 1.0, size=outputs[..., scales].shape)
    return outputs.astype("float32")


def test_the_logistic_matches_its_definition():
    likelihood = likelihoods.get("logistic", 3)
    rng = np.random.default_rng(2)
    outputs = reasonable_outputs(rng, (4, 5, 6, 6), 3)
    images = rng.integers(0, 256, size=(4, 5, 6, 3)).astype("float32") / 255
    images[0, 0, 0], images[0, 0, 1] = 0.0, 1.0  # both edges
    expected = -reference_log_prob(images, outputs[..., :3], outputs[..., 3:]).reshape(4, -1).sum(-1)
    got = to_numpy(likelihood.negative_log_likelihood(images, outputs))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_the_colour_mixture_matches_its_definition():
    likelihood = likelihoods.get("logistic-mixture", 3, components=3)
    rng = np.random.default_rng(3)
    outputs = reasonable_outputs(rng, (4, 5, 6, likelihood.parameters), 3, components=3)
    images = rng.integers(0, 256, size=(4, 5, 6, 3)).astype("float32") / 255
    got = to_numpy(likelihood.negative_log_likelihood(images, outputs))
    np.testing.assert_allclose(got, reference_mixture_nll(images, outputs, 3), rtol=1e-5)
    # k samples per image: the images broadcast against the sample axis.
    stacked = np.stack([outputs, outputs[::-1]], 1)  # (4, 2, 5, 6, P)
    both = to_numpy(likelihood.negative_log_likelihood(images[:, None], stacked))
    np.testing.assert_allclose(both[:, 0], got, rtol=1e-6)


@pytest.mark.parametrize("name,channels", [("logistic", 1), ("logistic-mixture", 1), ("logistic-mixture", 3)])
def test_gradients_are_finite_at_the_edges(name, channels):
    likelihood = likelihoods.get(name, channels, components=3)
    outputs = outputs_with_extremes(likelihood, pixels=6, seed=4)
    outputs[..., : likelihood.parameters // 2] *= 20  # means and weights far out
    for level in (0.0, 1.0 / 255, 254.0 / 255, 1.0):
        images = np.full((1, 6, 1, channels), level, dtype="float32")
        grad = gradient(lambda o: likelihood.negative_log_likelihood(images, o), outputs)
        assert np.isfinite(grad).all(), (level, grad)


def test_the_mean_is_within_half_a_level_of_the_exact_mean():
    likelihood = likelihoods.get("logistic", 1)
    outputs = outputs_with_extremes(likelihood, pixels=40, seed=5)
    log_prob = to_numpy(likelihoods.discretized_logistic_log_prob(
        GRID[:, None, None, None], outputs[..., :1], outputs[..., 1:]
    )).astype("float64")
    exact = (np.exp(log_prob) * GRID[:, None, None, None]).sum(0)
    np.testing.assert_allclose(to_numpy(likelihood.mean(outputs))[0], exact, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("name,channels", [("bernoulli", 1), ("logistic", 3), ("logistic-mixture", 3)])
def test_sampled_pixels_follow_the_distribution(name, channels):
    likelihood = likelihoods.get(name, channels, components=2)
    outputs = np.random.default_rng(6).normal(size=(1, 2, 2, likelihood.parameters)).astype("float32")
    draws = likelihood.sample(np.repeat(outputs, 20_000, axis=0), np.random.default_rng(0))
    assert draws.shape == (20_000, 2, 2, channels) and draws.dtype == np.float32
    levels = np.unique(draws)
    assert set(levels) <= set(GRID.tolist()) and (len(levels) == 2) == (name == "bernoulli")
    if name == "logistic-mixture":  # the mean of the channel dependence is approximate
        return
    mean = to_numpy(likelihood.mean(outputs))[0]
    np.testing.assert_allclose(draws.mean(0), mean, atol=5 * draws.std(0).max() / np.sqrt(20_000) + 0.5 / 255)


@pytest.mark.parametrize(
    "settings",
    [dict(likelihood="logistic"), dict(likelihood="logistic-mixture", mixture_components=3),
     dict(likelihood="logistic", architecture="conv", filters=(4, 8), image_shape=(8, 8, 3)),
     dict(likelihood="logistic-mixture", prior="vamp", pseudo_inputs=4, iw_samples=2, image_shape=(8, 8, 3))],
    ids=["logistic", "mixture", "conv-colour", "vamp-iwae-colour"],
)
def test_a_vae_trains_evaluates_and_round_trips_with_each_likelihood(settings, tmp_path):
    shape = settings.get("image_shape", (28, 28, 1))
    x = np.random.default_rng(7).integers(0, 256, size=(32, *shape)).astype("float32") / 255
    keras.utils.set_random_seed(0)
    vae = VAE(latent_dim=3, hidden_dim=16, seed=1, **settings)
    assert ModelConfig.from_dict(vae.get_config()).parameter_count() == vae.count_params()
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = vae.fit(x, epochs=2, batch_size=16, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][-1] < history["loss"][0]
    result = evaluation.evaluate_likelihood(vae, x[:4], iw_samples=8)
    assert result["iw_nll"] <= result["neg_elbo"] + 1e-3
    assert result["bits_per_dim"] == pytest.approx(result["iw_nll"] / (np.prod(shape) * np.log(2)))
    generated = vae.generate(5, seed=0)
    assert generated.shape == (5, *shape) and 0 <= generated.min() and generated.max() <= 1
    drawn = vae.generate(5, seed=0, sample_pixels=1)
    np.testing.assert_array_equal(drawn * 255, np.round(drawn * 255))  # levels
    path = tmp_path / "model.keras"
    save_model(vae, path)
    loaded = load_model(path)
    assert loaded.likelihood == settings["likelihood"]
    np.testing.assert_allclose(loaded.generate(5, seed=0), generated, atol=1e-6)


def test_8_bit_likelihoods_refuse_binary_pixels():
    with pytest.raises(ValueError, match="8-bit pixels: it cannot model binarized"):
        ModelConfig(likelihood="logistic", dynamic_binarization=True).check()
    for flags in (dict(binarize="static"), dict(dataset="binarized_mnist")):
        with pytest.raises(UserError, match="8-bit pixels"):
            TrainConfig(likelihood="logistic-mixture", **flags)
    assert TrainConfig(likelihood="logistic").validation_split == 10_000  # a likelihood
    assert TrainConfig().validation_split == 0  # the original design's loss
    with pytest.raises(ValueError, match="unknown likelihood"):
        likelihoods.get("gaussian")
    with pytest.raises(ValueError, match="mixture_components must be >= 1"):
        ModelConfig(likelihood="logistic-mixture", mixture_components=0).check()


def test_the_bernoulli_is_the_binary_cross_entropy():
    logits = np.random.default_rng(8).normal(size=(2, 3, 3, 1)).astype("float32")
    images = (logits > 0).astype("float32")
    got = to_numpy(likelihoods.get("bernoulli").negative_log_likelihood(images, logits))
    p = sigmoid(logits.astype("float64"))
    np.testing.assert_allclose(got, -np.log(np.where(images > 0, p, 1 - p)).reshape(2, -1).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(likelihoods.get("bernoulli").mean(logits)), p, rtol=1e-5)
    assert ops.shape(likelihoods.get("bernoulli").mean(logits)) == (2, 3, 3, 1)
