"""A model saved on any backend loads on every backend and computes the same.

Every family, the 8-bit likelihoods and a colour model among them.

The whole matrix in six child processes, once per suite (`any_backend`):
one per backend trains every model family a little (so the seeds, the KL
warm-up's counter and the learned priors are in the files) and saves it with
what it computes: decoded and generated images and the posterior; then one
per backend loads every saved file, and computes the same. Every pair of
engines must agree; the same engine in another process gives the same
images (the original model's file; the in-process tests load every family
on its own engine). The importance-sampled likelihood, a computation rather
than a file's content, is compared on the files of one saver (`LIKELIHOOD`),
so each family's likelihood is computed once per engine.
"""

import json

import numpy as np
import pytest

from conftest import BACKENDS, run_python_together
from test_architectures import VARIANTS as ARCHITECTURES
from test_latent_models import VARIANTS as LATENT_MODELS

pytestmark = [pytest.mark.any_backend, pytest.mark.slow]

FAMILIES = {
    "mlp": {},  # the original design
    "dynamic": dict(dynamic_binarization=True),
    **ARCHITECTURES,  # conv, resnet, two conditional models (one with KL warm-up)
    **{  # the VampPrior and the two-layer models, as test_latent_models trains them
        name: dict(hidden_dim=32, dynamic_binarization=True, **settings)
        for name, settings in LATENT_MODELS.items()
    },
    # The 8-bit likelihoods, on grey MNIST and on colour images.
    "logistic": dict(likelihood="logistic"),
    "colour-mixture": dict(
        likelihood="logistic-mixture", mixture_components=3, image_shape=[8, 8, 3],
        architecture="conv", filters=[4, 8], hidden_dim=32,
    ),
}
TRAINING_STEPS = 16  # 512 images in batches of 32, one epoch
#: The saver whose files every engine also scores by importance sampling.
LIKELIHOOD = "torch"

CHILD = """
import json, sys
from pathlib import Path
import numpy as np
import keras_vae
keras_vae.start()
import keras
from keras_vae import evaluation
from keras_vae.model import VAE, load_model, save_model

mode, folder, likelihood_saver = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
backend = keras.backend.backend()
x, y, binary, colour = (np.load(folder / f"{name}.npy") for name in ("x", "y", "binary", "colour"))

def images_of(model):
    # the family's training images, and the test images its likelihood scores
    if tuple(model.image_shape) == colour.shape[1:]:
        return colour, colour[-16:]
    return x, (binary if model.likelihood == "bernoulli" else x[-16:])

def outputs(model, saver):
    images, scored = images_of(model)
    labels = y[:16] if model.conditional else None
    z = np.random.default_rng(3).standard_normal((16, model.code_dim)).astype("float32")
    z_mean, z_log_var = model.encode(images[:16], labels)
    warmup = model.warmup_step
    found = dict(
        decoded=model.decode(z, labels), generated=model.generate(16, seed=5, labels=labels),
        z_mean=z_mean, z_log_var=z_log_var,
        warmup=-1.0 if warmup is None else float(keras.ops.convert_to_numpy(warmup)),
    )
    if saver == likelihood_saver:
        numbers = evaluation.evaluate_likelihood(model, scored, labels, iw_samples=20, seed=0)
        found["likelihood"] = [numbers[k] for k in ("neg_elbo", "reconstruction", "kl", "iw_nll", "active_units")]
    return found

if mode == "save":
    for name, settings in json.loads((folder / "families.json").read_text()).items():
        keras.utils.set_random_seed(0)
        model = VAE(latent_dim=4, seed=1, **settings)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        images = images_of(model)[0]
        model.fit((images, y) if model.conditional else images, epochs=1, batch_size=32, verbose=0)
        save_model(model, folder / f"{backend}-{name}.keras")
        np.savez(folder / f"{backend}-{name}.{backend}.saver.npz", **outputs(model, backend))
else:  # the other engines' files; of its own, one (the in-process tests load the rest)
    for path in sorted(folder.glob("*.keras")):
        if not path.stem.startswith(backend) or path.stem == f"{backend}-mlp":
            saver = path.stem.split("-", 1)[0]
            np.savez(folder / f"{path.stem}.{backend}.npz", **outputs(load_model(path), saver))
"""


@pytest.fixture(scope="module")
def matrix(mnist_subset, tmp_path_factory):
    """The folder of every backend's saved families and every loader's outputs."""
    from keras_vae import data

    folder = tmp_path_factory.mktemp("across-backends")
    (folder / "families.json").write_text(json.dumps(FAMILIES))
    np.save(folder / "x.npy", mnist_subset.x_train[:512])
    np.save(folder / "y.npy", mnist_subset.y_train[:512])
    np.save(folder / "binary.npy", data.binarize(mnist_subset.x_test[:16], seed=0))
    # Colour images with structure: MNIST digits shrunk to 8x8, tinted per label.
    grey = mnist_subset.x_train[:512, ::4, ::4, 0][:, :7, :7]
    tint = np.array([[1.0, 0.3, 0.2], [0.2, 0.5, 1.0]])[mnist_subset.y_train[:512] % 2]
    colour = np.zeros((512, 8, 8, 3), dtype="uint8")
    colour[:, :7, :7] = (grey[..., None] * tint[:, None, None, :]).astype("uint8")
    np.save(folder / "colour.npy", colour)
    for mode in ("save", "load"):  # the three engines at once, then the next step
        jobs = [(["-c", CHILD, mode, folder, LIKELIHOOD], backend) for backend in BACKENDS]
        for backend, (code, stderr) in zip(BACKENDS, run_python_together(jobs)):
            assert code == 0, f"{mode} on {backend}:\n{stderr[-3000:]}"
    return folder


@pytest.mark.parametrize("saver", BACKENDS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_saved_model_computes_the_same_on_every_backend(matrix, saver, family):
    expected = np.load(matrix / f"{saver}-{family}.{saver}.saver.npz")
    warmup = TRAINING_STEPS if FAMILIES[family].get("kl_warmup_steps") else -1
    assert float(expected["warmup"]) == warmup
    for loader in BACKENDS:
        if loader == saver and family != "mlp":
            continue  # the in-process tests load these on their own engine
        loaded = np.load(matrix / f"{saver}-{family}.{loader}.npz")
        where = f"{family} saved on {saver}, loaded on {loader}"
        if loader == saver:  # the same engine in another process: the same images
            np.testing.assert_array_equal(loaded["generated"], expected["generated"], err_msg=where)
        for key in ("decoded", "generated", "z_mean", "z_log_var"):
            np.testing.assert_allclose(loaded[key], expected[key], atol=1e-5, err_msg=f"{key}: {where}")
        if saver == LIKELIHOOD:
            np.testing.assert_allclose(loaded["likelihood"], expected["likelihood"], atol=1e-3, err_msg=where)
        assert float(loaded["warmup"]) == warmup, where
