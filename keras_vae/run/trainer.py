"""Training a VAE run: `train_and_evaluate` = prepare + fit + finish.

A run is described by a `TrainConfig` and writes everything into one folder
(`run.folder.RunFolder` lists its files). Running again with the same output
folder resumes an interrupted run from its last committed epoch
(`run.checkpoint.RunCheckpoint`). On several devices (`parallel.Topology`)
the chief process writes the folder; the topology is consulted when the run
is prepared, when the roles' callbacks are chosen, and when it finishes.
"""

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import math
import platform
import shutil
import statistics
import tempfile

import keras
import numpy as np

from keras_vae import data, engines, evaluation, files, pretrained, visualize
from keras_vae.backend import import_tensorflow_quietly
from keras_vae.errors import UserError
from keras_vae.model import VAE, ModelConfig, copy_variables, fresh_copy, load_model, save_model
from keras_vae.engines.common import dtype_policy, one_device
from keras_vae.parallel import Topology
from keras_vae.run import callbacks
from keras_vae.data.stream import block_images
from keras_vae.run.inputs import model_inputs, steps_per_epoch, training_images, training_input
from keras_vae.run.checkpoint import RunCheckpoint
from keras_vae.run.config import JIT_COMPILE, build_model_settings, check_can_continue
from keras_vae.run.folder import RunFolder

NUM_SAMPLES = 64  # the 8x8 grid written after every epoch


def learning_rate(config, steps_per_epoch):
    """Adam's learning rate: a number, or a schedule over all training steps."""
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.01
        )
    return config.learning_rate


def environment():
    """The backend, devices and package versions, for reproducing a run."""
    backend = keras.backend.backend()
    packages = ["keras", backend, "numpy", "tensorflow-datasets"]
    versions = {}
    for package in dict.fromkeys(packages):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "backend": backend,
        "devices": engines.list_devices(),
        "tfds_data_dir": data.resolve_data_dir(None),
        "python": platform.python_version(),
        "packages": versions,
    }


def data_record(dataset):
    """What `config.json` records of the data read (`RunFolder.data_record`)."""
    return {
        "fingerprint": dataset.fingerprint,
        "image_shape": list(dataset.image_shape),
        "num_classes": dataset.num_classes,
        "num_train": len(dataset.x_train),
        "num_validation": len(dataset.x_val),
        "num_test": len(dataset.x_test),
    }


def one_per_class(labels, num_classes=10):
    """Index of the first example of each class, e.g. one test digit each.

    Without labels (all -1), the first `num_classes` examples.
    """
    found = [int(np.flatnonzero(labels == c)[0]) for c in range(num_classes) if (labels == c).any()]
    return found or list(range(min(num_classes, len(labels))))


def build_model(config, steps_per_epoch, dataset):
    """The `VAE` that `config` describes, for `steps_per_epoch` training steps
    on the images and classes of `dataset`."""
    return VAE(**build_model_settings(config, steps_per_epoch, dataset.image_shape, dataset.num_classes))


def load_initial_model(source):
    """The saved `VAE` that `--init-from` names: a `.keras` file or a pretrained name.

    Raises:
        UserError: no such pretrained model, or not a keras-vae model file.
    """
    try:
        if source in pretrained.names():
            return pretrained.load_pretrained(source)
        return load_model(source)
    except UserError as error:
        raise UserError(f"--init-from: {error}") from error


def copy_trained_weights(model, source, name):
    """Starts `model` from the trained weights of `source` (fine-tuning).

    The trainable weights are copied, in order: the networks and the
    VampPrior's pseudo-inputs. What is not learned stays `model`'s own: the
    KL warm-up's step count and the seed states. The objective (`--iw-samples`,
    `--beta`, ...) may differ between the two models; the networks may not.

    Args:
        model: a freshly built `VAE`.
        source: the saved `VAE` (`load_initial_model`).
        name: how the user named `source`, for the message.

    Raises:
        UserError: the two models' networks differ.
    """
    ours, theirs = model.trainable_weights, source.trainable_weights
    if [tuple(w.shape) for w in ours] != [tuple(w.shape) for w in theirs]:
        wanted, saved = model.get_config(), source.get_config()
        differ = [
            f"{key} {saved.get(key)!r} there, {wanted[key]!r} here"
            for key in (*ModelConfig.network_names(), "latent_layers", "prior", "pseudo_inputs")
            if saved.get(key) != wanted.get(key)
        ]
        raise UserError(
            f"--init-from {name}: its networks differ from the ones these flags describe "
            f"({'; '.join(differ) or 'other weight shapes'}); give its network settings"
        )
    for variable, value in zip(ours, theirs):
        variable.assign(keras.ops.convert_to_numpy(value))


def local_view(topology):
    """The view the pictures decode through: a function, model -> context manager.

    Where the trained model runs only on batches split over all devices
    (Keras's `DataParallel`), it gives a one-device copy, built once and
    given the trained weights at each use; else the model.
    """
    copies = []

    @contextlib.contextmanager
    def view(model):
        if not topology.spans_devices:
            yield model
            return
        with one_device():
            if copies:
                copy_variables(model, copies[0])
            else:
                copies.append(fresh_copy(model))
            yield copies[0]

    return view


def epoch_callbacks(model, config, run, dataset, rows, topology=None):
    """The callbacks that write the run folder during `fit`, in their order.

    Args:
        model: the `VAE` being trained.
        config: its `TrainConfig`.
        run: the `RunFolder`.
        dataset: the `data.Dataset` (one validation image per class is
            reconstructed, or one test image without a validation split).
        rows: `history.csv`'s rows of the epochs already done (resuming).
        topology: the `parallel.Topology` it trains on (default: one device).

    Returns:
        `(callbacks, history, divergence)`: the list for `fit`, and the two
        that `finish` reads afterwards.
    """
    images, image_labels = (
        (dataset.x_val, dataset.y_val) if dataset.has_validation else (dataset.x_test, dataset.y_test)
    )
    chosen = one_per_class(image_labels)
    labels = image_labels[chosen] if model.conditional else None
    if model.conditional:  # one row per digit, the same z in each column
        grid_rows, grid_cols = model.num_classes, NUM_SAMPLES // 8
        sample_z, sample_labels = model.class_grid_inputs(grid_cols, seed=config.seed)
    else:
        grid_rows = grid_cols = sample_labels = None
        # A learned prior is sampled anew each epoch (with the same seed).
        sample_z = NUM_SAMPLES if model.learned_prior else model.sample_prior(NUM_SAMPLES, seed=config.seed)
    view = local_view(topology or Topology())
    history = callbacks.HistoryCSV(run.history, rows)
    divergence = callbacks.StopOnNaN()
    written = [
        divergence,
        callbacks.EpochTimer(),
        history,
        callbacks.BestModelCheckpoint(run.best_model, best=best_validation(rows)),
        callbacks.SampleGrid(
            sample_z, run.samples, grid_rows, grid_cols, sample_labels, seed=config.seed, view=view
        ),
        callbacks.ReconstructionGrid(images[chosen], run.reconstructions, labels, view=view),
    ]
    if config.tensorboard:
        written += callbacks.tensorboard(run.logs, run.samples)
    # Last: commits the epoch once its files are written.
    written.append(RunCheckpoint(run.backup))
    return written, history, divergence


def best_validation(rows):
    """The lowest validation loss of the epochs already done (inf if none)."""
    return min((r["val_loss"] for r in rows if "val_loss" in r), default=math.inf)


@dataclasses.dataclass
class Session:
    """One training process's part of a run, as `prepare` sets it up."""

    config: object
    run: RunFolder
    dataset: object
    topology: Topology
    model: VAE
    batch_size: int
    callbacks: list  # for fit, in their order
    divergence: object  # the StopOnNaN among them
    history: object = None  # the chief's HistoryCSV
    scratch: RunFolder = None  # where the other processes save, when saving is collective
    first_epoch: int = 0  # the epochs done before (resuming)

    @property
    def checkpoint(self):
        return next(c for c in self.callbacks if isinstance(c, RunCheckpoint))


def train_and_evaluate(config, output_dir, verbose="auto", topology=None, restart=False):
    """Trains a VAE as `config` says and evaluates it on the test split.

    Args:
        config: a `TrainConfig`.
        output_dir: the run's folder (created; see `run.folder`).
        verbose: Keras's `fit` verbosity (`"auto"`, 0, 1 or 2).
        topology: the `parallel.Topology` to train on (default: set up
            from `config.devices`).
        restart: start an unfinished run in `output_dir` over: its files
            are deleted once the folder is locked.

    Returns:
        The dict written to `metrics.json`; None in the processes of a
        parallel run other than the chief, which writes the folder.

    Raises:
        UserError: bad output folder, another process training into it, the
            data cannot be had, a batch that does not split over the
            devices, or training diverged (the files of the last good epoch
            are kept).
    """
    topology = topology or engines.setup(config.devices)
    run = RunFolder(output_dir)
    initial, dataset = check_and_load(config, run, topology, restart)
    with contextlib.ExitStack() as held:

        def claim():  # one training process per run folder: the chief's lock
            held.enter_context(run.lock())
            check_can_continue(config, run, restart)  # again: another process may have run meanwhile
            if restart:
                run.clear()

        topology.agree(claim)
        session = prepare(config, run, dataset, topology, initial)
        fit(session, verbose)
        return finish(session)


def check_and_load(config, run, topology, restart=False):
    """Every check before the run folder is written; then the data.

    Returns:
        `(initial model or None, dataset)`.
    """
    topology.agree(lambda: check_can_continue(config, run, restart))
    topology.check_batch_size(config.batch_size)
    if keras.backend.backend() == "torch" and config.steps_per_execution != 1:
        raise UserError("steps_per_execution must be 1 with the torch backend")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard")
    import_tensorflow_quietly()  # Keras seeds TensorFlow too, and TFDS reads the data
    # Before the run folder is written: a bad --init-from leaves nothing behind.
    initial = load_initial_model(config.init_from) if config.init_from else None
    keras.utils.set_random_seed(config.seed)  # the same weights in every process
    dataset = data.load_dataset(
        config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir,
        num_train=config.num_train, num_test=config.num_test, binarization=config.binarize,
        validation_split=config.validation_split, num_validation=config.num_test,
        image_size=data.parse_image_size(config.image_size) if config.image_size else None,
        channels=config.channels, test_split=config.test_split, stream=config.stream,
    )
    check_data(config, run, dataset, restart)
    return initial, dataset


def check_data(config, run, dataset, restart=False):
    """Refuses data the run cannot train on: no labels for `--conditional`,
    a size the architecture cannot take, or (resuming) other data than the
    run read before.

    Raises:
        UserError: one line, before the run folder is written.
    """
    if config.conditional and not dataset.num_classes:
        raise UserError(f"--conditional needs labels, and {config.dataset} has none")
    try:
        config.model_config(image_shape=dataset.image_shape, num_classes=dataset.num_classes).check()
    except ValueError as error:
        size = "x".join(map(str, dataset.image_shape))
        raise UserError(f"{config.dataset} images are {size} (height x width x channels): {error}") from None
    recorded = run.data_record().get("fingerprint")
    if recorded and recorded != dataset.fingerprint and run.has_progress() and not restart:
        raise UserError(
            f"{config.dataset} is not the data {run.path} trained on ({dataset.fingerprint}, the run's "
            f"{recorded}): its files changed since, so the splits would differ; restore them, or "
            "start over with --restart"
        )


def prepare(config, run, dataset, topology, initial=None):
    """Builds and compiles the model, writes the run's settings, picks the callbacks.

    The settings are written once the model is built, so that settings that
    fail to build leave no `config.json` behind to block the folder.
    """
    # Resuming: the newest intact checkpoint (refused here if none is).
    done, _, passed_over = RunCheckpoint(run.backup).resume_point(
        config.model_config(image_shape=dataset.image_shape, num_classes=dataset.num_classes).weight_shapes()
    )
    check_same_resume_point(topology, run, done)
    batch_size = topology.check_batch_size(config.batch_size)  # this process's share
    steps = steps_per_epoch(dataset, topology, batch_size)
    with dtype_policy(config.dtype_policy), topology.scope():
        model = build_model(config, steps, dataset)
        if initial is not None:  # a resumed run's checkpoint replaces these
            copy_trained_weights(model, initial, config.init_from)
        model.compile(  # wraps Adam in a LossScaleOptimizer under mixed_float16
            optimizer=keras.optimizers.Adam(learning_rate(config, steps)),
            jit_compile=JIT_COMPILE[config.jit_compile],
            steps_per_execution=config.steps_per_execution,
        )
    if topology.chief:
        files.remove_stale_temporaries(run.path)  # from a run killed mid-write
        run.write_config(
            dataclasses.asdict(config),
            {**environment(), "topology": topology.as_dict(), "data": data_record(dataset)},
        )
    # Keep what the committed epochs wrote, redo the rest.
    rows = [row for row in run.read_history() if row["epoch"] <= done]
    if dataset.streams and topology.chief:
        print(f"Streaming the {training_images(dataset, topology):,} training images from disk, "
              f"{block_images(dataset.image_shape, config.batch_size, config.stream_block):,} at a time "
              f"(--stream {config.stream}).")
    if done and topology.chief:
        if passed_over:
            print(f"Warning: {passed_over}.")
        print(f"Resuming {run.path} after epoch {done} of {config.epochs}.")
    session = Session(config, run, dataset, topology, model, batch_size, [], None, first_epoch=done)
    _role_callbacks(session, rows)
    session.callbacks += topology.callbacks()  # after the checkpoint is restored
    return session


def check_same_resume_point(topology, run, done):
    """Refuses, on every process, to resume from checkpoints that differ
    between processes: a host that does not see the chief's run folder
    (its `backup/`) would start from another epoch, and the processes'
    collectives would no longer match.

    Raises:
        UserError: on every process, naming the shared-storage rule.
    """
    if topology.processes == 1:
        return
    chief = int(topology.from_chief(str(done)))
    if topology.sum_over_processes([chief != done])[0]:
        here = "" if chief == done else f", this process {topology.rank} after epoch {done}"
        raise UserError(
            f"the processes found different checkpoints in {run.path} (the chief resumes after epoch "
            f"{chief}{here}): the run folder must be on storage that every host reads at the same path"
        )


def _role_callbacks(session, rows):
    """The callbacks of this process's role: the chief writes the run folder;
    where Keras's saving is a collective of all processes (a model that spans
    them), the others save alongside into a scratch folder that is thrown
    away; elsewhere they write nothing."""
    topology, run = session.topology, session.run
    if topology.chief:
        session.callbacks, session.history, session.divergence = epoch_callbacks(
            session.model, session.config, run, session.dataset, rows, topology
        )
        return
    session.divergence = callbacks.StopOnNaN()
    if topology.spans_devices:
        session.scratch = RunFolder(tempfile.mkdtemp(prefix="keras-vae-process-"))
        session.callbacks = [
            session.divergence,
            callbacks.BestModelCheckpoint(session.scratch.best_model, best=best_validation(rows)),
            RunCheckpoint(run.backup, save_dir=session.scratch.backup),
        ]
    else:
        session.callbacks = [session.divergence, RunCheckpoint(run.backup, write=False)]


def fit(session, verbose):
    """`model.fit` on this process's shard (`run.inputs`); validation on the
    held-out images (else on the test split, as in the original design)."""
    topology, dataset, model = session.topology, session.dataset, session.model
    held_out = (dataset.x_val, dataset.y_val) if dataset.has_validation else (dataset.x_test, dataset.y_test)
    x_val = model_inputs(model, *(topology.shard(array) for array in held_out))
    with topology.scope():
        model.fit(
            training_input(session, session.first_epoch),
            epochs=session.config.epochs,
            validation_data=(x_val,),
            validation_batch_size=session.batch_size,
            shuffle=False,  # the batches come in the run's own order
            verbose=verbose if topology.chief else 0,
            callbacks=session.callbacks,
        )


def finish(session):
    """Saves the model and, on the chief, writes the test numbers and figures.

    With several processes, every process scores its share of the test
    images for `--final-iw-samples` (the expensive part), then the others
    wait for the chief (`Topology.join_at_end`), so that all leave together
    however long the chief's work takes.

    Returns:
        The metrics (the chief), or None (the other processes).
    """
    topology, run, model = session.topology, session.run, session.model
    diverged = session.divergence.diverged_epoch
    if session.scratch is not None:  # the chief's last collective save, below
        if diverged is None:
            save_model(model, session.scratch.model)
        shutil.rmtree(session.scratch.path, ignore_errors=True)
    if not topology.chief:
        if diverged is None and shares_likelihood(session):
            shared_likelihood(as_saved(model, session), session)
        topology.finish()
        if diverged is None:
            topology.join_at_end()  # while the chief writes the run folder
        return None
    if diverged is not None:
        topology.finish()
        raise diverged_error(diverged, session.history.rows, run)
    save_model(model, run.model)
    model = as_saved(model, session)
    likelihood = shared_likelihood(model, session)
    topology.finish()  # the other processes leave; the chief goes on alone
    metrics = test_metrics(model, session, likelihood)
    files.write_json(run.metrics, metrics)
    dataset = session.dataset
    visualize.make_figures(model, dataset.x_test, dataset.y_test, run.figures, run_dir=run.path)
    session.checkpoint.delete()  # the run is finished
    topology.join_at_end()  # the other processes leave with the chief
    return metrics


def diverged_error(epoch, rows, run):
    """The `UserError` of a run whose loss became NaN in `epoch`."""
    kept = (
        f"the files of epoch {rows[-1]['epoch']}, the last good one, are kept in {run.path}"
        if rows
        else "no epoch completed, so no model was saved"
    )
    return UserError(
        f"training diverged in epoch {epoch} (the loss became NaN or infinite) and was "
        f"stopped; {kept}. Try a lower --learning-rate."
    )


def as_saved(model, session):
    """The model the test numbers come from: float32 on one device, as saved
    (a compiled copy where it was trained under a mixed policy or in parallel)."""
    config, topology = session.config, session.topology
    if config.dtype_policy == "float32" and not topology.parallel:
        return model
    model = fresh_copy(model)
    model.compile(jit_compile=JIT_COMPILE[config.jit_compile])
    return model


def shares_likelihood(session):
    """True where the processes of a run split `--final-iw-samples` (several
    processes, and the flag given)."""
    return session.topology.processes > 1 and bool(session.config.final_iw_samples)


def shared_likelihood(model, session):
    """`--final-iw-samples` on the test images, split over the processes of
    a multi-process run (every process calls it; each scores its share and
    `evaluation.evaluate_likelihood` sums them). None where the processes do
    not share it (`shares_likelihood`): `test_metrics` scores them."""
    config, dataset, topology = session.config, session.dataset, session.topology
    if not shares_likelihood(session):
        return None
    return evaluation.evaluate_likelihood(
        model, dataset.x_test, labels=dataset.y_test if model.conditional else None,
        iw_samples=config.final_iw_samples, seed=config.seed, topology=topology,
    )


def test_metrics(model, session, likelihood=None):
    """`metrics.json`: the test losses, timings, sizes, and the likelihood if
    asked (`likelihood`: already computed over the processes, or None)."""
    config, dataset = session.config, session.dataset
    x_test = model_inputs(model, dataset.x_test, dataset.y_test)
    test = model.evaluate(x_test, batch_size=config.batch_size, verbose=0, return_dict=True)
    seconds = [row["seconds"] for row in session.history.rows if "seconds" in row]
    metrics = {
        **{f"test_{name}": float(value) for name, value in test.items()},
        "backend": keras.backend.backend(),
        "epochs": config.epochs,
        "epoch_seconds": seconds,
        "seconds_per_epoch": statistics.median(seconds) if seconds else None,
        "num_train": training_images(dataset, session.topology),
        "num_validation": len(dataset.x_val),
        "num_test": len(dataset.x_test),
        "image_shape": list(model.image_shape),
        "likelihood": model.likelihood,
        "is_likelihood": config.is_likelihood,
        # The -ELBO per pixel and channel; a bound on -log p(x) where the loss is a likelihood.
        "test_neg_elbo_bits_per_dim": evaluation.bits_per_dim(test["neg_elbo"], model.image_shape),
    }
    if config.final_iw_samples:
        likelihood = likelihood or evaluation.evaluate_likelihood(
            model, dataset.x_test, labels=dataset.y_test if model.conditional else None,
            iw_samples=config.final_iw_samples, seed=config.seed,
        )
        metrics.update({f"test_{k}": v for k, v in likelihood.items()})
    return metrics
