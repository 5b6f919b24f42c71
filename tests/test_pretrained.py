"""The pretrained models load on every backend and score what their table says."""

import importlib
import io
import json
import sys
import zipfile

import h5py
import numpy as np
import pytest

from conftest import ROOT, run_here
from keras_vae.model import load_model, save_model
from keras_vae import UserError, VAE, evaluation, load_pretrained, pretrained

ENTRIES = pretrained.registry()
sys.path.insert(0, str(ROOT / "pretrained"))


@pytest.mark.any_backend  # the registry and the --pretrained flag
def test_there_are_pretrained_models():
    assert {"mlp-grey", "mlp-dynamic"} <= set(ENTRIES)


@pytest.mark.any_backend  # the registry and the --pretrained flag
@pytest.mark.parametrize("name", list(ENTRIES))
def test_file_is_the_one_recorded_small_and_without_optimizer(name):
    entry = ENTRIES[name]
    path = pretrained.model_path(name)
    assert pretrained.sha256(path) == entry["sha256"]
    assert path.stat().st_size == entry["bytes"] < 10.5e6
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        weights = io.BytesIO(archive.read("model.weights.h5"))
    assert not config.get("compile_config")  # saved uncompiled
    with h5py.File(weights, "r") as stored:
        assert "optimizer" not in stored


@pytest.mark.parametrize("name", list(ENTRIES))
def test_loads_and_scores_its_recorded_check(name):
    entry = ENTRIES[name]
    model = load_pretrained(name)
    assert isinstance(model, VAE) and model.count_params() == entry["parameters"]
    check = evaluation.check_numbers(model, entry["dataset"], entry["binarize"], **pretrained.CHECK)
    assert check["neg_elbo"] == pytest.approx(entry["check"]["neg_elbo"], abs=0.01)
    assert check["iw_nll"] == pytest.approx(entry["check"]["iw_nll"], abs=0.01)
    samples = model.generate(16, seed=0)
    assert samples.shape == (16, 28, 28, 1) and 0.02 < samples.mean() < 0.5 and samples.std() > 0.1


@pytest.mark.any_backend  # the registry and the --pretrained flag
def test_unknown_name_is_refused():
    with pytest.raises(UserError, match="no pretrained model 'nope'.*mlp-grey"):
        load_pretrained("nope")


@pytest.mark.any_backend  # the registry and the --pretrained flag
@pytest.mark.slow
def test_scripts_take_a_pretrained_name(tmp_path):
    name = "mlp-dynamic" if "mlp-dynamic" in ENTRIES else next(iter(ENTRIES))
    result = run_here("generate.py", "--pretrained", name, "--num", "4", "--output", tmp_path / "s.png")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "s.png").is_file()
    result = run_here(
        "evaluate.py", "--pretrained", name, "--num-examples", "20", "--iw-samples", "10",
        "--output", tmp_path / "e.json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The pretrained model's own data settings, not the script's defaults.
    assert json.loads((tmp_path / "e.json").read_text())["binarize"] == ENTRIES[name]["binarize"]
    result = run_here(
        "visualize.py", "--pretrained", name, "--num-examples", "200", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Written under runs/, not into the repository's pretrained/ folder.
    assert (tmp_path / "runs" / "pretrained" / name / "figures" / "latent_manifold.png").is_file()
    result = run_here("generate.py", "--pretrained", "nope")
    assert result.returncode == 2 and "no pretrained model 'nope'" in result.stderr
    result = run_here("generate.py", tmp_path / "m.keras", "--pretrained", name)
    assert result.returncode == 2 and "one of them" in result.stderr


def test_half_precision_storage_halves_the_file_and_loads_everywhere(tmp_path):
    publish = importlib.import_module("publish")  # pretrained/publish.py, the maintainer's tool
    model = VAE(latent_dim=4, hidden_dim=64, seed=0)
    save_model(model, tmp_path / "m.keras")
    before = (tmp_path / "m.keras").stat().st_size
    publish.store_half_precision(tmp_path / "m.keras")
    assert (tmp_path / "m.keras").stat().st_size < 0.6 * before
    loaded = load_model(tmp_path / "m.keras")
    assert str(loaded.decoder.weights[0].dtype).endswith("float32")
    np.testing.assert_allclose(loaded.generate(8), model.generate(8), atol=2e-3)
    assert np.abs(loaded.generate(8) - model.generate(8)).max() > 0  # really rounded
