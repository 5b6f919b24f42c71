"""The conv and resnet architectures and the conditional VAE: they train,
save, load under every backend, and generate like the original MLP."""

import json

import keras
import numpy as np
import pytest

from keras_vae.model import load_model, save_model
from keras_vae import VAE, build_decoder, build_encoder
from keras_vae.model.config import ARCHITECTURES, parameter_count

# Small widths keep the suite fast; the layers are those of the defaults.
VARIANTS = {
    "conv": dict(architecture="conv", filters=(8, 16), hidden_dim=32),
    "resnet": dict(architecture="resnet", filters=(8, 16), blocks=2, hidden_dim=32),
    "conditional-mlp": dict(num_classes=10, hidden_dim=32),
    "conditional-resnet-iwae": dict(
        architecture="resnet", filters=(8, 16), hidden_dim=32, num_classes=10,
        iw_samples=3, kl_warmup_steps=100, beta=0.8,
    ),
}




@pytest.mark.parametrize("architecture", ["conv", "resnet"])
def test_networks_map_images_to_latents_and_back(architecture):
    encoder = build_encoder(latent_dim=6, hidden_dim=16, architecture=architecture, filters=(4, 8))
    decoder = build_decoder(latent_dim=6, hidden_dim=16, architecture=architecture, filters=(4, 8))
    z_mean, z_log_var = encoder(np.zeros((3, 28, 28, 1), "float32"))
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == (3, 6)
    assert tuple(decoder(np.zeros((3, 6), "float32")).shape) == (3, 28, 28, 1)
    convolutions = [layer for layer in encoder.layers if "conv" in type(layer).__name__.lower()]
    # Two strided stages; the resnet adds a block of two convolutions to each.
    assert len(convolutions) == (2 if architecture == "conv" else 6)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("num_classes", [0, 10])
def test_parameter_count_is_the_built_networks(architecture, num_classes):
    settings = dict(
        latent_dim=3, hidden_dim=24, image_shape=(28, 28, 1), architecture=architecture,
        filters=(4, 6), blocks=2, num_classes=num_classes,
    )
    built = build_encoder(**settings).count_params() + build_decoder(**settings).count_params()
    assert parameter_count(**settings) == built


def test_bad_architectures_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_encoder(architecture="transformer")
    with pytest.raises(ValueError, match="divisible by 8"):
        build_decoder(architecture="conv", filters=(8, 16, 32))
    with pytest.raises(ValueError, match="blocks"):
        build_encoder(architecture="resnet", blocks=0)


@pytest.fixture(scope="module")
def trained(mnist_subset, tmp_path_factory):
    """Each variant trained for one short epoch and saved."""
    folder = tmp_path_factory.mktemp("variants")
    x, y = mnist_subset.x_train[:1024], mnist_subset.y_train[:1024]
    models = {}
    for name, settings in VARIANTS.items():
        keras.utils.set_random_seed(0)
        model = VAE(latent_dim=4, **settings)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        inputs = (x, y) if model.conditional else x
        held = (x[:256], y[:256]) if model.conditional else x[:256]
        history = model.fit(inputs, epochs=2, batch_size=32, verbose=0, validation_data=(held,))
        save_model(model, folder / f"{name}.keras")
        models[name] = (model, history.history)
    z = models["conv"][0].sample_prior(20, seed=3)
    np.save(folder / "z.npy", z)
    return folder, z, models


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_train_and_log_objective_and_elbo(trained, name):
    _, _, models = trained
    model, history = models[name]
    for key in ("loss", "neg_elbo", "reconstruction_loss", "kl_loss", "val_loss", "val_neg_elbo"):
        assert np.isfinite(history[key]).all(), key
    # 64 steps take every variant well below the 543 nats of p = 0.5 pixels,
    # and the second epoch improves on the first.
    assert history["val_neg_elbo"][-1] < min(450, history["val_neg_elbo"][0]), history["val_neg_elbo"]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_round_trip_in_process(trained, name):
    folder, z, models = trained
    model, _ = models[name]
    loaded = load_model(folder / f"{name}.keras")
    assert loaded.get_config() == model.get_config()
    assert json.loads(json.dumps(model.get_config())) == model.get_config()
    labels = np.arange(len(z)) % 10 if model.conditional else None
    np.testing.assert_allclose(loaded.decode(z, labels), model.decode(z, labels), atol=1e-6)
    if model.kl_warmup_steps:  # 64 steps of warm-up are saved with the model
        assert float(keras.ops.convert_to_numpy(loaded.warmup_step)) == 64


def test_conditional_generation_follows_the_label(trained):
    _, _, models = trained
    model, _ = models["conditional-mlp"]
    by_class = model.generate_by_class(4, seed=0)
    assert by_class.shape == (40, 28, 28, 1)
    np.testing.assert_allclose(by_class[:4], model.generate(4, seed=0, labels=0), atol=1e-6)
    np.testing.assert_allclose(by_class[28:32], model.generate(4, seed=0, labels=7), atol=1e-6)
    # The same z decoded as two labels gives two different images.
    assert np.abs(by_class[:4] - by_class[28:32]).max() > 1e-3


def test_labels_are_checked(trained, mnist_subset):
    _, z, models = trained
    conditional, _ = models["conditional-mlp"]
    unconditional, _ = models["conv"]
    with pytest.raises(ValueError, match="conditional VAE: give labels"):
        conditional.decode(z)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        conditional.generate(3, labels=10)
    with pytest.raises(ValueError, match="not conditional"):
        unconditional.decode(z, labels=3)
    with pytest.raises(ValueError, match="not conditional"):
        unconditional.generate_by_class(2)


def test_likelihood_of_a_conditional_vae_needs_and_uses_labels(trained, mnist_subset):
    from keras_vae import evaluation

    _, _, models = trained
    model, _ = models["conditional-mlp"]
    images = (mnist_subset.x_test[:20] > 0.5).astype("float32")
    labels = mnist_subset.y_test[:20]
    with pytest.raises(ValueError, match="give labels"):
        evaluation.evaluate_likelihood(model, images, iw_samples=10)
    right = evaluation.evaluate_likelihood(model, images, labels=labels, iw_samples=200)
    wrong = evaluation.evaluate_likelihood(model, images, labels=(labels + 5) % 10, iw_samples=200)
    assert right["iw_nll"] <= right["neg_elbo"] + 0.5
    assert right["iw_nll"] != wrong["iw_nll"]
