"""The README and docs: their commands parse as written, the cheap ones run."""

import dataclasses
import re
import shlex

import pytest

from conftest import ROOT, run_here
from keras_vae import pretrained
from keras_vae.cli import flags as cli, parsers
from keras_vae.run.config import TrainConfig

# The docs say the same whatever the backend: checked once (tests/run.sh).
pytestmark = pytest.mark.any_backend

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "pretrained" / "README.md"]
COMMAND = re.compile(
    r"^(?:[A-Z_]+=\S+\s+)*(?:(?:python|torchrun(?: --[\w-]+ \S+)*) (?:scripts/(\w+)\.py)|keras-vae (\w+))(?:\s|$)"
)


def code_blocks(path, language):
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def commands(path):
    """The keras-vae commands in a file's bash blocks and inline code, joined across `\\`."""
    found = []
    for block in code_blocks(path, "bash"):
        found += block.replace("\\\n", " ").splitlines()
    for text_line in path.read_text().splitlines():
        if path.name == "reliability.md" and text_line.startswith("|"):
            continue  # its table shows bad input on purpose
        found += re.findall(r"`((?:[A-Z_]+=\S+ )*(?:python scripts/|torchrun [^`]*scripts/|keras-vae )[^`]*)`", text_line)
    return [line.strip() for line in found if COMMAND.match(line.strip())]


ALL = [(path.relative_to(ROOT).as_posix(), line) for path in DOCS for line in commands(path)]


def test_the_docs_show_commands():
    assert len(ALL) > 20
    assert sum(1 for path, _ in ALL if path == "README.md") > 10


@pytest.mark.parametrize("where, line", ALL)
def test_every_command_parses_as_written(where, line):
    match = COMMAND.match(line)
    name = match.group(1) or match.group(2)
    words = shlex.split(line)
    args = words[words.index(f"scripts/{name}.py") + 1 :] if match.group(1) else words[2:]
    args = [a for a in args if a not in ("&&",)]
    if "<" in line:  # a placeholder such as runs/<run>: parse the flags only
        stand_ins = {"folder:": "folder:docs", "npz:": "npz:README.md"}  # a folder, a file
        args = [
            a if "<" not in a else next((v for k, v in stand_ins.items() if a.startswith(k)), "runs/x/model.keras")
            for a in args
        ]
    parser = parsers.COMMANDS[name][1](f"{name}.py")
    if "--help" in args:
        with pytest.raises(SystemExit) as done:
            parser.parse_args(args)
        assert done.value.code == 0
        return
    parsed = parser.parse_args(args)  # argparse exits on an unknown flag or value
    if name == "train":
        cli.config_from_args(TrainConfig, parsed)  # and every value is checked
    if getattr(parsed, "pretrained", None):
        assert parsed.pretrained in pretrained.names(), line


def test_every_training_flag_is_documented():
    usage = (ROOT / "docs" / "usage.md").read_text()
    for field in dataclasses.fields(TrainConfig):
        assert f"`--{field.name.replace('_', '-')}`" in usage, field.name


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.slow
def test_readme_pretrained_commands_and_python_snippet_run(tmp_path):
    readme = ROOT / "README.md"
    block = next(b for b in code_blocks(readme, "bash") if "--pretrained" in b)
    generate = next(line for line in block.splitlines() if "generate.py" in line)
    result = run_here("generate.py", *shlex.split(generate)[2:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "samples.png").is_file()
    snippet = next(b for b in code_blocks(readme, "python") if "load_pretrained" in b)
    names = {}
    exec(snippet, names)  # the README's Python, as a user pastes it
    assert names["probabilities"].shape == (16, 28, 28, 1)
