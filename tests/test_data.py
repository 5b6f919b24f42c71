"""The input pipeline: in-memory arrays, and the two offline ways to get MNIST."""

import gzip
import struct

import numpy as np
import pytest

from conftest import SHARED
from keras_vae import data
from keras_vae.errors import DataUnavailableError

# NumPy arrays from TFDS, whatever the backend: tests/run.sh runs them once.
pytestmark = pytest.mark.any_backend


def test_arrays_are_8_bit_images_with_labels(mnist_subset):
    assert mnist_subset.x_train.shape == (2000, 28, 28, 1)
    assert mnist_subset.x_test.shape == (500, 28, 28, 1)
    assert mnist_subset.x_train.dtype == np.uint8  # a quarter of float32
    assert mnist_subset.x_train.min() == 0 and mnist_subset.x_train.max() == 255
    assert (mnist_subset.num_classes, mnist_subset.image_shape) == (10, (28, 28, 1))
    assert set(np.unique(mnist_subset.y_test)) == set(range(10))


@pytest.mark.skipif(not (SHARED / "data" / "mnist").is_dir(), reason="needs ../shared/data/mnist")
def test_manual_dir_prepares_the_same_data_offline(tmp_path, mnist_subset):
    manual = data.load_dataset(
        "mnist", data_dir=tmp_path, manual_dir=SHARED / "data" / "mnist",
        num_train=50, num_test=50,
    )
    np.testing.assert_array_equal(manual.x_test, mnist_subset.x_test[:50])
    np.testing.assert_array_equal(manual.y_train, mnist_subset.y_train[:50])


def write_idx_files(folder, counts=(("train", 60000), ("t10k", 10000))):
    """MNIST's four files in their IDX format, with images that say who they are.

    Image i is black but for its first three pixels, i in base 256; its label
    is i % 10. TFDS's MNIST builder reads exactly 60 000 and 10 000 images,
    so the files hold that many (mostly zeros: small once gzipped).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in counts:
        ids = np.arange(count)
        images = np.zeros((count, 28 * 28), dtype=np.uint8)
        images[:, 0], images[:, 1], images[:, 2] = ids // 65536, ids // 256 % 256, ids % 256
        header = struct.pack(">IIII", 2051, count, 28, 28)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as handle:
            handle.write(header + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(struct.pack(">II", 2049, count) + (ids % 10).astype(np.uint8).tobytes())


@pytest.mark.slow
def test_manual_dir_prepares_the_data_from_the_original_files(tmp_path, monkeypatch):
    from tensorflow_datasets.core.download.download_manager import DownloadManager

    write_idx_files(tmp_path / "files")
    # TFDS checks each file against the sha256 of the published one; these
    # files are this test's own, so only that comparison is switched off.
    monkeypatch.setattr(DownloadManager, "_register_or_validate_checksums", lambda *a, **k: None)
    monkeypatch.setattr(data.tfds, "_network_reachable", lambda timeout=3.0: False)
    dataset = data.load_dataset(
        "mnist", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "files", num_train=500, num_test=500
    )
    for images, labels, count in ((dataset.x_train, dataset.y_train, 60000), (dataset.x_test, dataset.y_test, 10000)):
        pixels = images.reshape(len(images), -1)[:, :3].astype(np.int64)  # uint8 levels
        ids = pixels[:, 0] * 65536 + pixels[:, 1] * 256 + pixels[:, 2]
        assert len(set(ids)) == len(ids) == 500 and ids.max() < count
        np.testing.assert_array_equal(labels, ids % 10)
        assert images.reshape(len(images), -1)[:, 3:].max() == 0


def test_manual_dir_without_the_files_names_them(tmp_path):
    with pytest.raises(DataUnavailableError, match="lacks train-images-idx3-ubyte.gz"):
        data.load_dataset("mnist", data_dir=tmp_path / "tfds", manual_dir=tmp_path)


def test_missing_data_offline_is_reported_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(data.tfds, "_network_reachable", lambda timeout=3.0: False)
    with pytest.raises(DataUnavailableError, match="--manual-dir"):
        data.load_dataset("mnist", data_dir=tmp_path)


def test_validation_split_holds_out_the_last_training_images():
    everything = data.load_dataset("mnist", num_test=1)
    split = data.load_dataset("mnist", num_test=1, validation_split=10000)
    assert (len(split.x_train), len(split.x_val)) == (50000, 10000)
    np.testing.assert_array_equal(split.x_train, everything.x_train[:50000])
    np.testing.assert_array_equal(split.x_val, everything.x_train[50000:])
    np.testing.assert_array_equal(split.y_val, everything.y_train[50000:])
    assert not everything.has_validation and split.has_validation
    # The limits of quick runs keep the first images of each part.
    quick = data.load_dataset("mnist", num_train=30, num_test=1, validation_split=10000, num_validation=20)
    np.testing.assert_array_equal(quick.x_train, everything.x_train[:30])
    np.testing.assert_array_equal(quick.x_val, everything.x_train[50000:50020])
    grey, _ = data.load_split("mnist", "validation", limit=20, validation_split=10000)
    np.testing.assert_array_equal(grey, quick.x_val)


def test_validation_images_are_binarized_once_with_their_own_seed():
    grey, _ = data.load_split("mnist", "validation", limit=50, validation_split=10000)
    binary, _ = data.load_split(
        "mnist", "validation", limit=50, validation_split=10000, binarization="dynamic"
    )
    np.testing.assert_array_equal(binary, data.binarize(grey, data.VALIDATION_BINARIZATION_SEED))
    test_grey, _ = data.load_split("mnist", "test", limit=50)
    test_binary, _ = data.load_split("mnist", "test", limit=50, binarization="dynamic")
    np.testing.assert_array_equal(test_binary, data.binarize(test_grey, data.TEST_BINARIZATION_SEED))


def test_binarized_mnist_validates_on_its_own_split():
    dataset = data.load_dataset(
        "binarized_mnist", num_train=5, num_test=5, validation_split=10000, num_validation=5
    )
    own, _ = data.load_split("binarized_mnist", "validation", limit=5)
    np.testing.assert_array_equal(dataset.x_val, own)
    with pytest.raises(ValueError, match="its own 10000 validation images"):
        data.load_dataset("binarized_mnist", validation_split=5000)


@pytest.mark.parametrize(
    "split, message",
    [(60000, "leaves no training image"), (-1, "must be >= 0")],
)
def test_impossible_validation_splits_are_refused(split, message):
    with pytest.raises(ValueError, match=message):
        data.load_dataset("mnist", num_train=5, num_test=5, validation_split=split)
