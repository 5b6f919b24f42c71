"""A user's own tf.distribute strategy gets the update of one device."""

import json

import pytest

from conftest import run_python

# Two logical CPU devices stand in for two GPUs. One SGD step on one batch of
# 256 images, inside a MirroredStrategy scope or not; prints the norm of the
# weight update. The two runs draw different sampling noise, so the norms are
# compared, not the updates.
MIRRORED_STEP = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import keras_vae

def update_norm(scope):
    keras.utils.set_random_seed(0)
    with scope:
        model = keras_vae.VAE(latent_dim=4, hidden_dim=32)
        model.compile(optimizer=keras.optimizers.SGD(1e-3))
    before = [np.array(w) for w in model.trainable_weights]
    x = np.random.default_rng(0).random((256, 28, 28, 1)).astype("float32")
    history = model.fit(x, batch_size=256, epochs=1, shuffle=False, verbose=0)
    after = [np.array(w) for w in model.trainable_weights]
    delta = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(after, before)))
    return float(delta), float(history.history["loss"][0])

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
one, one_loss = update_norm(tf.distribute.get_strategy().scope())
two, two_loss = update_norm(strategy.scope())
print(json.dumps({"one": one, "two": two, "one_loss": one_loss, "two_loss": two_loss}))
"""


@pytest.mark.slow
def test_mirrored_strategy_update_equals_the_one_device_update(backend):
    if backend != "tensorflow":
        pytest.skip("tf.distribute is TensorFlow's")
    result = run_python(["-c", MIRRORED_STEP], backend="tensorflow")
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["two"] / numbers["one"] == pytest.approx(1.0, abs=0.05)  # was 2.0
    assert numbers["two_loss"] == pytest.approx(numbers["one_loss"], rel=0.05)
