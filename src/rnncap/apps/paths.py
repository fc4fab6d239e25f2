"""Which files captioning reads and writes: the model file a name means, the photos a folder holds, and the file
each photo's attention maps go to.

::

    from rnncap.apps.paths import attention_map_paths, find_images, model_path

    model_path()                                   # .../rnncap/assets/flickr8k-attention.npz, the shipped default
    model_path("runs/flickr/best.npz")             # a path stays a path
    photos = find_images(["photos/", "cat.png"])   # ['photos/a.jpg', 'photos/b.png', 'cat.png']
    attention_map_paths(Path("maps"), photos)      # [maps/a.png, maps/b.png, maps/cat.png]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from rnncap.models import ModelFileError

DEFAULT_MODEL = "flickr8k-attention"
ASSETS = Path(__file__).resolve().parent.parent / "assets"  # shipped models: assets/<name>.npz
# What find_images takes from a folder, by extension (lower-cased): the formats photos come in that Pillow reads.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def model_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """The model file that ``name_or_path`` means.

    Args:
        name_or_path: a shipped model's name (``rnncap/assets/<name>.npz``), or a path: a ``Path``, anything
            ending in ``.npz`` or holding a directory separator, or an existing file. None: :data:`DEFAULT_MODEL`.

    Raises:
        ModelFileError: a name that is no shipped model (or the shipped default missing from this installation).
            A path is returned as it is; :func:`rnncap.models.load_model` says whether it is a readable model.
    """
    name = DEFAULT_MODEL if name_or_path is None else name_or_path
    path = Path(name)
    if isinstance(name, os.PathLike) or path.suffix == ".npz" or len(path.parts) > 1 or path.is_file():
        return path
    shipped = ASSETS / f"{name}.npz"
    if shipped.is_file():
        return shipped
    if name == DEFAULT_MODEL:
        raise ModelFileError(
            f"the shipped model {DEFAULT_MODEL} ({shipped}) is missing from this installation; "
            "pass a model file instead (rnncap caption --model PATH)"
        )
    available = sorted(p.stem for p in ASSETS.glob("*.npz")) or "none"
    raise ModelFileError(f"no model file or shipped model named {name!r} (shipped models: {available})")


def find_images(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Expand folders into the photos inside them; files are kept as given, whatever their extension.

    A folder contributes its files whose extension is in :data:`IMAGE_SUFFIXES` (any case), sorted by name; not
    its subfolders (no recursion), and not hidden files, such as the ``._photo.jpg`` metadata files macOS leaves
    on shared drives, which are not photos. A path that does not exist is kept: captioning it reports it.

    Returns:
        The photo paths as strings, in the order given.

    Raises:
        ValueError: a folder holds no photo.
    """
    found: list[str] = []
    for given in paths:
        path = os.fspath(given)
        if not os.path.isdir(path):
            found.append(path)
            continue
        names = sorted(
            entry.name
            for entry in os.scandir(path)
            if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not names:
            raise ValueError(f"folder {path} holds no photos ({', '.join(IMAGE_SUFFIXES)} files)")
        found += [os.path.join(path, name) for name in names]
    return found


def attention_map_paths(target: str | os.PathLike, photos: Sequence[str | os.PathLike]) -> list[Path]:
    """Where each photo's attention maps go (see :meth:`rnncap.apps.captioner.AttendedCaption.write`).

    Args:
        target: a ``.png`` file (any case) for the maps of one photo, else a folder (created when they are written).
        photos: the N photo files, in order.

    Returns:
        N paths: ``[target]`` for a ``.png``, else ``target/<photo name>.png``, the photo's file name without its
        extension (``dog.jpg`` -> ``target/dog.png``), with ``-2``, ``-3``, ... for the second, third photo of the
        same name (from different folders, or ``dog.jpg`` beside ``dog.png``). Names that differ only in case
        count as the same: ``dog.jpg`` and ``DOG.png`` would be one file on macOS and Windows.

    Raises:
        ValueError: a ``.png`` for other than one photo, or ``target`` is a file that is not a ``.png``. Call this
            before captioning, so that a bad target costs no work.
    """
    target = Path(target)
    if target.suffix.lower() == ".png":
        if len(photos) != 1:
            raise ValueError(
                f"{target}: a .png file holds the maps of one photo, but there are {len(photos)} photos; "
                "name a folder instead, which gets one PNG per photo"
            )
        return [target]
    if target.is_file():
        raise ValueError(f"{target}: a file that is not a .png; name a .png file or a folder")
    paths, taken = [], set()
    for photo in photos:
        stem = Path(photo).stem or "photo"
        name, copy = stem, 1
        while name.lower() in taken:
            copy += 1
            name = f"{stem}-{copy}"
        taken.add(name.lower())
        paths.append(target / f"{name}.png")
    return paths
