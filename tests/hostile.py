"""A corpus of hostile model files, made from a good one (nothing committed).

Each maker takes the path of a small, good keras-vae model and a target
path, and writes one class of crafted file from the hostile-file sweep:
settings that lie, archives that lie, HDF5 datasets that hold nothing or
point elsewhere. `make_corpus` writes them all. No Keras here: only zipfile,
json and h5py, so a child process can use it too.
"""

import io
import json
import struct
import zipfile

import h5py
import numpy as np

WEIGHTS = "model.weights.h5"
FIRST_KERNEL = "encoder/layers/dense/vars/0"  # the MLP encoder's first kernel


def members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_archive(target, contents, deflated=()):
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            method = zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=method)
    return target


def with_settings(good, target, **changes):
    """The good file with some of its settings changed (JSON values as given)."""
    contents = members(good)
    config = json.loads(contents["config.json"])
    config["config"].update(changes)
    contents["config.json"] = json.dumps(config).encode()
    return write_archive(target, contents)


def with_config_text(good, target, text, deflated=False):
    contents = members(good)
    contents["config.json"] = text.encode() if isinstance(text, str) else text
    return write_archive(target, contents, deflated=("config.json",) if deflated else ())


def with_weights(good, target, edit):
    """The good file with its weights file rewritten by `edit(h5py.File)`."""
    contents = members(good)
    buffer = io.BytesIO(contents[WEIGHTS])
    with h5py.File(buffer, "r+") as weights:
        edit(weights)
    contents[WEIGHTS] = buffer.getvalue()
    return write_archive(target, contents)


def replace_dataset(name, **create):
    """An `edit` that replaces dataset `name` by `create_dataset(name, **create)`."""

    def edit(weights):
        del weights[name]
        weights.create_dataset(name, **create)

    return edit


def lying_header(good, target):
    """Settings that ask for 25 M weights, a 50 KB weights member whose zip
    headers declare 200 MB: the declared size must not be believed."""
    with_settings(good, target, hidden_dim=16384)
    data = bytearray(target.read_bytes())
    declared = struct.pack("<I", 200 << 20)
    for signature, size_at, name_length_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            length = struct.unpack_from("<H", data, start + name_length_at)[0]
            if data[start + name_at : start + name_at + length] == WEIGHTS.encode():
                data[start + size_at : start + size_at + 4] = declared
            start += 4
    target.write_bytes(bytes(data))
    return target


def deflated_zeros(good, target):
    """100 MB of zeros deflated into 100 KB, as the weights, with an honest header."""
    contents = members(with_settings(good, target, hidden_dim=16384))
    contents[WEIGHTS] = bytes(100 << 20)
    return write_archive(target, contents, deflated=(WEIGHTS,))


def config_bomb(good, target):
    """A `config.json` padded with 64 MB of blanks (JSON allows them), deflated."""
    text = members(good)["config.json"]
    return with_config_text(good, target, text[:-1] + b" " * (64 << 20) + b"}", deflated=True)


def infinite_hidden_dim(good, target):
    text = members(good)["config.json"].decode()
    return with_config_text(good, target, text.replace('"hidden_dim": 8', '"hidden_dim": Infinity'))


def deeply_nested(good, target):
    config = json.loads(members(good)["config.json"])
    config["config"]["hidden_dim"] = "@"
    text = json.dumps(config).replace('"@"', "[" * 100_000 + "]" * 100_000)
    return with_config_text(good, target, text)


def fill_value_kernel(good, target):
    """The first kernel as a chunked dataset with nothing stored (its fill value)."""
    return with_weights(good, target, replace_dataset(FIRST_KERNEL, shape=(784, 8), dtype="float32", chunks=(98, 8), fillvalue=1.0))


def huge_fill_value_kernel(good, target):
    """The issue's crash: a compressed, chunked kernel of 375 M floats, nothing stored."""
    return with_weights(good, target, replace_dataset(
        FIRST_KERNEL, shape=(375_000, 1000), dtype="float32", chunks=(1000, 1000), compression="gzip", fillvalue=0.0,
    ))


def compressed_kernel(good, target):
    def edit(weights):
        data = weights[FIRST_KERNEL][()]
        replace_dataset(FIRST_KERNEL, data=data, compression="gzip")(weights)

    return with_weights(good, target, edit)


def external_kernel(good, target):
    """The first kernel's data kept in another file (here: /etc/hostname)."""
    return with_weights(good, target, replace_dataset(
        FIRST_KERNEL, shape=(784, 8), dtype="float32", external=[("/etc/hostname", 0, h5py.h5f.UNLIMITED)],
    ))


def virtual_kernel(good, target):
    def edit(weights):
        layout = h5py.VirtualLayout(shape=(784, 8), dtype="float32")
        layout[:] = h5py.VirtualSource("elsewhere.h5", "data", shape=(784, 8))
        del weights[FIRST_KERNEL]
        weights.create_virtual_dataset(FIRST_KERNEL, layout)

    return with_weights(good, target, edit)


def soft_link(good, target):
    def edit(weights):
        weights["decoder/alias"] = h5py.SoftLink("/encoder")

    return with_weights(good, target, edit)


def external_link(good, target):
    def edit(weights):
        weights["decoder/elsewhere"] = h5py.ExternalLink("/etc/other.h5", "/")

    return with_weights(good, target, edit)


def misshapen_kernel(good, target):
    """The first kernel with as many floats, in another shape."""
    return with_weights(good, target, replace_dataset(FIRST_KERNEL, data=np.zeros((392, 16), "float32")))


def extra_member(good, target):
    contents = members(good)
    contents["../../outside.txt"] = b"escape"
    return write_archive(target, contents)


def bad_checksum(good, target):
    """A stored weights member with one byte changed after its CRC was written."""
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        info = archive.getinfo(WEIGHTS)
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


#: name -> (maker, a fragment of the one-line refusal).
CORPUS = {
    "lying_header": (lying_header, "declares 209,715,200 bytes"),
    "deflated_zeros": (deflated_zeros, "is compressed"),
    "config_bomb": (config_bomb, "inflates beyond"),
    "infinite_hidden_dim": (infinite_hidden_dim, "Infinity"),
    "deeply_nested": (deeply_nested, "nested"),
    "many_classes": (lambda good, target: with_settings(good, target, num_classes=20000), "num_classes must be at most 1000"),
    "huge_images": (lambda good, target: with_settings(good, target, image_shape=[4096, 4096, 1], architecture="conv"), "image_shape must be at most"),
    "string_setting": (lambda good, target: with_settings(good, target, latent_dim="2"), "latent_dim must be a whole number"),
    "fill_value_kernel": (fill_value_kernel, "stores 0"),
    "huge_fill_value_kernel": (huge_fill_value_kernel, "vars/0 is compressed"),
    "compressed_kernel": (compressed_kernel, "is compressed"),
    "external_kernel": (external_kernel, "keeps its data in another file"),
    "virtual_kernel": (virtual_kernel, "virtual dataset"),
    "soft_link": (soft_link, "SoftLink"),
    "external_link": (external_link, "ExternalLink"),
    "misshapen_kernel": (misshapen_kernel, "do not match its settings"),
    "extra_member": (extra_member, "members a keras-vae model does not"),
    "bad_checksum": (bad_checksum, "corrupt"),
}


def make_corpus(good, folder):
    """Writes every file of `CORPUS` into `folder`; returns name -> path."""
    return {name: maker(good, folder / f"{name}.keras") for name, (maker, _) in CORPUS.items()}


