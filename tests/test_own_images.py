"""Your own images: a folder, NumPy arrays and any TFDS image dataset, in colour
and at any size, through training, resuming, evaluating, generating and the
pictures; and every way to get them wrong, each one line."""

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import SCRIPTS, error_lines, kill_after_epoch, one_error_line, run_here
from keras_vae import data
from keras_vae.data import tfds as tfds_source, transform
from keras_vae.errors import DataError
from keras_vae.run import folder as run_folder


def blob(rng, size, colour, label):
    """A square (label 0) or a disc (label 1) on a dark background."""
    yy, xx = np.mgrid[:size, :size]
    cx, cy = rng.integers(size // 4, 3 * size // 4, 2)
    r = size // 5
    mask = (abs(xx - cx) <= r) & (abs(yy - cy) <= r) if label == 0 else (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    image = np.full((size, size, 3), 20, dtype="uint8")
    image[mask] = [220, 60, 40] if label == 0 else [40, 80, 230]
    return image if colour else image.mean(-1).astype("uint8")


def write_folder(root, count=24, sizes=(12, 16), seed=0):
    """Class subfolders `squares/` and `discs/`: grey and colour PNGs of two sizes."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("squares", "discs")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            picture = blob(rng, sizes[i % len(sizes)], colour=i % 3 != 0, label=label)
            Image.fromarray(picture).save(root / name / f"{i:03d}.png")
    return root


COLOUR_RUN = (
    "--image-size", "8x8", "--channels", "3", "--likelihood", "logistic-mixture",
    "--mixture-components", "2", "--conditional", "--latent-dim", "4", "--hidden-dim", "32",
    "--batch-size", "8", "--validation-split", "8", "--seed", "3", "--tensorboard",
)


@pytest.mark.slow
def test_a_folder_of_grey_and_colour_pngs_trains_resumes_evaluates_generates_and_draws(tmp_path):
    images = write_folder(tmp_path / "pictures")
    folder = tmp_path / "run"
    args = ["--dataset", f"folder:{images}", "--epochs", "8", "--output-dir", folder, *COLOUR_RUN]
    # Killed once the first epoch is committed, then resumed.
    killed_at = kill_after_epoch([sys.executable, SCRIPTS / "train.py", *args], folder, 1)
    assert 1 <= killed_at < 8, "the run must be killed after epoch 1, before the end"
    result = run_here("train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"after epoch {killed_at} of 8" in result.stdout
    assert [row["epoch"] for row in run_folder.read_history(folder / "history.csv")] == list(range(1, 9))
    recorded = json.loads((folder / "config.json").read_text())
    assert recorded["data"]["image_shape"] == [8, 8, 3] and recorded["data"]["num_classes"] == 2
    assert recorded["data"]["num_test"] == 5 and recorded["data"]["fingerprint"].startswith("folder:48:")
    with Image.open(folder / "samples" / "epoch_008.png") as grid:
        assert grid.mode == "RGB"
    events = EventAccumulator(str(folder / "logs" / "train"), size_guidance={"tensors": 0})
    events.Reload()
    logged = events.Tensors("samples")[-1].tensor_proto  # [width, height, PNG]
    with Image.open(io.BytesIO(logged.string_val[2])) as picture:
        assert picture.mode == "RGB"  # the grid in colour

    model = folder / "model.keras"
    evaluated = run_here("evaluate.py", model, "--iw-samples", "4")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "8-bit pixels, logistic-mixture likelihood" in evaluated.stdout
    assert "not a likelihood" not in evaluated.stdout
    generated = run_here("generate.py", model, "--num", "4", "--output", tmp_path / "g.png", "--npy", tmp_path / "g.npy", "--sample-pixels")
    assert generated.returncode == 0, generated.stderr
    drawn = np.load(tmp_path / "g.npy")
    assert drawn.shape == (8, 8, 8, 3)  # --digit all: 4 per class
    np.testing.assert_array_equal(drawn * 255, np.round(drawn * 255))  # sampled levels
    shown = run_here("visualize.py", model, "--output-dir", tmp_path / "figures")
    assert shown.returncode == 0, shown.stderr
    with Image.open(tmp_path / "figures" / "reconstructions.png") as picture:
        pixels = np.asarray(picture.convert("RGB")).astype(int)
        assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).any()  # colour, not grey

    # The folder changes: the run's split no longer exists, and every reader says so.
    Image.fromarray(blob(np.random.default_rng(9), 12, True, 0)).save(images / "squares" / "new.png")
    for script, extra in (("evaluate.py", ["--iw-samples", "2"]), ("visualize.py", ["--output-dir", tmp_path / "f2"])):
        one_error_line(run_here(script, model, *extra), "its files changed since")


def test_npz_arrays_train_resized_evaluate_and_generate(tmp_path):
    rng = np.random.default_rng(1)
    x = np.stack([blob(rng, 16, True, i % 2) for i in range(60)])
    y = np.arange(60) % 2
    np.savez(tmp_path / "blobs.npz", x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:])
    folder = tmp_path / "run"
    result = run_here(
        "train.py", "--dataset", f"npz:{tmp_path / 'blobs.npz'}", "--image-size", "8x8",
        "--likelihood", "logistic", "--architecture", "conv", "--filters", "4,8", "--epochs", "2",
        "--batch-size", "16", "--latent-dim", "3", "--hidden-dim", "16", "--output-dir", folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((folder / "config.json").read_text())
    assert recorded["data"]["image_shape"] == [8, 8, 3] and recorded["data"]["num_test"] == 12
    evaluated = run_here("evaluate.py", folder / "model.keras", "--iw-samples", "3")
    assert evaluated.returncode == 0 and "8-bit pixels, logistic likelihood" in evaluated.stdout
    generated = run_here("generate.py", folder / "model.keras", "--num", "6", "--output", tmp_path / "g.png", "--npy", tmp_path / "g.npy")
    assert generated.returncode == 0 and np.load(tmp_path / "g.npy").shape == (6, 8, 8, 3)
    shown = run_here("visualize.py", folder / "model.keras", "--output-dir", tmp_path / "figures")
    assert shown.returncode == 0, shown.stderr
    with Image.open(tmp_path / "figures" / "interpolation.png") as picture:
        assert picture.size[0] > 100  # drawn, from the 12 test images


@pytest.mark.any_backend
def test_the_folder_split_is_fixed_and_its_labels_follow_the_subfolders(tmp_path):
    images = write_folder(tmp_path / "pictures", count=10)
    first = data.load_dataset(f"folder:{images}", image_size=(6, 6), test_split=0.25)
    again = data.load_dataset(f"folder:{images}", image_size=(6, 6), test_split=0.25)
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert first.x_train.dtype == np.uint8 and first.image_shape == (6, 6, 3)  # colour if any is
    assert (len(first.x_train), len(first.x_test)) == (15, 5) and first.num_classes == 2
    grey = data.load_dataset(f"folder:{images}", image_size=(6, 6), channels=1, test_split=0.25)
    assert grey.image_shape == (6, 6, 1)
    np.testing.assert_array_equal(grey.y_test, first.y_test)
    # Labels: the sorted subfolder names, discs 0 and squares 1.
    names = data.open_source(f"folder:{images}").class_names
    assert names == ["discs", "squares"]


@pytest.mark.any_backend
def test_a_tfds_colour_dataset_without_a_test_split_is_read_by_name(tmp_path):
    import tensorflow_datasets as tfds

    class TinyColours(tfds.core.GeneratorBasedBuilder):
        """Forty 6x6 colour images in three classes: a small real TFDS builder."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(6, 6, 3)),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            rng = np.random.default_rng(0)
            for i in range(40):
                yield i, {"image": rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), "label": i % 3}

    TinyColours(data_dir=tmp_path).download_and_prepare()
    dataset = data.load_dataset("tiny_colours", data_dir=tmp_path, test_split=0.25, validation_split=5)
    assert dataset.image_shape == (6, 6, 3) and dataset.num_classes == 3
    assert (len(dataset.x_train), len(dataset.x_val), len(dataset.x_test)) == (25, 5, 10)
    assert dataset.fingerprint == "tfds:tiny_colours:1.0.0"
    test, labels = data.load_split("tiny_colours", data_dir=tmp_path, validation_split=5, test_split=0.25, channels=1)
    assert test.shape == (10, 6, 6, 1) and set(labels) <= {0, 1, 2}
    # Streamed (data.stream): read from the prepared files a block at a time, the same images.
    streamed = data.load_dataset("tiny_colours", data_dir=tmp_path, test_split=0.25, validation_split=5, stream="on")
    assert streamed.streams and streamed.x_train.shape == (25, 6, 6, 3)
    images, labels = streamed.x_train.read(3, 17)
    np.testing.assert_array_equal(images, dataset.x_train[3:17])
    np.testing.assert_array_equal(labels, dataset.y_train[3:17])
    np.testing.assert_array_equal(streamed.x_val, dataset.x_val)
    # Read again as a run recorded it: from the run's --data-dir, not $TFDS_DATA_DIR.
    recorded = data.DataSettings(dataset="tiny_colours", validation_split=5, test_split=0.25, data_dir=str(tmp_path))
    np.testing.assert_array_equal(recorded.load_split("test")[0], dataset.x_test)


@pytest.mark.any_backend
def test_sources_refuse_bad_data_in_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="the folder is empty"):
        data.load_dataset(f"folder:{empty}")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "notes.txt").write_text("no pictures")
    with pytest.raises(DataError, match="no images in it"):
        data.load_dataset(f"folder:{tmp_path / 'texts'}")
    broken = write_folder(tmp_path / "broken", count=3)
    (broken / "discs" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="bad.png: not a readable image"):
        data.load_dataset(f"folder:{broken}", image_size=(8, 8), test_split=0.5)
    with pytest.raises(DataError, match="different sizes .* give --image-size"):
        data.load_dataset(f"folder:{write_folder(tmp_path / 'mixed', count=4)}")
    np.savez(tmp_path / "no_train.npz", x_test=np.zeros((2, 4, 4), "uint8"))
    with pytest.raises(DataError, match="no x_train in it"):
        data.load_dataset(f"npz:{tmp_path / 'no_train.npz'}")
    np.savez(tmp_path / "floats.npz", x_train=np.zeros((2, 4, 4)), x_test=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="x_train is float64; give uint8"):
        data.load_dataset(f"npz:{tmp_path / 'floats.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        data.load_dataset(f"npz:{tmp_path / 'junk.npz'}")


@pytest.mark.any_backend
def test_bad_data_requests_are_one_line_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "_network_reachable", lambda timeout=3.0: False)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    rng = np.random.default_rng(2)
    for i in range(6):
        Image.fromarray(blob(rng, 12, True, 0)).save(unlabelled / f"{i}.png")
    mixed = write_folder(tmp_path / "mixed", count=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--dataset", f"folder:{empty}"], "the folder is empty"),
        (["--dataset", f"folder:{tmp_path / 'nowhere'}"], "no such folder"),
        (["--dataset", f"folder:{mixed}"], "--image-size"),
        (["--dataset", f"folder:{unlabelled}", "--conditional"], "--conditional needs labels"),
        (["--dataset", f"folder:{unlabelled}", "--architecture", "conv", "--filters", "4,8,16"], "divisible by 8"),
        (["--dataset", "no_such_dataset"], "unknown dataset 'no_such_dataset'"),
        (["--dataset", "Not A Name"], "unknown dataset"),
        (["--dataset", "cifar10", "--data-dir", tmp_path / "tfds"], "cifar10 dataset is not prepared"),
        (["--dataset", f"npz:{tmp_path / 'none.npz'}"], "no such file"),
        (["--likelihood", "logistic", "--binarize", "dynamic"], "8-bit pixels"),
        (["--likelihood", "logistic", "--dataset", "binarized_mnist"], "8-bit pixels"),
        (["--image-size", "0x5"], "--image-size sides must be"),
        (["--test-split", "1.5"], "test_split must be a share"),
    ]
    for args, message in cases:
        folder = tmp_path / "run"
        result = run_here("train.py", "--epochs", "1", "--num-train", "8", "--num-test", "4", "--output-dir", folder, *args)
        line = one_error_line(result, message)
        assert not folder.exists(), (args, line)
    assert error_lines(run_here("train.py", "--channels", "2", "--output-dir", tmp_path / "run"))[-1].endswith("(choose from 1, 3)")


@pytest.mark.any_backend
def test_messages_name_images_by_their_number_made_when_asked():
    names = transform.Numbered("npz:a.npz x_train[", 3, 5, "]")
    assert len(names) == 2 and list(names) == ["npz:a.npz x_train[3]", "npz:a.npz x_train[4]"]
    assert names[1:] == ["npz:a.npz x_train[4]"] and names[-1] == "npz:a.npz x_train[4]"
    pictures = [np.zeros((4, 4), "uint8"), np.zeros((5, 5), "uint8")]
    with pytest.raises(DataError, match=r"4x4 in npz:a.npz x_train\[3\], 5x5 in npz:a.npz x_train\[4\]"):
        transform.fit(pictures, names)
    with pytest.raises(DataError, match=r"x_train\[4\]: pixels of type float32"):
        transform.fit([pictures[0], np.zeros((4, 4), "float32")], names)
