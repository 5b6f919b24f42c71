"""The training objectives against an independent NumPy computation.

beta and KL warm-up (a KL weight), free bits, and the IWAE bound, on fixed
inputs; then the same objectives wired through `VAE`: the warm-up's weight
step by step, its counter through `fit` on every backend, and the k samples.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_vae import VAE, losses


def to_numpy(tensor):
    return np.asarray(ops.convert_to_numpy(tensor), dtype="float64")


# NumPy, written from the formulas, not from keras_vae.losses.
def np_reconstruction(x, logits):
    return (np.logaddexp(0.0, logits) - x * logits).sum(axis=(-3, -2, -1))


def np_kl_per_dim(mean, log_var):
    return 0.5 * (mean**2 + np.exp(log_var) - 1.0 - log_var)


def np_log_normal(z, mean, log_var):
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean) ** 2 / np.exp(log_var)).sum(-1)


def np_logmeanexp(values, axis):
    peak = values.max(axis=axis, keepdims=True)
    return np.log(np.exp(values - peak).mean(axis=axis)) + peak.squeeze(axis)


@pytest.fixture(scope="module")
def fixed():
    rng = np.random.default_rng(7)
    b, k, d = 4, 6, 5
    return {
        "x": (rng.random((b, 28, 28, 1)) < 0.3).astype("float32"),
        "logits1": rng.normal(0, 2, (b, 28, 28, 1)).astype("float32"),
        "logits": rng.normal(0, 2, (b, k, 28, 28, 1)).astype("float32"),
        # Spread scales so that some dimensions' KL is below the floor.
        "z_mean": rng.normal(0, 1, (b, d)).astype("float32") * np.linspace(0.05, 1.5, d, dtype="float32"),
        "z_log_var": rng.normal(-1, 1, (b, d)).astype("float32") * np.linspace(0.05, 1.5, d, dtype="float32"),
        "z1": rng.normal(0, 1, (b, d)).astype("float32"),
        "z": rng.normal(0, 1, (b, k, d)).astype("float32"),
    }


def vae_outputs(f):
    return {"z_mean": f["z_mean"], "z_log_var": f["z_log_var"], "z": f["z1"], "logits": f["logits1"]}


def iwae_outputs(f):
    return {"z_mean": f["z_mean"], "z_log_var": f["z_log_var"], "z": f["z"], "logits": f["logits"]}


@pytest.mark.parametrize("kl_weight", [1.0, 0.5, 0.0, 4.0])
@pytest.mark.parametrize("free_bits", [0.0, 0.3, 2.0])
def test_vae_objective_with_beta_and_free_bits(fixed, kl_weight, free_bits):
    f = fixed
    result = {k: float(to_numpy(v)) for k, v in losses.objective(
        f["x"], vae_outputs(f), kl_weight=kl_weight, free_bits=free_bits
    ).items()}
    reconstruction = np_reconstruction(f["x"], f["logits1"].astype("float64")).mean()
    kl_dims = np_kl_per_dim(f["z_mean"].astype("float64"), f["z_log_var"])
    floored = np.maximum(kl_dims.mean(axis=0), free_bits).sum()
    assert result["reconstruction_loss"] == pytest.approx(reconstruction, rel=1e-5)
    assert result["kl_loss"] == pytest.approx(kl_dims.sum(1).mean(), rel=1e-5)
    assert result["neg_elbo"] == pytest.approx(reconstruction + kl_dims.sum(1).mean(), rel=1e-5)
    assert result["loss"] == pytest.approx(reconstruction + kl_weight * floored, rel=1e-5)


def test_free_bits_floor_binds_on_some_dimensions_only(fixed):
    # The fixture must exercise both sides of the floor at free_bits=0.3.
    kl_dims = np_kl_per_dim(fixed["z_mean"].astype("float64"), fixed["z_log_var"]).mean(0)
    assert (kl_dims < 0.3).any() and (kl_dims > 0.3).any()


@pytest.mark.parametrize("kl_weight", [1.0, 0.25])
def test_iwae_objective(fixed, kl_weight):
    f = fixed
    result = {k: float(to_numpy(v)) for k, v in losses.objective(
        f["x"], iwae_outputs(f), kl_weight=kl_weight
    ).items()}
    x, logits, z = f["x"].astype("float64"), f["logits"].astype("float64"), f["z"].astype("float64")
    mean, log_var = f["z_mean"][:, None].astype("float64"), f["z_log_var"][:, None].astype("float64")
    log_px = -np_reconstruction(x[:, None], logits)
    log_ratio = np_log_normal(z, 0.0, 0.0) - np_log_normal(z, mean, log_var)
    expected = -np_logmeanexp(log_px + kl_weight * log_ratio, axis=1).mean()
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    reconstruction = -log_px.mean()
    kl = np_kl_per_dim(mean[:, 0], log_var[:, 0]).sum(1).mean()
    assert result["reconstruction_loss"] == pytest.approx(reconstruction, rel=1e-5)
    assert result["neg_elbo"] == pytest.approx(reconstruction + kl, rel=1e-5)


def test_iwae_bound_is_tighter_than_the_elbo_of_the_same_samples(fixed):
    f = fixed
    log_px, log_ratio = (to_numpy(t) for t in losses.importance_log_terms(
        f["x"], f["logits"], f["z"], f["z_mean"], f["z_log_var"]
    ))
    iwae = float(to_numpy(losses.iwae_loss(f["x"], iwae_outputs(f))))
    assert iwae <= -(log_px + log_ratio).mean()  # Jensen: log E[w] >= E[log w]
    # With one sample the bound is that sample's -log w.
    one = {**iwae_outputs(f), "z": f["z"][:, :1], "logits": f["logits"][:, :1]}
    single = float(to_numpy(losses.iwae_loss(f["x"], one)))
    assert single == pytest.approx(-(log_px[:, 0] + log_ratio[:, 0]).mean(), rel=1e-5)


def test_free_bits_with_the_iwae_bound_is_refused(fixed):
    with pytest.raises(ValueError, match="free bits"):
        losses.objective(fixed["x"], iwae_outputs(fixed), free_bits=0.5)
    with pytest.raises(ValueError, match="free bits"):
        VAE(latent_dim=2, hidden_dim=4, iw_samples=3, free_bits=0.5)


# Through the model --------------------------------------------------------


def test_kl_warmup_weight_grows_linearly_to_beta(fixed):
    model = VAE(latent_dim=3, hidden_dim=16, beta=0.5, kl_warmup_steps=4, seed=1)
    x = fixed["x"]
    for step in range(7):
        result = {k: float(to_numpy(v)) for k, v in model.compute_losses(x, training=True).items()}
        weight = 0.5 * min(1.0, step / 4)
        assert float(to_numpy(model.kl_weight(training=True))) == pytest.approx(weight)
        assert result["loss"] == pytest.approx(
            result["reconstruction_loss"] + weight * result["kl_loss"], rel=1e-5
        )
        model.advance_warmup()  # what the training step does after its losses
    # Evaluation uses the full weight; neither it nor calling the model
    # (in training mode too) moves the warm-up's clock.
    assert float(to_numpy(model.kl_weight(training=False))) == 0.5
    model(x, training=True)
    model.compute_losses(x, training=False)
    assert float(to_numpy(model.warmup_step)) == 7


def _fit(model, x, epochs=2, **kwargs):
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model.fit(x, epochs=epochs, batch_size=64, verbose=0, validation_data=(x,), **kwargs).history


def test_warmup_advances_inside_fit(mnist_subset):
    # On JAX the counter lives in the state threaded through the stateless step.
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=4, hidden_dim=32, kl_warmup_steps=100)
    history = _fit(model, mnist_subset.x_train[:256])
    assert float(to_numpy(model.warmup_step)) == 8  # 2 epochs of 4 steps
    # Training minimizes recon + (step / 100) * KL < -ELBO; validation uses beta = 1.
    for loss, neg_elbo in zip(history["loss"], history["neg_elbo"]):
        assert loss < neg_elbo
    assert history["val_loss"] == pytest.approx(history["val_neg_elbo"], rel=1e-6)


def test_free_bits_inside_fit(mnist_subset):
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=4, hidden_dim=32, free_bits=2.0)
    history = _fit(model, mnist_subset.x_train[:256])
    for prefix in ("", "val_"):
        for loss, neg_elbo in zip(history[prefix + "loss"], history[prefix + "neg_elbo"]):
            assert loss >= neg_elbo - 1e-3  # the floor only adds


def test_iwae_samples_through_the_model(mnist_subset):
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=4, hidden_dim=32, iw_samples=5)
    x = mnist_subset.x_test[:8]
    outputs = model(x, training=True)
    assert tuple(outputs["z"].shape) == (8, 5, 4)
    assert tuple(outputs["logits"].shape) == (8, 5, 28, 28, 1)
    z = to_numpy(outputs["z"])
    assert np.abs(z[:, 0] - z[:, 1]).min() > 0  # distinct samples per image
    history = _fit(model, mnist_subset.x_train[:256])
    # The IWAE bound of a batch is below its ELBO, whose estimate it logs too.
    for prefix in ("", "val_"):
        for loss, neg_elbo in zip(history[prefix + "loss"], history[prefix + "neg_elbo"]):
            assert loss < neg_elbo

