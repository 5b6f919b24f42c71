"""The VampPrior and the two-layer VAE: their densities, their likelihood
estimates against exact integrals, training, saving and loading everywhere."""

import csv
import json

import keras
import numpy as np
import pytest

from conftest import run_script
from keras_vae.model import load_model, save_model
from keras_vae import VAE, data, evaluation, losses
from keras_vae.model import ModelConfig
from keras_vae.run import trainer as train
from keras_vae.errors import UserError
from keras_vae.export import serving_encoder
from keras_vae.pixels import as_unit

to_numpy = keras.ops.convert_to_numpy

VARIANTS = {
    "vamp": dict(prior="vamp", pseudo_inputs=20),
    "two-layer": dict(latent_layers=2),
    "two-layer-vamp-iwae": dict(latent_layers=2, prior="vamp", pseudo_inputs=20, iw_samples=3),
    "two-layer-resnet": dict(latent_layers=2, architecture="resnet", filters=(4, 8)),
}


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))) over the last axis, in float64 NumPy."""
    z, mean, log_var = (np.asarray(a, dtype="float64") for a in (z, mean, log_var))
    return -0.5 * (np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var)).sum(-1)


def log_sum_exp(values, axis):
    peak = values.max(axis=axis, keepdims=True)
    return np.log(np.exp(values - peak).sum(axis=axis)) + np.squeeze(peak, axis)


def test_mixture_density_is_the_mean_of_its_components():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 3, 4)).astype("float32")
    means = rng.normal(size=(7, 4)).astype("float32")
    log_vars = rng.normal(scale=0.5, size=(7, 4)).astype("float32")
    expected = log_sum_exp(gaussian_log_density(z[..., None, :], means, log_vars), -1) - np.log(7)
    got = to_numpy(losses.mixture_log_density(z, means, log_vars))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # One component is a Gaussian.
    np.testing.assert_allclose(
        to_numpy(losses.mixture_log_density(z, means[:1], log_vars[:1])),
        gaussian_log_density(z, means[0], log_vars[0]), rtol=1e-5,
    )


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parameter_count_is_the_built_model(name):
    model = VAE(latent_dim=3, hidden_dim=16, **VARIANTS[name])
    assert ModelConfig.from_dict(model.get_config()).parameter_count() == model.count_params()


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(latent_layers=3), "latent_layers must be 1 or 2"),
        (dict(prior="flow"), "unknown prior 'flow'"),
        (dict(prior="vamp", pseudo_inputs=0), "pseudo_inputs must be >= 1"),
        (dict(prior="vamp", num_classes=10), "for unconditional VAEs"),
        (dict(latent_layers=2, free_bits=0.5), "free bits need the analytic KL"),
    ],
)
def test_impossible_latent_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        VAE(latent_dim=2, hidden_dim=8, **settings)


# Exact likelihoods of tiny trained models ------------------------------------
#
# The models see MNIST shrunk to 14x14 pixels: with 196 pixels the
# posteriors are narrower than the prior (the ELBO is ~1 nat below log p(x))
# yet wide enough for a grid to resolve them and for q to cover them, so
# that k = 5000 importance samples converge; the estimator under test is the
# one used on 28x28 images.


def shrink(images):
    """28x28 grey images -> 14x14, each pixel the mean of a 2x2 block."""
    return as_unit(images).reshape(len(images), 14, 2, 14, 2, 1).mean(axis=(2, 4))


def fit_tiny(mnist_subset, epochs=10, **settings):
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=1, hidden_dim=32, image_shape=(14, 14, 1), seed=0, **settings)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(data.binarize(shrink(mnist_subset.x_train), seed=1), epochs=epochs, batch_size=64, verbose=0)
    return model


def log_px_given_z(model, z, images):
    """log p(x|z) `(images, points)` of decoder inputs z `(points, code_dim)`, in float64."""
    logits = model.decoder.predict(z.astype("float32"), batch_size=8192, verbose=0)
    logits = logits.reshape(len(z), -1).astype("float64")
    x = images.reshape(len(images), -1).astype("float64")
    return x @ logits.T - np.logaddexp(0.0, logits).sum(1)[None, :]


def grid(low, high, points):
    """Midpoints of `points` cells over [low, high], and the cell width."""
    step = (high - low) / points
    return low + step * (np.arange(points) + 0.5), step


@pytest.fixture(scope="module")
def vamp_model(mnist_subset):
    """A one-dimensional z with a VampPrior of two pseudo-inputs."""
    return fit_tiny(mnist_subset, prior="vamp", pseudo_inputs=2)


@pytest.fixture(scope="module")
def two_layer_model(mnist_subset):
    """z1 and z2 of one dimension each."""
    return fit_tiny(mnist_subset, latent_layers=2)


@pytest.fixture(scope="module")
def test_images(mnist_subset):
    return as_unit(data.binarize(shrink(mnist_subset.x_test[:12]), seed=0))


def exact_vamp_nll(model, images):
    """-log integral p(x|z) (1/2) sum_k q(z|u_k) dz, on a grid finer than every density."""
    means, log_vars = (to_numpy(t).astype("float64")[:, 0] for t in model.latents.prior.components())
    post_mean, post_log_var = (a[:, 0].astype("float64") for a in model.encode(images))
    stds = np.exp(0.5 * np.concatenate([log_vars, post_log_var]))
    centers = np.concatenate([means, post_mean])
    low, high = (centers - 12 * stds).min(), (centers + 12 * stds).max()
    z, step = grid(low, high, int(np.ceil((high - low) / (stds.min() / 40))))
    log_prior = log_sum_exp(gaussian_log_density(z[:, None, None], means[:, None], log_vars[:, None]), 1) - np.log(2)
    log_joint = log_px_given_z(model, z[:, None], images) + log_prior[None, :] + np.log(step)
    return -log_sum_exp(log_joint, 1)


def exact_two_layer_nll(model, images, points=800):
    """-log double integral p(x|z1, z2) p(z1|z2) N(z2; 0, 1) dz1 dz2.

    z2 on a grid over [-8, 8]; for each z2, z1 on a grid of +-12 standard
    deviations of p(z1|z2) around its mean (where all of its mass is).
    """
    z2, step2 = grid(-8.0, 8.0, points)
    prior_mean, prior_log_var = (a[:, 0].astype("float64") for a in model.prior_z1.predict(z2[:, None].astype("float32"), verbose=0))
    prior_std = np.exp(0.5 * prior_log_var)
    unit, unit_step = grid(-12.0, 12.0, points)
    z1 = prior_mean[:, None] + prior_std[:, None] * unit[None, :]  # (z2 points, z1 points)
    log_p_z1 = -0.5 * (unit**2 + np.log(2 * np.pi))[None, :] - np.log(prior_std)[:, None]
    log_weights = log_p_z1 + np.log(prior_std * unit_step)[:, None]  # dz1 = std * du
    log_weights += (-0.5 * (z2**2 + np.log(2 * np.pi)) + np.log(step2))[:, None]
    code = np.stack([z1.ravel(), np.repeat(z2, points)], axis=1)  # decoder input [z1, z2]
    log_joint = log_px_given_z(model, code, images) + log_weights.ravel()[None, :]
    return -log_sum_exp(log_joint, 1)


@pytest.mark.parametrize("which", ["vamp", "two-layer"])
def test_iwae_estimate_closes_on_the_exact_likelihood(which, vamp_model, two_layer_model, test_images):
    model = vamp_model if which == "vamp" else two_layer_model
    exact = (exact_vamp_nll if which == "vamp" else exact_two_layer_nll)(model, test_images)
    estimates = {
        k: evaluation.evaluate_likelihood(model, test_images, iw_samples=k, seed=0)
        for k in (1, 100, 5000)
    }
    nll = {k: r["iw_nll"] for k, r in estimates.items()}
    # A bound that tightens with k (up to Monte Carlo noise of hundredths).
    assert nll[1] > nll[100] > nll[5000] - 0.05 >= exact.mean() - 0.1, (nll, exact.mean())
    assert nll[5000] - exact.mean() < 0.05 < estimates[5000]["neg_elbo"] - exact.mean() - 0.5
    # k = 5000 closes on -log p(x) image by image (the median: on an image
    # whose posterior q fits worst the estimate converges more slowly, and a
    # single estimate is an upper bound only in expectation): a wrong density,
    # a missing term of the hierarchy or a wrong mixture weight (log 2) would
    # leave tenths of nats or more, not hundredths.
    per_image = np.array([
        evaluation.evaluate_likelihood(model, test_images[i : i + 1], iw_samples=5000, seed=i)["iw_nll"]
        for i in range(len(test_images))
    ])
    assert np.median(np.abs(per_image - exact)) < 0.05, np.round(per_image - exact, 3)
    # The ELBO is below the log-likelihood, and its KL term is the estimate's.
    assert estimates[5000]["neg_elbo"] > exact.mean()
    assert estimates[5000]["neg_elbo"] == pytest.approx(
        estimates[5000]["reconstruction"] + estimates[5000]["kl"], rel=1e-7
    )


def test_two_layer_importance_weights_match_numpy(two_layer_model, test_images):
    """The same noise, weighed by an independent NumPy computation of
    log p(x|z1,z2) + log p(z1|z2) + log p(z2) - log q(z2|x) - log q(z1|x,z2)."""
    model, images, k, seed = two_layer_model, test_images, 6, 2
    result = evaluation.evaluate_likelihood(model, images, iw_samples=k, seed=seed)
    epsilon = np.random.default_rng(seed).standard_normal((len(images), k, 2), dtype="float32")
    mean2, log_var2 = (a.astype("float64") for a in model.encoder.predict(images, verbose=0))
    z2 = mean2[:, None] + np.exp(0.5 * log_var2[:, None]) * epsilon[..., 1:]
    repeated = np.repeat(images, k, axis=0)
    mean1, log_var1 = (a.astype("float64").reshape(len(images), k, 1) for a in model.encoder_z1.predict(
        [repeated, z2.reshape(-1, 1).astype("float32")], verbose=0))
    z1 = mean1 + np.exp(0.5 * log_var1) * epsilon[..., :1]
    prior_mean1, prior_log_var1 = (a.astype("float64").reshape(len(images), k, 1) for a in model.prior_z1.predict(
        z2.reshape(-1, 1).astype("float32"), verbose=0))
    code = np.concatenate([z1, z2], -1).reshape(-1, 2)
    log_px = np.stack([log_px_given_z(model, code[i * k : (i + 1) * k], images[i : i + 1])[0] for i in range(len(images))])
    log_w = (
        log_px
        + gaussian_log_density(z1, prior_mean1, prior_log_var1) + gaussian_log_density(z2, 0.0, 0.0)
        - gaussian_log_density(z2, mean2[:, None], log_var2[:, None]) - gaussian_log_density(z1, mean1, log_var1)
    )
    expected = -(log_sum_exp(log_w, 1) - np.log(k))
    assert result["iw_nll"] == pytest.approx(expected.mean(), rel=1e-5)
    assert result["reconstruction"] == pytest.approx(-log_px.mean(), rel=1e-5)
    assert result["kl"] == pytest.approx(-(log_w - log_px).mean(), rel=1e-4)


def test_monte_carlo_kl_is_the_analytic_kl_in_expectation():
    """With the N(0, I) prior, the Monte Carlo KL term averages to the analytic one."""
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(3, 1, 4)).astype("float32")
    log_var = rng.normal(scale=0.3, size=(3, 1, 4)).astype("float32")
    z = mean + np.exp(0.5 * log_var) * rng.standard_normal((3, 200_000, 4)).astype("float32")
    ratio = to_numpy(losses.standard_normal_log_density(z) - losses.gaussian_log_density(z, mean, log_var))
    analytic = to_numpy(losses.kl_divergence(mean[:, 0], log_var[:, 0]))
    np.testing.assert_allclose(-ratio.mean(1), analytic, atol=0.02)


# Training, saving, loading, generating ---------------------------------------


@pytest.fixture(scope="module")
def trained(mnist_subset, tmp_path_factory):
    """Each variant trained for two short epochs and saved."""
    folder = tmp_path_factory.mktemp("latent-variants")
    x = mnist_subset.x_train[:1024]
    models = {}
    for name, settings in VARIANTS.items():
        keras.utils.set_random_seed(0)
        model = VAE(latent_dim=4, hidden_dim=32, dynamic_binarization=True, seed=1, **settings)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        history = model.fit(x, epochs=2, batch_size=32, verbose=0, validation_data=(x[:256],))
        save_model(model, folder / f"{name}.keras")
        models[name] = (model, history.history)
    return folder, models


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_train_and_log_a_monte_carlo_kl(trained, name):
    _, models = trained
    model, history = models[name]
    for key in ("loss", "neg_elbo", "reconstruction_loss", "kl_loss", "val_neg_elbo"):
        assert np.isfinite(history[key]).all(), key
    assert history["val_neg_elbo"][-1] < min(450, history["val_neg_elbo"][0]), history["val_neg_elbo"]
    assert all(kl > 0 for kl in history["val_kl_loss"])  # a KL estimated over a batch
    np.testing.assert_allclose(
        history["val_neg_elbo"],
        np.add(history["val_reconstruction_loss"], history["val_kl_loss"]), rtol=1e-5,
    )


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_round_trip_and_generate(trained, name):
    folder, models = trained
    model, _ = models[name]
    loaded = load_model(folder / f"{name}.keras")
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.generate(8, seed=3), model.generate(8, seed=3), atol=1e-6)
    assert model.sample_prior(8, seed=3).shape == (8, model.code_dim)
    z_mean, z_log_var = model.encode(np.zeros((5, 28, 28, 1), "float32"))
    assert z_mean.shape == z_log_var.shape == (5, model.code_dim)
    images = model.generate(64, seed=0)
    assert images.shape == (64, 28, 28, 1) and 0 <= images.min() and images.max() <= 1


def test_vamp_samples_come_from_the_pseudo_inputs_components(trained):
    _, models = trained
    model, _ = models["vamp"]
    means, log_vars = (to_numpy(t) for t in model.latents.prior.components())
    pseudo = to_numpy(model.latents.prior.pseudo_images())
    assert pseudo.shape == (20, 28, 28, 1) and pseudo.min() >= 0 and pseudo.max() <= 1
    z = model.sample_prior(4000, seed=0)
    # The draws' mean and variance are the mixture's.
    np.testing.assert_allclose(z.mean(0), means.mean(0), atol=0.1)
    mixture_var = (np.exp(log_vars) + means**2).mean(0) - means.mean(0) ** 2
    np.testing.assert_allclose(z.var(0), mixture_var, rtol=0.15)


def test_two_layer_encoder_exports_the_posterior_of_both_layers(trained):
    _, models = trained
    model, _ = models["two-layer"]
    images = (np.random.default_rng(0).random((6, 28, 28, 1)) > 0.5).astype("float32")
    exported = serving_encoder(model).predict(images, verbose=0)
    for got, expected in zip(exported, model.encode(images), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    assert exported[0].shape == (6, 8)


def test_init_from_copies_the_learned_weights_for_another_objective(trained):
    folder, models = trained
    source, _ = models["two-layer-vamp-iwae"]
    # Fine-tuning: the same networks, a tighter bound and a KL warm-up.
    keras.utils.set_random_seed(7)
    model = VAE(latent_dim=4, hidden_dim=32, dynamic_binarization=True, seed=1, latent_layers=2,
                prior="vamp", pseudo_inputs=20, iw_samples=10, kl_warmup_steps=50)
    assert not np.allclose(model.generate(8, seed=3), source.generate(8, seed=3), atol=1e-3)
    train.copy_trained_weights(
        model, train.load_initial_model(str(folder / "two-layer-vamp-iwae.keras")), "it"
    )
    np.testing.assert_allclose(model.generate(8, seed=3), source.generate(8, seed=3), atol=1e-6)
    assert model.iw_samples == 10 and float(model.warmup_step.numpy()) == 0  # its own


def test_init_from_refuses_other_networks_and_files(trained, tmp_path):
    folder, models = trained
    other = VAE(latent_dim=4, hidden_dim=32, latent_layers=2)  # no VampPrior
    with pytest.raises(UserError, match="prior 'vamp' there, 'normal' here"):
        train.copy_trained_weights(other, models["vamp"][0], "vamp.keras")
    (tmp_path / "notes.keras").write_text("not a model")
    with pytest.raises(UserError, match="^--init-from: .*notes.keras: not a .keras model file"):
        train.load_initial_model(str(tmp_path / "notes.keras"))
    with pytest.raises(UserError, match="--init-from: .*no such file"):
        train.load_initial_model("no-such-model")


@pytest.mark.any_backend  # the run folder's validation split and --init-from; every backend trains these models in test_variants_train_and_log_a_monte_carlo_kl
@pytest.mark.slow
def test_a_two_layer_vamp_run_holds_out_the_validation_split_and_fine_tunes(tmp_path, backend):
    # Trained in this process (the flags' way into TrainConfig is test_train_config's);
    # evaluate.py reads the held-out split the run's config.json names.
    from keras_vae.run.config import TrainConfig
    from keras_vae.run.trainer import train_and_evaluate

    run = tmp_path / "run"
    settings = dict(
        binarize="dynamic", num_train=512, num_test=128, latent_layers=2, prior="vamp",
        pseudo_inputs=10, latent_dim=4, hidden_dim=32,
    )
    metrics = train_and_evaluate(TrainConfig(epochs=2, final_iw_samples=20, **settings), run, verbose=0)
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["latent_layers"], config["prior"], config["validation_split"]) == (2, "vamp", 10000)
    assert (metrics["num_train"], metrics["num_validation"], metrics["num_test"]) == (512, 128, 128)
    assert metrics["test_iw_nll"] < metrics["test_neg_elbo"]
    # The sample grids are drawn from the prior as it is after each epoch.
    assert len(list((run / "samples").glob("epoch_*.png"))) == 2
    evaluated = run_script(
        "evaluate.py", run / "model.keras", "--split", "validation", "--num-examples", "64",
        "--iw-samples", "20", "--output", tmp_path / "val.json",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "validation split (64 images" in evaluated.stdout
    assert json.loads((tmp_path / "val.json").read_text())["latent_dim"] == 8  # z1 and z2
    # Fine-tuning it on a tighter bound starts where it ended, not from scratch.
    tuned = tmp_path / "tuned"
    init_from = str(run / "model.keras")
    train_and_evaluate(
        TrainConfig(epochs=1, iw_samples=5, init_from=init_from, **settings), tuned, verbose=0
    )
    assert json.loads((tuned / "config.json").read_text())["config"]["init_from"] == init_from
    first = [
        float(next(csv.DictReader((folder / "history.csv").open()))["val_neg_elbo"])
        for folder in (run, tuned)
    ]
    assert first[1] < first[0] - 20, first
