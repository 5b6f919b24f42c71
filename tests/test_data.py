"""The input pipeline: in-memory arrays, and the two offline ways to get MNIST."""

import numpy as np
import pytest

from conftest import SHARED
from keras_vae import data
from keras_vae.errors import DataUnavailableError


def test_arrays_are_scaled_images_with_labels(mnist_subset):
    assert mnist_subset.x_train.shape == (2000, 28, 28, 1)
    assert mnist_subset.x_test.shape == (500, 28, 28, 1)
    assert mnist_subset.x_train.dtype == np.float32
    assert mnist_subset.x_train.min() == 0.0 and mnist_subset.x_train.max() == 1.0
    assert set(np.unique(mnist_subset.y_test)) == set(range(10))


@pytest.mark.skipif(not (SHARED / "data" / "mnist").is_dir(), reason="needs ../shared/data/mnist")
def test_manual_dir_prepares_the_same_data_offline(tmp_path, mnist_subset):
    manual = data.load_dataset(
        "mnist", data_dir=tmp_path, manual_dir=SHARED / "data" / "mnist",
        num_train=50, num_test=50,
    )
    np.testing.assert_array_equal(manual.x_test, mnist_subset.x_test[:50])
    np.testing.assert_array_equal(manual.y_train, mnist_subset.y_train[:50])


def test_manual_dir_without_the_files_names_them(tmp_path):
    with pytest.raises(DataUnavailableError, match="lacks train-images-idx3-ubyte.gz"):
        data.load_dataset("mnist", data_dir=tmp_path / "tfds", manual_dir=tmp_path)


def test_missing_data_offline_is_reported_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_network_reachable", lambda timeout=3.0: False)
    with pytest.raises(DataUnavailableError, match="--manual-dir"):
        data.load_dataset("mnist", data_dir=tmp_path)
