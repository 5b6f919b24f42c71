"""What `fit` trains on: the training images in an order of the seed and the epoch.

A Keras `PyDataset` (`EpochBatches`, on every backend) over the images held
in memory (`data.stream.ShuffledArrays`) or streamed from disk
(`data.stream.ShuffledBlocks`, when they do not fit or `--stream on`). The
order is the run's own, not Keras's shuffle (which draws from global
generators that no checkpoint holds), so a resumed run reads what the
uninterrupted run would have. Every process reads the same global batch and
keeps its rows (every `processes`-th, from its rank), so that N processes
take the step one process would; `steps_per_epoch` steps an epoch.
"""

import math

import keras

from keras_vae.data.stream import ShuffledArrays, ShuffledBlocks


def model_inputs(model, images, labels):
    """What `fit`/`evaluate` take as x: the images, with the labels if conditional."""
    return (images, labels) if model.conditional else images


def training_images(dataset, topology):
    """The training images this run uses: as many as a multiple of the devices."""
    images = len(dataset.x_train)
    return images - images % topology.devices


def steps_per_epoch(dataset, topology, batch_size):
    """Steps in an epoch of this process's share of the images, `batch_size` at a time."""
    return math.ceil(training_images(dataset, topology) // topology.processes / batch_size)


class EpochBatches(keras.utils.PyDataset):
    """This process's part of each global batch, epoch by epoch.

    Keras calls `on_epoch_end` after each epoch; the batches of epoch e are
    those `order` gives for e, so a resumed run starts at its `first_epoch`
    and reads what the uninterrupted run would have.

    Args:
        order: a `ShuffledArrays` or `ShuffledBlocks` (of the global batch).
        first_epoch: the epoch `fit` starts with (0-based; a resumed run's
            committed epochs).
        rank, processes: this process, and how many read together.
        conditional: give `(images, labels)` as the model's input.
    """

    def __init__(self, order, first_epoch=0, rank=0, processes=1, conditional=False):
        super().__init__()  # batches made in the training loop's thread, in order
        self.order = order
        self.epoch = first_epoch
        self.rank, self.processes = rank, processes
        self.conditional = conditional

    @property
    def num_batches(self):
        return self.order.num_batches

    def __getitem__(self, index):
        images, labels = self.order.batch(self.epoch, index)
        images, labels = images[self.rank :: self.processes], labels[self.rank :: self.processes]
        return ((images, labels),) if self.conditional else (images,)

    def on_epoch_end(self):
        self.epoch += 1


def training_input(session, first_epoch=0):
    """The `EpochBatches` `model.fit` trains on: the training images of `session`."""
    config, dataset, topology = session.config, session.dataset, session.topology
    count = training_images(dataset, topology)
    if dataset.streams:
        order = ShuffledBlocks(dataset.x_train, config.batch_size, config.seed, config.stream_block, count)
    else:
        order = ShuffledArrays(dataset.x_train, dataset.y_train, config.batch_size, config.seed, count)
    return EpochBatches(order, first_epoch, topology.rank, topology.processes, session.model.conditional)
