"""What `fit` trains on: the training images held in memory, or streamed.

In memory (`data.Dataset.x_train` an array), this process's shard of the
arrays, shuffled by Keras (`fit(shuffle=True)`). Streamed (an
`data.ImageStream`, when the images do not fit or `--stream on`), a Keras
`PyDataset` over `data.stream.ShuffledBlocks`: every process reads the same
global batch and keeps its rows (every `processes`-th, from its rank), so
that N processes take the step one process would. Both give
`steps_per_epoch` steps an epoch.
"""

import math

import keras

from keras_vae.data.stream import ShuffledBlocks


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


class StreamedBatches(keras.utils.PyDataset):
    """This process's part of each batch of `ShuffledBlocks`, epoch by epoch.

    Keras calls `on_epoch_end` after each epoch; the batches of epoch e are
    those `ShuffledBlocks` gives for e, so a resumed run starts at its
    `first_epoch` and reads what the uninterrupted run would have.

    Args:
        blocks: the `ShuffledBlocks` (of the global batch).
        first_epoch: the epoch `fit` starts with (0-based; a resumed run's
            committed epochs).
        rank, processes: this process, and how many read together.
        conditional: give `(images, labels)` as the model's input.
    """

    def __init__(self, blocks, first_epoch=0, rank=0, processes=1, conditional=False):
        super().__init__()  # read in the training loop's thread: one block at a time
        self.blocks = blocks
        self.epoch = first_epoch
        self.rank, self.processes = rank, processes
        self.conditional = conditional

    @property
    def num_batches(self):
        return self.blocks.num_batches

    def __getitem__(self, index):
        images, labels = self.blocks.batch(self.epoch, index)
        images, labels = images[self.rank :: self.processes], labels[self.rank :: self.processes]
        return ((images, labels),) if self.conditional else (images,)

    def on_epoch_end(self):
        self.epoch += 1


def training_input(session, first_epoch=0):
    """`(x, options)` for `model.fit(x, **options)`: the training images of `session`."""
    config, dataset, topology, model = session.config, session.dataset, session.topology, session.model
    if not dataset.streams:
        images = topology.shard(dataset.x_train)
        labels = topology.shard(dataset.y_train)
        return model_inputs(model, images, labels), {"batch_size": session.batch_size, "shuffle": True}
    blocks = ShuffledBlocks(
        dataset.x_train, config.batch_size, seed=config.seed, block=config.stream_block,
        count=training_images(dataset, topology),
    )
    batches = StreamedBatches(blocks, first_epoch, topology.rank, topology.processes, model.conditional)
    return batches, {"shuffle": False}
