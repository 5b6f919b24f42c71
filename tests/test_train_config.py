"""TrainConfig: validation of every setting, and the learning-rate schedule."""

import dataclasses
import json

import keras
import pytest

from keras_vae import UserError
from keras_vae.run.config import TrainConfig
from keras_vae.run.trainer import learning_rate


@pytest.mark.any_backend  # settings and flags
def test_defaults_are_the_original_design():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.latent_dim, config.hidden_dim) == (10, 128, 20, 512)
    assert config.learning_rate == 1e-3 and config.binarize == "none"
    assert learning_rate(config, steps_per_epoch=469) == 1e-3


@pytest.mark.any_backend  # settings and flags
def test_every_problem_is_reported_at_once():
    with pytest.raises(UserError) as error:
        TrainConfig(epochs=0, hidden_dim=-1, binarize="sometimes", lr_schedule="step")
    message = str(error.value)
    for fragment in ("epochs must be > 0", "hidden_dim must be > 0", "unknown binarization", "lr_schedule must be one of"):
        assert fragment in message


def test_cosine_schedule_decays_to_one_percent():
    schedule = learning_rate(TrainConfig(lr_schedule="cosine", epochs=2), steps_per_epoch=10)
    values = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 10, 20)]
    assert values[0] == pytest.approx(1e-3)
    assert values[1] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5), rel=1e-4)
    assert values[2] == pytest.approx(1e-5, rel=1e-3)


@pytest.mark.any_backend  # settings and flags
@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(architecture="transformer"), "unknown architecture"),
        (dict(architecture="conv", filters=(8, 16, 32)), "divisible by 8"),
        (dict(architecture="resnet", blocks=0), "blocks must be > 0"),
        (dict(beta=-1.0), "beta must be >= 0"),
        (dict(kl_warmup_epochs=-2), "kl_warmup_epochs must be >= 0"),
        (dict(free_bits=-0.1), "free_bits must be >= 0"),
        (dict(iw_samples=0), "iw_samples must be >= 1"),
        (dict(iw_samples=5, free_bits=0.5), "free bits apply to the VAE objective"),
        (dict(conditional=True, dataset="binarized_mnist"), "has no labels"),
    ],
)
def test_improvement_settings_are_checked(settings, message):
    with pytest.raises(UserError, match=message):
        TrainConfig(**settings)


@pytest.mark.any_backend  # settings and flags
def test_filters_survive_the_json_round_trip(tmp_path):
    config = TrainConfig(architecture="conv", filters=[16, 32])
    assert config.filters == (16, 32)
    assert TrainConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config


@pytest.mark.any_backend  # settings and flags
def test_every_setting_is_a_flag_with_its_default_and_help():
    from keras_vae.cli.parsers import train_parser

    command = train_parser("train.py")
    defaults = command.parse_args([])
    for field in dataclasses.fields(TrainConfig):
        assert getattr(defaults, field.name) == field.default, field.name
        assert field.metadata["help"]
    assert cli_config(command, []) == TrainConfig()
    flags = ["--architecture", "conv", "--filters", "8,16", "--conditional", "--beta", "0.5",
             "--num-train", "100", "--tensorboard", "--lr-schedule", "cosine"]
    assert cli_config(command, flags) == TrainConfig(
        architecture="conv", filters=(8, 16), conditional=True, beta=0.5, num_train=100,
        tensorboard=True, lr_schedule="cosine",
    )


def cli_config(command, argv):
    from keras_vae.cli import flags as cli

    return cli.config_from_args(TrainConfig, command.parse_args(argv))


@pytest.mark.any_backend  # settings and flags
def test_model_settings_are_the_ones_vae_takes():
    from keras_vae import ModelConfig

    assert set(TrainConfig().model_settings()) <= set(ModelConfig.names())
    assert TrainConfig().model_config() == ModelConfig()  # the defaults agree


@pytest.mark.any_backend  # settings and flags
@pytest.mark.parametrize(
    "settings, held_out",
    [
        ({}, 0),  # the original design: grey levels, all 60 000 training images
        ({"binarize": "dynamic"}, 10000),  # the likelihood protocol
        ({"binarize": "static"}, 10000),
        ({"dataset": "binarized_mnist"}, 10000),
        ({"binarize": "dynamic", "validation_split": 0}, 0),
        ({"validation_split": 5000}, 5000),
    ],
)
def test_the_validation_split_default_follows_the_pixels(settings, held_out):
    assert TrainConfig(**settings).validation_split == held_out


@pytest.mark.any_backend  # settings and flags
def test_bad_validation_splits_are_config_errors():
    with pytest.raises(UserError, match="validation_split must be >= 0"):
        TrainConfig(validation_split=-3)
    with pytest.raises(UserError, match="its own 10000 validation images"):
        TrainConfig(dataset="binarized_mnist", validation_split=20)
