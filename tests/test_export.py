"""Exported decoders and encoders run without keras-vae and match the model."""

import json

import numpy as np
import pytest

from conftest import run_python, run_script
from keras_vae.model import load_model, save_model
from keras_vae import VAE, export
from keras_vae.backend import EXPORT_BACKENDS

pytestmark = pytest.mark.slow

# Loads an artifact with TensorFlow or onnxruntime alone (keras-vae is never
# imported) and runs it on the inputs saved beside it.
LOADER = """
import json, sys
import numpy as np
folder, kind = sys.argv[1], sys.argv[2]
inputs = dict(np.load(folder + "/inputs.npz"))
outputs = {}
if kind == "tf_saved_model":
    import tensorflow as tf
    for name, args in (("decoder", ["z"]), ("encoder", ["image"])):
        served = tf.saved_model.load(folder + "/export/" + name)
        result = served.serve(*[inputs[a] for a in args])
        outputs[name] = [np.asarray(t).tolist() for t in (result if isinstance(result, (list, tuple)) else [result])]
else:
    import onnxruntime
    for name, arg in (("decoder", "z"), ("encoder", "image")):
        session = onnxruntime.InferenceSession(folder + "/export/" + name + ".onnx")
        feed = {session.get_inputs()[0].name: inputs[arg]}
        outputs[name] = [t.tolist() for t in session.run(None, feed)]
assert not any(m == "keras_vae" or m.startswith("keras_vae.") for m in sys.modules)
print(json.dumps(outputs))
"""


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model = VAE(latent_dim=3, hidden_dim=16, seed=0)
    save_model(model, folder / "model.keras")
    return folder / "model.keras"


@pytest.mark.parametrize("export_format", export.FORMATS)
def test_exported_networks_match_the_model_without_keras_vae(saved_model, backend, export_format, tmp_path):
    if backend not in EXPORT_BACKENDS[export_format]:
        result = run_script("export.py", saved_model, "--format", export_format, "--output-dir", tmp_path / "export")
        assert result.returncode == 2 and "not supported on the" in result.stderr
        assert not (tmp_path / "export").exists()
        return
    result = run_script("export.py", saved_model, "--format", export_format, "--output-dir", tmp_path / "export")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip() == "", result.stderr[-3000:]  # no exporter noise

    model = load_model(saved_model)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 3)).astype("float32")  # a batch size never traced
    images = rng.random((5, 28, 28, 1)).astype("float32")
    np.savez(tmp_path / "inputs.npz", z=z, image=images)
    loaded = run_python(["-c", LOADER, tmp_path, export_format])
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    outputs = json.loads(loaded.stdout.strip().splitlines()[-1])

    np.testing.assert_allclose(outputs["decoder"][0], model.decode(z), atol=1e-5)
    z_mean, z_log_var = model.encode(images)
    np.testing.assert_allclose(outputs["encoder"][0], z_mean, atol=1e-5)
    np.testing.assert_allclose(outputs["encoder"][1], z_log_var, atol=1e-5)


def test_conditional_networks_take_the_label(tmp_path):
    model = VAE(latent_dim=2, hidden_dim=8, num_classes=10)
    assert [tuple(t.shape) for t in export.serving_decoder(model).inputs] == [(None, 2), (None, 10)]
    assert [tuple(t.shape) for t in export.serving_encoder(model).inputs] == [(None, 28, 28, 1), (None, 10)]
    z = np.zeros((4, 2), "float32")
    labels = np.eye(10, dtype="float32")[[1, 2, 3, 4]]
    np.testing.assert_allclose(
        np.asarray(export.serving_decoder(model).predict([z, labels], verbose=0)),
        model.decode(z, labels=[1, 2, 3, 4]), atol=1e-6,
    )


def test_the_served_decoder_gives_an_8_bit_likelihoods_mean(tmp_path):
    model = VAE(latent_dim=2, hidden_dim=8, likelihood="logistic-mixture", mixture_components=2, image_shape=(4, 4, 3))
    decoder = export.serving_decoder(model)
    assert decoder.output.name.startswith("mean") or decoder.layers[-1].name == "mean"
    z = np.random.default_rng(0).standard_normal((3, 2)).astype("float32")
    np.testing.assert_allclose(np.asarray(decoder.predict(z, verbose=0)), model.decode(z), atol=1e-6)
