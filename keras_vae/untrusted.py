"""Reading files written by strangers, with memory bounded by what they hold.

Model files, resume checkpoints, run folders and the registry are shared and
copied, so every byte the project reads from them is untrusted. The readers
here never believe a size a file declares: zip members are inflated under a
hard cap on what actually comes out, JSON is bounded in size and depth and
refuses `NaN` and `Infinity`, and an HDF5 weights file is inspected with
`h5py` (shapes, types and storage, nothing read) before anyone loads it. Each
refusal is a `DamagedFileError` with one line that names the file. No Keras
here: the command line checks files before an engine loads.
"""

import json
import math
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import h5py

from keras_vae.errors import DamagedFileError

#: The most a JSON file (a model's `config.json`, a run's settings) may hold.
MAX_JSON_BYTES = 4 << 20
#: The deepest a JSON document may nest (ours nest three levels).
MAX_JSON_DEPTH = 32
#: Integer arrays and float scalars a weights file may hold besides the
#: weights (seed states, step counters, the KL weight).
MAX_SCALARS = 64
_OPTIMIZER_GROUP = "optimizer"
_BLOCK = 1 << 20


def parse_json(data, where):
    """Parses JSON bytes from an untrusted file.

    Args:
        data: the bytes (at most `MAX_JSON_BYTES`, checked by the caller's
            reader).
        where: what to name in a refusal (a path, `file.keras:config.json`).

    Returns:
        The parsed value.

    Raises:
        DamagedFileError: not UTF-8 JSON, `NaN`/`Infinity`, or nested
            deeper than `MAX_JSON_DEPTH`.
    """
    def refuse_constant(name):
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        value = json.loads(data.decode("utf-8"), parse_constant=refuse_constant)
    except RecursionError:
        raise DamagedFileError(f"{where}: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as error:
        reason = str(error).splitlines()[0][:120]
        raise DamagedFileError(f"{where}: not valid JSON ({reason})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise DamagedFileError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value):
    """How deeply lists and dicts nest in `value` (iteratively: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_json(path, max_bytes=MAX_JSON_BYTES):
    """Reads and parses a JSON file of at most `max_bytes`.

    Raises:
        DamagedFileError: too large, unreadable as JSON (see `parse_json`).
        OSError: the file cannot be read (missing, a folder, no permission).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DamagedFileError(f"{path}: larger than {max_bytes:,} bytes; not one of ours")
    return parse_json(data, path)


def read_member(archive, name, where, max_bytes=MAX_JSON_BYTES):
    """The bytes of one zip member, inflated under a hard cap.

    The cap is on what decompression produces, not on the size the zip's
    header declares, so a member that lies about its size, or inflates a
    little file into gigabytes, is refused after `max_bytes`. The member's
    CRC is checked when it is read to its end.

    Raises:
        DamagedFileError: larger than `max_bytes`, or a bad checksum.
    """
    try:
        with archive.open(name) as member:
            data = member.read(max_bytes + 1)
            if len(data) <= max_bytes:
                member.read(1)  # at the end: makes zipfile check the CRC
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise DamagedFileError(f"{where}: corrupt archive member {name} ({error})") from None
    if len(data) > max_bytes:
        raise DamagedFileError(f"{where}: {name} inflates beyond {max_bytes:,} bytes; refused")
    return data


def check_stored_member(archive, name, where):
    """Checks that a member is stored uncompressed, whole and with its CRC.

    Keras stores a model's weights uncompressed; a compressed member could
    inflate without bound, so it is refused. The bytes are read in blocks
    (the memory of one block) to check the CRC.

    Returns:
        The member's size in bytes, which the file itself holds.
    """
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise DamagedFileError(f"{where}: {name} is compressed; keras-vae models store it plainly")
    if info.compress_size != info.file_size:
        raise DamagedFileError(
            f"{where}: the zip header of {name} declares {info.file_size:,} bytes but it "
            f"stores {info.compress_size:,}; refused"
        )
    try:
        with archive.open(name) as member:
            while member.read(_BLOCK):
                pass
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise DamagedFileError(f"{where}: corrupt archive member {name} ({error})") from None
    return info.file_size


def check_weights_file(source, expected_shapes, where, size):
    """Inspects an HDF5 weights file before anything of it is read.

    Every dataset must be a plain number array whose data the file holds
    (contiguous, compact or chunked storage of at least its declared size:
    no compression, no fill-value-only, external or virtual datasets, no
    soft or external links). The model's floating-point arrays (outside
    `optimizer/`; scalars aside) must have exactly `expected_shapes` (as a multiset, axes
    in any order: a transposed convolution orders its kernel's channels the
    other way); the optimizer's slots must be shaped like them; the data
    declared in all must fit in the file's `size` bytes.

    Args:
        source: a path or a seekable binary file object (a zip member).
        expected_shapes: the weight shapes the model's settings imply
            (`ModelConfig.weight_shapes()`).
        where: what to name in a refusal.
        size: the file's size in bytes.

    Raises:
        DamagedFileError: with the first thing that is wrong.
    """
    try:
        with h5py.File(source, "r") as weights:
            datasets = _plain_datasets(weights, where)
    except DamagedFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise DamagedFileError(f"{where}: not a readable HDF5 weights file ({reason})") from None
    declared = sum(nbytes for _, _, _, nbytes in datasets)
    if declared > size:
        raise DamagedFileError(
            f"{where}: its datasets declare {declared:,} bytes but the file holds {size:,}"
        )
    model, optimizer, scalars = Counter(), Counter(), 0
    for name, shape, kind, _ in datasets:
        if kind != "f" or not shape:  # seed states, step counters, the KL weight
            scalars += 1
        elif name.split("/", 1)[0] == _OPTIMIZER_GROUP:
            optimizer[tuple(sorted(shape))] += 1
        else:
            model[tuple(sorted(shape))] += 1
    expected = Counter(tuple(sorted(shape)) for shape in expected_shapes)
    if model != expected:
        missing = sum((expected - model).values())
        extra = sum((model - expected).values())
        raise DamagedFileError(
            f"{where}: its weights do not match its settings ({missing} of "
            f"{sum(expected.values())} expected arrays missing or misshapen, {extra} unexpected)"
        )
    if scalars > MAX_SCALARS or any(
        shape not in expected and math.prod(shape) > 1 for shape in optimizer
    ):
        raise DamagedFileError(f"{where}: holds arrays that belong to no weight of its model")


def _plain_datasets(weights, where):
    """`(name, shape, kind, nbytes)` of every dataset, each checked to be plain."""
    links = []
    weights.visititems_links(lambda name, link: links.append((name, link)))  # None: go on
    found = []
    for name, link in links:  # checked outside h5py's callback, which cannot raise
        if not isinstance(link, h5py.HardLink):
            raise DamagedFileError(f"{where}: {name} is a link ({type(link).__name__}); refused")
        item = weights[name]
        if isinstance(item, h5py.Dataset):
            found.append(_check_dataset(item, name, where))
    return found


def _check_dataset(dataset, name, where):
    kind = dataset.dtype.kind
    if kind not in "fiu" or dataset.dtype.itemsize > 8 or dataset.ndim > 4:
        raise DamagedFileError(f"{where}: {name} is not a plain number array ({dataset.dtype})")
    properties = dataset.id.get_create_plist()
    layout = properties.get_layout()
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT, h5py.h5d.CHUNKED):
        raise DamagedFileError(f"{where}: {name} is a virtual dataset; refused")
    if properties.get_external_count():
        raise DamagedFileError(f"{where}: {name} keeps its data in another file; refused")
    if properties.get_nfilters():
        raise DamagedFileError(f"{where}: {name} is compressed; refused")
    nbytes = math.prod(dataset.shape) * dataset.dtype.itemsize
    if dataset.id.get_storage_size() < nbytes:
        raise DamagedFileError(
            f"{where}: {name} declares {nbytes:,} bytes but stores "
            f"{dataset.id.get_storage_size():,}; refused"
        )
    return name, dataset.shape, kind, nbytes
