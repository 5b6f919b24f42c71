"""The per-backend gradient steps: the torch step's fused Adam is Keras's Adam."""

import keras
import numpy as np
import pytest

from keras_vae import VAE, engines

torch_only = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="the fused Adam path is the torch step's"
)

SHAPES = [(7, 5), (5,), (3,)]


def _variables(rng):
    values = [rng.normal(size=shape).astype("float32") for shape in SHAPES]
    return [keras.Variable(v) for v in values], [keras.Variable(v) for v in values]


def _built_adam():
    """A built Keras Adam, its variables and zero gradients for them."""
    variables, _ = _variables(np.random.default_rng(0))
    optimizer = keras.optimizers.Adam()
    optimizer.build(variables)
    return optimizer, variables, [np.zeros(shape, "float32") for shape in SHAPES]


@torch_only
@pytest.mark.parametrize(
    "learning_rate",
    [1e-3, keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=15)],
    ids=["constant", "cosine"],
)
@pytest.mark.parametrize("scale", [1.0, 1e-7], ids=["unit", "epsilon-sized"])
def test_fused_adam_is_keras_adam(learning_rate, scale):
    # Gradients of epsilon's size make the placement of epsilon matter.
    import torch

    rng = np.random.default_rng(0)
    reference, fused = _variables(rng)
    keras_adam = keras.optimizers.Adam(learning_rate)
    fused_adam = keras.optimizers.Adam(learning_rate)
    keras_adam.build(reference)
    fused_adam.build(fused)
    for _ in range(20):
        gradients = [
            torch.from_numpy((scale * rng.normal(size=shape)).astype("float32"))
            for shape in SHAPES
        ]
        with torch.no_grad():
            keras_adam.apply([g.clone() for g in gradients], reference)
            assert engines.current.fused_adam_applies(fused_adam, gradients, fused)
            engines.current.fused_adam(fused_adam, [g.clone() for g in gradients], fused)
    assert int(fused_adam.iterations.numpy()) == int(keras_adam.iterations.numpy()) == 20
    for a, b in zip(keras_adam.variables, fused_adam.variables):  # weights' moments too
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6)
    initial, _ = _variables(np.random.default_rng(0))
    for a, b, start in zip(reference, fused, initial):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-6)
        assert np.abs(b.numpy() - start.numpy()).min() > 1e-6  # it did move


OTHER_OPTIMIZERS = {
    "amsgrad": lambda: keras.optimizers.Adam(amsgrad=True),
    "clipnorm": lambda: keras.optimizers.Adam(clipnorm=1.0),
    "global_clipnorm": lambda: keras.optimizers.Adam(global_clipnorm=1.0),
    "weight_decay": lambda: keras.optimizers.Adam(weight_decay=0.1),
    "ema": lambda: keras.optimizers.Adam(use_ema=True),
    "accumulation": lambda: keras.optimizers.Adam(gradient_accumulation_steps=2),
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
}


@torch_only
@pytest.mark.parametrize("name", OTHER_OPTIMIZERS)
def test_other_optimizers_take_keras_apply(name, mnist_subset):
    variables, _ = _variables(np.random.default_rng(0))
    gradients = [np.zeros(shape, "float32") for shape in SHAPES]
    optimizer = OTHER_OPTIMIZERS[name]()
    optimizer.build(variables)
    assert not engines.current.fused_adam_applies(optimizer, gradients, variables)
    # ... and the model still trains, through `optimizer.apply`.
    model = VAE(seed=0)
    model.compile(optimizer=OTHER_OPTIMIZERS[name]())
    history = model.fit(mnist_subset.x_train[:256], batch_size=128, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@torch_only
def test_missing_gradient_or_a_constraint_takes_keras_apply():
    optimizer, variables, gradients = _built_adam()
    assert not engines.current.fused_adam_applies(keras.optimizers.Adam(), gradients, variables)  # not built
    assert engines.current.fused_adam_applies(optimizer, gradients, variables)
    assert not engines.current.fused_adam_applies(optimizer, [None, *gradients[1:]], variables)
    layer = keras.layers.Dense(3, kernel_constraint="non_neg")
    layer.build((None, 4))
    constrained = layer.kernel
    gradients = [*gradients[:2], np.zeros((4, 3), "float32")]
    optimizer = keras.optimizers.Adam()
    optimizer.build([*variables[:2], constrained])
    assert not engines.current.fused_adam_applies(optimizer, gradients, [*variables[:2], constrained])


@torch_only
def test_torch_compile_trains_through_keras_adam(monkeypatch):
    # Inside torch.compile the step keeps Keras's Adam (the fused kernel's
    # host-side step count cannot be traced). What is checked is the traced
    # step (TorchDynamo and AOTAutograd), not Inductor's C++ code generation,
    # which took a minute here: the steps compile with the "aot_eager" backend.
    import functools

    import torch

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    optimizer, variables, gradients = _built_adam()
    assert torch.compile(lambda: engines.current.fused_adam_applies(optimizer, gradients, variables))() is False

    images = np.random.default_rng(0).random((256, 28, 28, 1), dtype="float32")
    model = VAE(latent_dim=2, hidden_dim=16, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    losses = model.fit(images, epochs=2, batch_size=128, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
