"""The reparameterization layer: right distribution, fresh noise in compiled steps."""

import keras
import numpy as np

from keras_vae.model import load_model, save_model
from keras_vae import VAE, Sampling


def test_sample_mean_and_variance_match_parameters():
    num = 50_000
    mean = np.array([[-2.0, 0.0, 0.5, 3.0]], dtype="float32")
    log_var = np.array([[-3.0, 0.0, 1.0, 0.5]], dtype="float32")
    layer = Sampling(seed=1)
    z = keras.ops.convert_to_numpy(
        layer([np.repeat(mean, num, 0), np.repeat(log_var, num, 0)])
    )
    variance = np.exp(log_var[0])
    # Five standard errors of the sample mean and of the sample variance.
    mean_tolerance = 5 * np.sqrt(variance / num)
    variance_tolerance = 5 * variance * np.sqrt(2.0 / (num - 1))
    np.testing.assert_array_less(np.abs(z.mean(0) - mean[0]), mean_tolerance)
    np.testing.assert_array_less(np.abs(z.var(0, ddof=1) - variance), variance_tolerance)


def test_each_call_draws_fresh_noise():
    layer = Sampling(seed=3)
    zeros = np.zeros((4, 2), dtype="float32")
    first = keras.ops.convert_to_numpy(layer([zeros, zeros]))
    second = keras.ops.convert_to_numpy(layer([zeros, zeros]))
    assert not np.allclose(first, second)


def test_same_seed_same_noise():
    zeros = np.zeros((4, 2), dtype="float32")
    a = keras.ops.convert_to_numpy(Sampling(seed=7)([zeros, zeros]))
    b = keras.ops.convert_to_numpy(Sampling(seed=7)([zeros, zeros]))
    np.testing.assert_array_equal(a, b)


def _seed_state_after_fit(steps):
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=2, hidden_dim=8, seed=5)
    model.compile(optimizer="adam")
    images = np.random.default_rng(0).random((8 * steps, 28, 28, 1)).astype("float32")
    before = keras.ops.convert_to_numpy(model.sampling.seed_generator.state.value).copy()
    model.fit(images, batch_size=8, epochs=1, shuffle=False, verbose=0)
    after = keras.ops.convert_to_numpy(model.sampling.seed_generator.state.value)
    return before, after


def test_noise_state_advances_inside_compiled_fit():
    # If the compiled step did not thread the generator's state, every step
    # would reuse the same noise and the state would not move.
    before, after_one = _seed_state_after_fit(steps=1)
    _, after_three = _seed_state_after_fit(steps=3)
    assert not np.array_equal(before, after_one)
    assert not np.array_equal(after_one, after_three)


def test_seed_state_is_saved_with_the_model(tmp_path):
    # Keras does not save seed generators; SeededLayer does, so a resumed or
    # reloaded model continues the noise stream instead of replaying it.

    model = VAE(latent_dim=2, hidden_dim=4, seed=1, dynamic_binarization=True)
    zeros = np.zeros((1, 2), dtype="float32")
    for _ in range(3):
        model.sampling([zeros, zeros])
    model.binarization(np.full((1, 28, 28, 1), 0.5, dtype="float32"), training=True)
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    for layer in ("sampling", "binarization"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(getattr(loaded, layer).seed_generator.state.value),
            keras.ops.convert_to_numpy(getattr(model, layer).seed_generator.state.value),
        )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.sampling([zeros, zeros])),
        keras.ops.convert_to_numpy(model.sampling([zeros, zeros])),
    )
