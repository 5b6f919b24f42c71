"""The training images epoch by epoch: held in memory, or larger than memory
and read from disk a block at a time.

The order (of the images, of the blocks and of the images in them) is a
function of the seed and the epoch, every image is seen once an epoch, a
resumed run is the uninterrupted one, in memory and streamed, and data that
cannot be held is refused in one line that says what to do."""

import json
import sys

import h5py
import numpy as np
import pytest

from conftest import SCRIPTS, kill_after_epoch, one_error_line, run_here, run_python
from keras_vae import data, memory
from keras_vae.data.stream import ShuffledArrays, ShuffledBlocks
from keras_vae.errors import UserError
from keras_vae.run import folder as run_folder
from keras_vae.run.inputs import EpochBatches
from test_distribution import run_on
from test_own_images import write_folder


class NumberedImages:
    """A source of `count` 2x2 images whose pixels hold their index (mod 256)
    and whose label is their index: what a batch holds says where it came from."""

    reads_lazily = True
    name = "numbered"

    def __init__(self, count):
        self.count = count
        self.reads = []

    def read(self, split, start, stop, size=None, channels=None):
        self.reads.append((start, stop))
        index = np.arange(start, stop)
        images = np.broadcast_to((index % 256).astype("uint8")[:, None, None, None], (len(index), 2, 2, 1))
        return images.copy(), index


def epoch_of(blocks, epoch):
    return [blocks.batch(epoch, i) for i in range(blocks.num_batches)]


@pytest.mark.any_backend
def test_each_epoch_reads_every_image_once_in_an_order_of_the_seed_and_the_epoch():
    source = NumberedImages(1000)
    stream = data.ImageStream(source, ("train", 0, 1000), (2, 2, 1))
    blocks = ShuffledBlocks(stream, batch_size=32, seed=5, block=100)
    assert blocks.block == 128  # rounded up to whole batches
    assert blocks.num_batches == 32  # ceil(1000 / 32): 4 per block of 128, 4 for the last 104
    epochs = [epoch_of(blocks, epoch) for epoch in range(3)]
    for batches in epochs:
        assert all(len(images) == len(labels) == 32 for images, labels in batches)
        labels = np.concatenate([labels for _, labels in batches])
        images = np.concatenate([images for images, _ in batches])
        np.testing.assert_array_equal(images[:, 0, 0, 0], labels % 256)  # rows stay with their labels
        assert set(labels) == set(range(1000))  # every image, the top-ups repeat some
        assert len(labels) - len(set(labels)) == 32 * 32 - 1000
        # A batch holds the images of one block.
        assert all(len({label // 128 for label in batch}) == 1 for _, batch in batches)
    orders = [np.concatenate([labels for _, labels in batches]) for batches in epochs]
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    # The same seed and epoch, the same order: from any batch on (a resumed run).
    again = ShuffledBlocks(data.ImageStream(NumberedImages(1000), ("train", 0, 1000), (2, 2, 1)), 32, seed=5, block=100)
    for index in (31, 0, 17):
        np.testing.assert_array_equal(again.batch(2, index)[1], epochs[2][index][1])
    other_seed = ShuffledBlocks(stream, 32, seed=6, block=100)
    assert not np.array_equal(np.concatenate([b[1] for b in epoch_of(other_seed, 0)]), orders[0])
    # Reading an epoch in order reads each block once, and the next epoch's
    # first block ahead (in a thread, while the last block trains).
    counted = NumberedImages(1000)
    blocks = ShuffledBlocks(data.ImageStream(counted, ("train", 0, 1000), (2, 2, 1)), 32, seed=5, block=100)
    epoch_of(blocks, 7)
    blocks._ahead[1].result()
    every = [(s, min(s + 128, 1000)) for s in range(0, 1000, 128)]
    assert sorted(counted.reads) == sorted([*every, every[blocks.block_order(8)[0]]])
    with pytest.raises(IndexError):
        blocks.batch(0, 32)


@pytest.mark.any_backend
def test_images_in_memory_come_in_an_order_of_the_seed_and_the_epoch():
    images = np.arange(100, dtype="uint8")[:, None, None, None]
    order = ShuffledArrays(images, np.arange(100), batch_size=32, seed=4, count=98)
    assert order.num_batches == 4
    epochs = [[order.batch(epoch, i) for i in range(4)] for epoch in range(2)]
    for batches in epochs:
        labels = np.concatenate([labels for _, labels in batches])
        np.testing.assert_array_equal(np.concatenate([x for x, _ in batches])[:, 0, 0, 0], labels)
        assert set(labels) == set(range(98))  # the first 98 only (a multiple of the devices)
        np.testing.assert_array_equal(labels[98:], labels[:30])  # the last batch topped up
    assert not np.array_equal(epochs[0][0][1], epochs[1][0][1])
    again = ShuffledArrays(images, np.arange(100), batch_size=32, seed=4, count=98)
    np.testing.assert_array_equal(again.batch(1, 2)[1], epochs[1][2][1])
    with pytest.raises(IndexError):
        order.batch(0, 4)


@pytest.mark.any_backend
def test_training_images_stream_when_they_do_not_fit_and_the_rest_stays_in_memory(tmp_path, monkeypatch):
    images = write_folder(tmp_path / "pictures", count=10)
    held = data.load_dataset(f"folder:{images}", image_size=(6, 6), test_split=0.25)
    streamed = data.load_dataset(f"folder:{images}", image_size=(6, 6), test_split=0.25, stream="on")
    assert not held.streams and streamed.streams and streamed.y_train is None
    assert streamed.x_train.shape == held.x_train.shape == (15, 6, 6, 3)
    assert streamed.image_shape == (6, 6, 3)
    np.testing.assert_array_equal(streamed.x_test, held.x_test)  # test images in memory, as before
    read, labels = streamed.x_train.read(0, 15)
    np.testing.assert_array_equal(read, held.x_train)
    np.testing.assert_array_equal(labels, held.y_train)

    # auto: in memory while everything fits in half the memory available.
    size = held.x_train.nbytes + held.x_test.nbytes
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * size)
    assert not data.load_dataset(f"folder:{images}", image_size=(6, 6), test_split=0.25, stream="auto").streams
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * size - 1)
    assert data.load_dataset(f"folder:{images}", image_size=(6, 6), test_split=0.25, stream="auto").streams
    monkeypatch.setattr(memory, "available_bytes", lambda: size - 1)
    with pytest.raises(UserError, match="--stream auto .or on. reads the training images from disk"):
        data.load_dataset(f"folder:{images}", image_size=(6, 6), test_split=0.25, stream="off")
    # The test images must fit: only training images stream.
    monkeypatch.setattr(memory, "available_bytes", lambda: held.x_test.nbytes - 1)
    with pytest.raises(UserError, match="holding the 5 validation and test images"):
        data.load_dataset(f"folder:{images}", image_size=(6, 6), test_split=0.25, stream="on")

    # An npz file is in memory once NumPy opened it: auto never streams it, and says so.
    np.savez(tmp_path / "a.npz", x_train=held.x_train, x_test=held.x_test)
    monkeypatch.setattr(memory, "available_bytes", lambda: size - 1)
    with pytest.raises(UserError, match="an npz file is read whole"):
        data.load_dataset(f"npz:{tmp_path / 'a.npz'}", stream="auto")


def weights_of(path):
    """Every array of a `.keras` file's weights, by name."""
    import zipfile

    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as stored:
        with h5py.File(stored, "r") as weights:
            found = {}
            weights.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
            return found


@pytest.mark.slow
@pytest.mark.parametrize("stream", ["on", "off"])
def test_a_run_resumed_after_a_kill_is_the_uninterrupted_run(tmp_path, backend, stream):
    images = write_folder(tmp_path / "pictures", count=30)
    args = [
        "--dataset", f"folder:{images}", "--image-size", "8x8", "--stream", stream, "--stream-block", "16",
        "--conditional", "--binarize", "static", "--latent-dim", "3", "--hidden-dim", "16",
        "--batch-size", "8", "--epochs", "4", "--seed", "2",
    ]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    result = run_here("train.py", *args, "--output-dir", whole)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("Streaming the 54 training images" in result.stdout) == (stream == "on")
    killed_at = kill_after_epoch([sys.executable, SCRIPTS / "train.py", *args, "--output-dir", resumed], resumed, 2)
    assert 2 <= killed_at < 4, "the run must be killed after epoch 2, before the end"
    result = run_here("train.py", *args, "--output-dir", resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"after epoch {killed_at} of 4" in result.stdout

    def losses(folder):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in run_folder.read_history(folder / "history.csv")]

    # Equal; TensorFlow's multi-threaded CPU reductions are not bitwise
    # repeatable from run to run (with or without a resume): to 1e-6 there.
    tolerance = 1e-6 if backend == "tensorflow" else 0
    for ours, theirs in zip(losses(resumed), losses(whole), strict=True):
        assert ours == pytest.approx(theirs, rel=tolerance, abs=0)
    ours, theirs = weights_of(resumed / "model.keras"), weights_of(whole / "model.keras")
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=tolerance, atol=tolerance / 10, err_msg=name)
    recorded = json.loads((whole / "config.json").read_text())
    assert recorded["config"]["stream"] == stream and recorded["config"]["stream_block"] == 16
    assert recorded["data"]["num_train"] == 54


def test_stream_flags_are_checked_before_anything_is_read(tmp_path):
    one_error_line(run_here("train.py", "--stream", "sometimes", "--output-dir", tmp_path / "r"), "--stream")
    one_error_line(run_here("train.py", "--stream-block", "0", "--output-dir", tmp_path / "r"), "stream_block must be > 0")
    assert not (tmp_path / "r").exists()


@pytest.mark.any_backend
def test_each_process_takes_its_own_rows_of_the_global_batch():
    blocks = ShuffledBlocks(data.ImageStream(NumberedImages(300), ("train", 0, 300), (2, 2, 1)), 16, seed=1, block=64)
    ranks = [EpochBatches(blocks, first_epoch=3, rank=rank, processes=2) for rank in (0, 1)]
    for index in range(blocks.num_batches):
        (first,), (second,) = ranks[0][index], ranks[1][index]
        assert len(first) == len(second) == 8
        together = np.stack([first, second], axis=1).reshape(16, 2, 2, 1)
        np.testing.assert_array_equal(together, blocks.batch(3, index)[0])
    conditional = EpochBatches(blocks, first_epoch=0, conditional=True)
    ((images, labels),) = conditional[0]
    np.testing.assert_array_equal(images[:, 0, 0, 0], labels % 256)
    conditional.on_epoch_end()  # Keras calls it after each epoch: the next epoch's order
    assert conditional.epoch == 1
    np.testing.assert_array_equal(conditional[0][0][1], blocks.batch(1, 0)[1])


@pytest.mark.slow
def test_a_streamed_run_on_two_processes_learns_as_on_one(tmp_path, backend):
    if backend != "torch":
        pytest.skip("the processes' rows are ours on torch; TensorFlow and JAX devices split Keras's batch")
    train = [
        SCRIPTS / "train.py", "--stream", "on", "--stream-block", "512", "--num-train", "2048",
        "--num-test", "500", "--epochs", "2", "--latent-dim", "4", "--hidden-dim", "64", "--batch-size", "64",
    ]
    one = run_python([*train, "--output-dir", tmp_path / "one"], backend=backend)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_on(2, [*train, "--devices", "2", "--output-dir", tmp_path / "two"], backend)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "Streaming the 2,048 training images" in two.stdout
    losses = [json.loads((tmp_path / name / "metrics.json").read_text())["test_loss"] for name in ("one", "two")]
    # Each process draws its own noise: the runs agree as two seeds do.
    assert losses[1] == pytest.approx(losses[0], rel=0.03)
