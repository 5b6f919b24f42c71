"""The command-line scripts end to end, and their answers to bad input."""

import json
import shutil
import subprocess
import zipfile

import numpy as np
import pytest

from conftest import error_lines, run_here, run_python, run_script

pytestmark = pytest.mark.slow

EXPECTED_FILES = (
    "model.keras",
    "best.keras",
    "config.json",
    "history.csv",
    "metrics.json",
    "samples/epoch_001.png",
    "samples/epoch_002.png",
    "reconstructions/epoch_001.png",
    "reconstructions/epoch_002.png",
    "figures/latent_scatter.png",
    "figures/latent_manifold.png",
    "figures/interpolation.png",
    "figures/reconstructions.png",
    "figures/training_curves.png",
    "figures/samples.gif",
)


TRAIN_OUTPUT = {}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    result = run_script(
        "train.py",
        "--epochs", "2", "--num-train", "1024", "--num-test", "256",
        "--latent-dim", "8", "--hidden-dim", "64", "--seed", "1",
        "--binarize", "dynamic", "--final-iw-samples", "20", "--tensorboard",
        "--output-dir", folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend" in result.stdout and "test loss" in result.stdout
    TRAIN_OUTPUT.update(stdout=result.stdout, stderr=result.stderr)
    return folder


def test_train_writes_every_output(run_dir, backend):
    for name in EXPECTED_FILES:
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["backend"] == backend
    assert config["config"]["epochs"] == 2
    assert config["config"]["latent_dim"] == 8
    assert config["config"]["seed"] == 1
    assert config["packages"]["keras"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backend"] == backend and metrics["epochs"] == 2
    assert metrics["test_loss"] == pytest.approx(
        metrics["test_reconstruction_loss"] + metrics["test_kl_loss"], rel=1e-5
    )
    assert metrics["seconds_per_epoch"] > 0
    assert metrics["test_iw_samples"] == 20
    assert metrics["test_iw_nll"] < metrics["test_neg_elbo"] + 1.0
    assert config["config"]["binarize"] == "dynamic"
    lines = (run_dir / "history.csv").read_text().splitlines()
    assert lines[0].split(",")[:5] == ["epoch", "loss", "neg_elbo", "reconstruction_loss", "kl_loss"]
    assert "val_loss" in lines[0]
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]


def test_output_to_a_file_is_one_line_per_epoch_without_tensorflow_noise(run_dir):
    # The fixture's output went to a pipe, as to a log file: one line per
    # epoch (Keras's verbose=2), no progress bar, no TensorFlow start-up lines.
    stdout, stderr = TRAIN_OUTPUT["stdout"], TRAIN_OUTPUT["stderr"]
    assert stdout.count("Epoch 1/2") == 1 and stdout.count("Epoch 2/2") == 1
    assert "\r" not in stdout and "━" not in stdout
    assert len([line for line in stdout.splitlines() if "val_loss" in line]) == 2
    assert stderr.strip() == "", stderr[-2000:]


def test_tensorboard_logs_every_loss_and_the_sample_grid(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {}
    for name in ("train", "validation"):
        events = EventAccumulator(str(run_dir / "logs" / name), size_guidance={"tensors": 0})
        events.Reload()
        tags[name] = set(events.Tags()["tensors"])
    losses = {"epoch_loss", "epoch_neg_elbo", "epoch_reconstruction_loss", "epoch_kl_loss"}
    assert losses <= tags["train"] and losses <= tags["validation"]
    assert "samples" in tags["train"]
    events = EventAccumulator(str(run_dir / "logs" / "train"), size_guidance={"tensors": 0})
    events.Reload()
    assert [event.step for event in events.Tensors("samples")] == [0, 1]  # one per epoch


@pytest.mark.any_backend  # the same images on every backend: test_across_backends
def test_generate_writes_png_and_npy(run_dir, tmp_path):
    png, npy = tmp_path / "grid.png", tmp_path / "samples.npy"
    result = run_here(
        "generate.py", run_dir / "model.keras", "--num", "12", "--grid", "3x4",
        "--output", png, "--npy", npy,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from PIL import Image

    image = np.asarray(Image.open(png))
    assert image.shape == (2 * (3 * 30 + 2), 2 * (4 * 30 + 2))  # 3x4 cells, x2
    assert len(np.unique(image)) > 50  # not a blank or constant grid
    samples = np.load(npy)
    assert samples.shape == (12, 28, 28)
    # Each image has structure, and the images differ from one another.
    assert samples.std(axis=(1, 2)).min() > 0.01
    assert np.abs(samples - samples.mean(0)).max() > 0.1
    assert 0.0 <= samples.min() and samples.max() <= 1.0


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A conditional conv VAE trained on the IWAE bound with KL warm-up."""
    # In this process: the flags' way into TrainConfig is test_train_config's.
    from keras_vae.cli.flags import config_from_args
    from keras_vae.cli.parsers import train_parser
    from keras_vae.run.config import TrainConfig
    from keras_vae.run.trainer import train_and_evaluate

    folder = tmp_path_factory.mktemp("conditional")
    args = train_parser("train.py").parse_args([
        "--epochs", "1", "--num-train", "512", "--num-test", "128",
        "--latent-dim", "4", "--hidden-dim", "32", "--architecture", "conv", "--filters", "8,16",
        "--conditional", "--iw-samples", "2", "--kl-warmup-epochs", "0.5", "--beta", "0.9",
        "--binarize", "dynamic",
    ])
    train_and_evaluate(config_from_args(TrainConfig, args), folder, verbose=0)
    return folder


def test_train_records_and_applies_the_improvement_flags(conditional_run):
    config = json.loads((conditional_run / "config.json").read_text())["config"]
    assert config["architecture"] == "conv" and config["filters"] == [8, 16]
    assert config["conditional"] is True and config["iw_samples"] == 2
    assert config["beta"] == 0.9 and config["kl_warmup_epochs"] == 0.5
    header = (conditional_run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "neg_elbo", "val_loss", "val_neg_elbo"} <= set(header)
    metrics = json.loads((conditional_run / "metrics.json").read_text())
    assert metrics["test_loss"] < metrics["test_neg_elbo"]  # the IWAE bound is tighter
    for name in EXPECTED_FILES:
        if "epoch_002" not in name:
            assert (conditional_run / name).is_file(), name
    from PIL import Image

    grid = np.asarray(Image.open(conditional_run / "samples" / "epoch_001.png"))
    assert grid.shape == (2 * (10 * 30 + 2), 2 * (8 * 30 + 2))  # one row per digit


@pytest.mark.any_backend  # the script's --digit; every backend generates by label in test_architectures
def test_generate_a_chosen_digit_and_every_digit(conditional_run, tmp_path):
    model = conditional_run / "model.keras"
    outputs = {}
    for digit, num in (("3", "6"), ("all", "5")):
        npy = tmp_path / f"{digit}.npy"
        result = run_here(
            "generate.py", model, "--digit", digit, "--num", num,
            "--output", tmp_path / f"{digit}.png", "--npy", npy,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[digit] = np.load(npy)
    assert outputs["3"].shape == (6, 28, 28)
    assert outputs["all"].shape == (50, 28, 28)
    # Row 3 of the grid decodes the same first five z as --digit 3.
    np.testing.assert_allclose(outputs["all"][15:20], outputs["3"][:5], atol=1e-6)


@pytest.mark.any_backend  # flags checked against the loaded model's kind
def test_generate_digit_errors(run_dir, conditional_run):
    result = run_here("generate.py", run_dir / "model.keras", "--digit", "3")
    _assert_one_line_error(result, "--digit needs a conditional model")
    result = run_here("generate.py", conditional_run / "model.keras", "--digit", "12")
    _assert_one_line_error(result, "--digit must be 0-9 or all")


def _assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.any_backend  # flags and files, checked before any engine works
def test_generate_on_missing_file(tmp_path):
    result = run_script("generate.py", tmp_path / "nothing.keras")
    _assert_one_line_error(result, "nothing.keras", "no such file")


@pytest.mark.any_backend  # flags and files, checked before any engine works
def test_generate_on_a_file_that_is_not_a_model(tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_text("this is not a model")
    result = run_script("generate.py", fake)
    _assert_one_line_error(result, "fake.keras", "not a zip archive")


@pytest.mark.any_backend  # flags and files, checked before any engine works
def test_generate_on_a_zip_that_is_not_a_model(tmp_path):
    fake = tmp_path / "archive.keras"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("readme.txt", "hello")
    result = run_script("generate.py", fake)
    _assert_one_line_error(result, "archive.keras", "not a Keras model")


@pytest.mark.any_backend  # flags and files, checked before any engine works
def test_train_offline_without_data_says_how_to_provide_it(tmp_path):
    result = run_script(
        "train.py", "--epochs", "1", "--output-dir", tmp_path / "run",
        env={"TFDS_DATA_DIR": str(tmp_path / "empty")}, timeout=120,
    )
    _assert_one_line_error(result, "cannot be downloaded", "--data-dir", "--manual-dir")
    assert not (tmp_path / "run").exists()


@pytest.mark.any_backend  # flags and files, checked before any engine works
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "epochs must be > 0"),
        (["--batch-size", "-1"], "batch_size must be > 0"),
        (["--latent-dim", "0"], "latent_dim must be > 0"),
        (["--learning-rate", "0"], "learning_rate must be > 0"),
        (["--dataset", "CIFAR 10"], "unknown dataset 'CIFAR 10'"),
        (["--binarize", "sometimes"], "invalid choice: 'sometimes'"),
        (["--iw-samples", "5", "--free-bits", "0.5"], "free bits apply to the VAE objective"),
        (["--validation-split", "60000"], "leaves no training image"),
        (["--prior", "vamp", "--conditional"], "for unconditional VAEs"),
        (["--latent-layers", "3"], "invalid choice: 3"),
    ],
)
def test_train_rejects_bad_flags(flags, message):
    _assert_one_line_error(run_script("train.py", *flags), message)


@pytest.mark.any_backend  # flags and files, checked before any engine works
@pytest.mark.parametrize("name", ["train.py", "generate.py", "evaluate.py", "visualize.py", "export.py", "explore.py"])
def test_unknown_backend_is_named(tmp_path, name):
    # Good flags and a good model file: the backend is the error.
    model = [] if name == "train.py" else ["--pretrained", "mlp-grey"]
    result = run_script(name, *model, backend="mxnet")
    _assert_one_line_error(result, "mxnet", "tensorflow, jax, torch")
    assert result.returncode == 2


@pytest.mark.any_backend  # flags and files, checked before any engine works
def test_keras_vae_command_runs_the_same_commands(tmp_path):
    result = run_python(["-m", "keras_vae.cli", "--help"])
    assert result.returncode == 0 and "generate" in result.stdout and "export" in result.stdout
    result = run_python(["-m", "keras_vae.cli", "generate", tmp_path / "nothing.keras"])
    _assert_one_line_error(result, "keras-vae generate: error", "no such file")
    assert result.returncode == 2
    result = run_python(["-m", "keras_vae.cli", "fly"])
    _assert_one_line_error(result, "unknown command 'fly'", "train, generate")
    assert result.returncode == 2
    result = run_python(["-m", "keras_vae.cli", "train", "--help"])
    assert result.returncode == 0 and "usage: keras-vae train" in result.stdout


@pytest.mark.any_backend  # flags and files, checked before any engine works
@pytest.mark.skipif(shutil.which("keras-vae") is None, reason="the package is not installed")
def test_installed_entry_point(tmp_path):
    result = subprocess.run(
        ["keras-vae", "generate", tmp_path / "nothing.keras"], capture_output=True, text=True,
        timeout=300,
    )
    _assert_one_line_error(result, "keras-vae generate: error", "no such file")


@pytest.mark.any_backend  # flags and files, checked before any engine works
@pytest.mark.parametrize("name", ["train.py", "evaluate.py", "generate.py", "visualize.py", "export.py", "explore.py"])
def test_help_shows_real_defaults_only(name):
    result = run_script(name, "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines anywhere
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: " in text  # the defaults that exist are still shown
