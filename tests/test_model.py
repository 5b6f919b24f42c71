"""The VAE trains, reports consistent metrics, and survives saving."""

import json

import keras
import numpy as np
import pytest

from keras_vae.model import load_model, save_model
from keras_vae import VAE

@pytest.fixture(scope="module")
def trained(mnist_subset):
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=8, hidden_dim=128)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(
        mnist_subset.x_train,
        epochs=4,
        batch_size=128,
        validation_data=(mnist_subset.x_test,),
        verbose=0,
    )
    return model, history.history


def test_training_lowers_the_loss(trained):
    _, history = trained
    assert history["loss"][-1] < history["loss"][0] - 50
    assert history["val_loss"][-1] < history["val_loss"][0]


@pytest.mark.parametrize("prefix", ["", "val_"])
def test_loss_is_reconstruction_plus_kl(trained, prefix):
    _, history = trained
    for loss, recon, kl in zip(
        history[prefix + "loss"],
        history[prefix + "reconstruction_loss"],
        history[prefix + "kl_loss"],
    ):
        assert kl > 0
        assert loss == pytest.approx(recon + kl, rel=1e-5)


def test_evaluate_reports_the_same_metrics(trained, mnist_subset):
    model, _ = trained
    result = model.evaluate(mnist_subset.x_test, verbose=0, return_dict=True)
    assert set(result) == {"loss", "neg_elbo", "reconstruction_loss", "kl_loss"}
    assert result["loss"] == pytest.approx(result["neg_elbo"], rel=1e-6)  # the default objective: the ELBO
    assert result["loss"] == pytest.approx(
        result["reconstruction_loss"] + result["kl_loss"], rel=1e-5
    )
    # A model that learned something is far below the ~543 nats of p = 0.5.
    assert result["loss"] < 300


def test_helpers_shapes_and_ranges(trained, mnist_subset):
    model, _ = trained
    z_mean, z_log_var = model.encode(mnist_subset.x_test[:5])
    assert z_mean.shape == z_log_var.shape == (5, 8)
    reconstructions = model.reconstruct(mnist_subset.x_test[:5])
    assert reconstructions.shape == (5, 28, 28, 1)
    samples = model.generate(6, seed=1)
    assert samples.shape == (6, 28, 28, 1)
    assert 0.0 <= samples.min() and samples.max() <= 1.0
    np.testing.assert_array_equal(samples, model.generate(6, seed=1))
    assert not np.array_equal(samples, model.generate(6, seed=2))


def test_same_seed_same_training(mnist_subset):
    def run():
        keras.utils.set_random_seed(3)
        model = VAE(latent_dim=4, hidden_dim=32)
        model.compile(optimizer="adam")
        return model.fit(mnist_subset.x_train[:512], epochs=2, verbose=0).history

    first, second = run(), run()
    for key in first:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-5)


@pytest.mark.parametrize(
    "settings",
    [{}, dict(architecture="resnet", filters=(4, 8), blocks=2, num_classes=10, beta=0.5,
              kl_warmup_steps=10, iw_samples=2), dict(free_bits=0.25, architecture="conv")],
)
def test_config_round_trip(settings):
    model = VAE(latent_dim=3, hidden_dim=16, seed=4, name="small", **settings)
    clone = VAE.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert json.loads(json.dumps(model.get_config())) == model.get_config()


@pytest.mark.parametrize(
    "settings",
    [{}, dict(dynamic_binarization=True, kl_warmup_steps=5),
     dict(architecture="conv", num_classes=10, iw_samples=2)],
)
def test_every_layer_is_built_at_construction(settings, tmp_path):
    # Keras's JAX predict_on_batch runs the whole model eagerly, at every
    # call, while any layer is unbuilt (it made the likelihood 5x slower).
    model = VAE(latent_dim=3, hidden_dim=16, **settings)
    path = tmp_path / "model.keras"
    save_model(model, path)
    for instance in (model, load_model(path)):
        assert [layer.name for layer in instance._flatten_layers() if not layer.built] == []


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    model, _ = trained
    folder = tmp_path_factory.mktemp("saved")
    path = folder / "model.keras"
    save_model(model, path)
    z = model.sample_prior(16, seed=0)
    np.save(folder / "z.npy", z)
    return path, folder, model.decode(z)


def test_load_in_process_keeps_weights_and_optimizer(saved, trained):
    path, _, expected = saved
    model, _ = trained
    loaded = load_model(path)
    assert isinstance(loaded, VAE)
    assert loaded.get_config() == model.get_config()
    z = model.sample_prior(16, seed=0)
    np.testing.assert_allclose(loaded.decode(z), expected, atol=1e-6)
    assert loaded.optimizer is not None
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)
