"""Mixed precision: 16-bit networks, float32 variables, objective and likelihood."""

import json

import keras
import numpy as np
import pytest

from keras_vae.model import load_model
from keras_vae import VAE, evaluation
from keras_vae.model import fresh_copy
from keras_vae.engines.common import dtype_policy

to_numpy = keras.ops.convert_to_numpy
SETTINGS = dict(latent_dim=4, hidden_dim=32, seed=0)


def images(count=64, seed=0):
    return (np.random.default_rng(seed).random((count, 28, 28, 1)) > 0.6).astype("float32")


@pytest.mark.parametrize("settings", [{}, dict(latent_layers=2, prior="vamp", pseudo_inputs=8, iw_samples=2)])
def test_mixed_bfloat16_computes_in_16_bits_and_the_loss_in_float32(settings):
    keras.utils.set_random_seed(0)
    reference = VAE(**SETTINGS, **settings)
    with dtype_policy("mixed_bfloat16"):
        mixed = VAE(**SETTINGS, **settings)
    for target, source in zip(mixed.variables, reference.variables, strict=True):
        target.assign(to_numpy(source))
    assert mixed.decoder.layers[-2].compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in mixed.trainable_variables)
    x = images()
    outputs = mixed(x)
    dtypes = {k: keras.backend.standardize_dtype(t.dtype) for k, t in outputs.items()}
    assert set(dtypes.values()) == {"float32"}, dtypes
    got = {k: float(to_numpy(v)) for k, v in mixed.compute_losses(x).items()}
    expected = {k: float(to_numpy(v)) for k, v in reference.compute_losses(x).items()}
    for key in ("reconstruction_loss", "loss"):
        # bfloat16 keeps 8 bits of mantissa: close, and not the float32 number.
        assert got[key] == pytest.approx(expected[key], rel=0.02), key
    assert got["reconstruction_loss"] != expected["reconstruction_loss"]


def test_a_mixed_model_trains_and_its_float32_copy_evaluates_exactly():
    keras.utils.set_random_seed(0)
    with dtype_policy("mixed_bfloat16"):
        model = VAE(**SETTINGS)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = images(256)
    before = [to_numpy(v).copy() for v in model.trainable_variables]
    history = model.fit(x, epochs=2, batch_size=64, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert any(not np.array_equal(b, to_numpy(v)) for b, v in zip(before, model.trainable_variables))
    copy = fresh_copy(model)  # built under float32, the same weights
    assert copy.decoder.layers[-2].compute_dtype == "float32"
    reference = VAE(**SETTINGS)
    for target, source in zip(reference.variables, model.variables, strict=True):
        target.assign(to_numpy(source))
    np.testing.assert_allclose(copy.generate(8, seed=1), reference.generate(8, seed=1), atol=1e-6)
    result = evaluation.evaluate_likelihood(copy, x[:8], iw_samples=20)
    assert result == evaluation.evaluate_likelihood(reference, x[:8], iw_samples=20)


def test_mixed_float16_scales_the_loss_and_unscales_the_gradients():
    """One SGD step under mixed_float16 (a LossScaleOptimizer) moves the
    weights as far as the float32 step: the loss is scaled once before the
    gradient and the gradients unscaled once after. (The initial scale is 2^8:
    at Keras's default 2^15 the first float16 gradients overflow, and the
    dynamic scale skips that step and halves itself, as it should.)"""
    updates = {}
    for policy in ("float32", "mixed_float16"):
        keras.utils.set_random_seed(0)
        with dtype_policy(policy):
            model = VAE(**SETTINGS)
            optimizer = keras.optimizers.SGD(1e-3)
            if policy == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**8)
            model.compile(optimizer=optimizer)
        before = [to_numpy(v).copy() for v in model.trainable_variables]
        model.fit(images(128), epochs=1, batch_size=128, verbose=0, shuffle=False)
        updates[policy] = np.sqrt(sum(
            float(((to_numpy(v) - b) ** 2).sum()) for b, v in zip(before, model.trainable_variables)
        ))
    assert updates["float32"] > 0
    assert updates["mixed_float16"] / updates["float32"] == pytest.approx(1.0, abs=0.05), updates


@pytest.mark.slow
def test_a_mixed_bfloat16_run_saves_a_float32_model(tmp_path):
    # In this process: the flag's way into TrainConfig is test_train_config's.
    from keras_vae.run.config import TrainConfig
    from keras_vae.run.trainer import train_and_evaluate

    run = tmp_path / "run"
    config = TrainConfig(
        binarize="dynamic", epochs=1, num_train=512, num_test=64, hidden_dim=32, latent_dim=4,
        dtype_policy="mixed_bfloat16", final_iw_samples=10,
    )
    train_and_evaluate(config, run, verbose=0)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert json.loads((run / "config.json").read_text())["config"]["dtype_policy"] == "mixed_bfloat16"
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite([metrics["test_loss"], metrics["test_iw_nll"]]).all()
    loaded = load_model(run / "model.keras")
    assert loaded.decoder.layers[-2].compute_dtype == "float32"
