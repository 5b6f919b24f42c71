"""The training images epoch by epoch, in an order of the seed and the epoch:
held in memory (`ShuffledArrays`), or read from disk a block at a time for
data larger than memory (`ShuffledBlocks`).

In memory, each epoch takes all the images in an order drawn from
`(seed, epoch)`; the epoch's last batch, when the images do not fill one,
is topped up with the epoch's first images. Because the order depends on
nothing else (no global generator, no device count), a resumed run reads
exactly what the uninterrupted run would have.

When the training images do not fit in memory (or `--stream on` asks for
it), they are not read up front: `ImageStream` names the images of the train
split, and `ShuffledBlocks` reads them from the source in blocks of
consecutive images (`--stream-block`, default `BLOCK_BYTES` of uint8 images),
one block in memory at a time. Each epoch visits every image once:

- the blocks in an order drawn from `(seed, epoch)`, and
- the images of each block in an order drawn from `(seed, epoch, block)`,

the shard-then-shuffle of streaming pipelines (tf.data's `interleave` +
`shuffle`, WebDataset): a batch mixes images of one block, never of two.
While one block trains, a thread reads the next (two blocks held, each
briefly twice while it is shuffled), so that reading overlaps the steps.
The order is a function of the seed and the epoch alone, so a resumed run
reads exactly what the uninterrupted one would have. A block's last batch,
when its images do not fill one, is topped up with the first images of the
block's order: every batch has `batch_size` images, and an epoch has
`ceil(images / batch_size)` steps, as in memory.

Static binarization draws each block's sample once, from
`(TRAIN_BINARIZATION_SEED, the block's first image)`: the same pixels every
epoch, though not the sample the in-memory path draws.

No Keras here: `keras_vae.run.inputs` hands the batches to `fit`.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keras_vae.data.transform import binarize

#: The uint8 images read at once when `--stream-block` is not given.
BLOCK_BYTES = 64 << 20
STREAM_CHOICES = ("auto", "on", "off")


class ImageStream:
    """Images `start:stop` of a source's `split`, read only when asked for.

    It stands where the training array would (`Dataset.x_train`): `len()`
    and `shape` as an array's, and `read(start, stop)` for the images.

    Args:
        source: a data source (`data.open_source`).
        part: `(split, start, stop)` of the source.
        image_shape: `(H, W, C)` of every image (`source.image_shape`):
            each block is made alike to it (`transform.fit`), so that all
            blocks are as the in-memory array would be.
        binarize_seed: the seed of static binarization, or None.
    """

    dtype = np.dtype("uint8")

    def __init__(self, source, part, image_shape, binarize_seed=None):
        self.source = source
        self.split, self.start, self.stop = part
        self.image_shape = tuple(int(side) for side in image_shape)
        self.binarize_seed = binarize_seed

    def __len__(self):
        return self.stop - self.start

    @property
    def shape(self):
        """`(images, H, W, C)`, as the array it stands for."""
        return (len(self), *self.image_shape)

    @property
    def nbytes(self):
        """The bytes the images would take in memory."""
        return int(np.prod(self.shape))

    def read(self, start, stop):
        """Images `start:stop` (of this stream) as uint8, and their labels."""
        images, labels = self.source.read(
            self.split, self.start + start, self.start + stop,
            size=self.image_shape[:2], channels=self.image_shape[2],
        )
        if self.binarize_seed is not None:
            images = binarize(images, [self.binarize_seed, start])
        return images, labels


def block_images(image_shape, batch_size, block=None):
    """Images per block: `block` (or `BLOCK_BYTES` worth), rounded up to
    whole batches."""
    if not block:
        block = max(1, BLOCK_BYTES // int(np.prod(image_shape)))
    return -(-int(block) // batch_size) * batch_size


class ShuffledBlocks:
    """The batches of an `ImageStream`, epoch by epoch (see the module docstring).

    It gives what `ShuffledArrays` gives: `num_batches` and `batch`.

    Args:
        stream: the `ImageStream`.
        batch_size: images per batch (the global batch, of all processes).
        seed: the run's seed.
        block: images per block (rounded up to whole batches; default
            `BLOCK_BYTES` worth).
        count: use the first `count` images only (a multiple of the devices).
    """

    def __init__(self, stream, batch_size, seed=0, block=None, count=None):
        self.stream = stream
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.count = len(stream) if count is None else int(count)
        self.block = block_images(stream.image_shape, self.batch_size, block)
        self.blocks = [(s, min(s + self.block, self.count)) for s in range(0, self.count, self.block)]
        self._batches = [-(-(stop - start) // self.batch_size) for start, stop in self.blocks]
        self._order = (None, None, None)  # (epoch, block order, first batch of each position)
        self._cached = (None, None)
        self._reader = None  # made at the first read: one thread, reading ahead
        self._ahead = (None, None)  # (key, future) of the block read ahead

    @property
    def num_batches(self):
        """Batches per epoch: `ceil(count / batch_size)`."""
        return sum(self._batches)

    def block_order(self, epoch):
        """The blocks in the order `epoch` reads them."""
        return self._epoch_order(epoch)[0]

    def _epoch_order(self, epoch):
        """`epoch`'s block order and the first batch of each position in it
        (drawn once per epoch, not per batch)."""
        if self._order[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.blocks))
            firsts = np.cumsum([0] + [self._batches[block] for block in order])
            self._order = (epoch, order, firsts)
        return self._order[1:]

    def _read(self, epoch, block):
        images, labels = self.stream.read(*self.blocks[block])
        order = np.random.default_rng([self.seed, epoch, block]).permutation(len(images))
        return images[order], labels[order]

    def _shuffled_block(self, epoch, position):
        """The block at `position` of `epoch`'s order, its images shuffled;
        the one after it starts to be read."""
        key = (epoch, position)
        if self._cached[0] == key:
            return self._cached[1]
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keras-vae-stream")
        ahead_key, ahead = self._ahead
        self._cached = (None, None)  # free it before the next is made
        found = ahead.result() if ahead_key == key else self._read(epoch, self.block_order(epoch)[position])
        self._cached = (key, found)
        following = (epoch, position + 1) if position + 1 < len(self.blocks) else (epoch + 1, 0)
        block = self.block_order(following[0])[following[1]]
        self._ahead = (following, self._reader.submit(self._read, following[0], block))
        return found

    def batch(self, epoch, index):
        """Batch `index` of `epoch`: `(images, labels)`, `batch_size` of each.

        Raises:
            IndexError: `index` is not a batch of an epoch.
        """
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of an epoch of {self.num_batches}")
        _, firsts = self._epoch_order(epoch)
        position = int(np.searchsorted(firsts, index, side="right")) - 1
        index -= int(firsts[position])
        images, labels = self._shuffled_block(epoch, position)
        rows = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        return images.take(rows, axis=0, mode="wrap"), labels.take(rows, mode="wrap")


class ShuffledArrays:
    """The batches of images held in memory, epoch by epoch: all of them in
    an order drawn from `(seed, epoch)`, the last batch topped up with the
    epoch's first images (see the module docstring).

    Args:
        images: uint8 images `(n, H, W, C)`.
        labels: their labels `(n,)`.
        batch_size: images per batch (the global batch, of all processes).
        seed: the run's seed.
        count: use the first `count` images only (a multiple of the devices).
    """

    def __init__(self, images, labels, batch_size, seed=0, count=None):
        self.images, self.labels = images, labels
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.count = len(images) if count is None else int(count)
        self._order = (None, None)  # (epoch, its permutation)

    @property
    def num_batches(self):
        """Batches per epoch: `ceil(count / batch_size)`."""
        return -(-self.count // self.batch_size)

    def order(self, epoch):
        """The images' indices in the order `epoch` reads them."""
        if self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.count))
        return self._order[1]

    def batch(self, epoch, index):
        """Batch `index` of `epoch`: `(images, labels)`, `batch_size` of each.

        Raises:
            IndexError: `index` is not a batch of an epoch.
        """
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of an epoch of {self.num_batches}")
        start, stop = index * self.batch_size, (index + 1) * self.batch_size
        order = self.order(epoch)
        rows = order[start:stop] if stop <= self.count else order.take(np.arange(start, stop), mode="wrap")
        return self.images[rows], self.labels[rows]
