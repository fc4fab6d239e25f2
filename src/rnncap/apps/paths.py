"""Which files captioning reads and writes: the model file a name means, the photos a folder holds, and the file
each photo's attention maps go to.

::

    from rnncap.apps.paths import attention_map_paths, find_images, find_photos, model_path

    model_path()                                   # .../rnncap/assets/flickr8k-coco-attention.npz, the shipped default
    model_path("runs/flickr/best.npz")             # a path stays a path
    photos = find_images(["photos/", "cat.png"])   # ['photos/a.jpg', 'photos/b.png', 'cat.png']; else ValueError
    found = find_photos(["empty/", "cat.png"])     # .photos ['cat.png'], .problems [empty: holds no photos (...)]
    attention_map_paths(Path("maps"), photos)      # [maps/a.png, maps/b.png, maps/cat.png]
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from rnncap.models import ModelFileError

DEFAULT_MODEL = "flickr8k-coco-attention"
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


class PathProblem(NamedTuple):
    """A photo argument or folder entry that cannot be captioned, and why: ``str()`` gives ``PATH: reason``."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def sentence(self) -> str:
        """The problem said on its own, as :func:`find_images` raises it: ``folder PATH holds no photos (...)``."""
        return f"folder {self.path} {self.reason}" if os.path.isdir(self.path) else str(self)


Entry = str | PathProblem  # a photo path to read, or what went wrong in its place


@dataclass(frozen=True)
class FoundPhotos:
    """What :func:`find_photos` found: every entry in the order given, photos and problems in their places."""

    entries: list[Entry]

    @property
    def photos(self) -> list[str]:
        """The photo paths, in order."""
        return [entry for entry in self.entries if isinstance(entry, str)]

    @property
    def problems(self) -> list[PathProblem]:
        """The arguments and folder entries that hold no photo to caption, in order."""
        return [entry for entry in self.entries if isinstance(entry, PathProblem)]


def find_photos(paths: Iterable[str | os.PathLike]) -> FoundPhotos:
    """Expand folders into the photos inside them, reporting what cannot be captioned instead of raising.

    A folder contributes its files whose extension is in :data:`IMAGE_SUFFIXES` (any case), sorted by name; not
    its subfolders (no recursion), and not hidden files, such as the ``._photo.jpg`` metadata files macOS leaves
    on shared drives, which are not photos. A file argument is kept as given, whatever its extension, even if it
    does not exist: reading it reports it (:meth:`rnncap.Captioner.caption_files`).

    Each problem costs only itself and takes its place among the entries: a folder that holds no photos or cannot
    be listed (permissions, a symlink loop); inside a folder, a symlink with a photo's name that leads nowhere
    (dangling) or round in a loop. Entries of other names (``notes.txt``, a dangling ``README``) are not photos
    and are passed over, as before.
    """
    entries: list[Entry] = []
    for given in paths:
        path = os.fspath(given)
        if os.path.isdir(path):
            entries += _folder_entries(path)
        else:
            entries.append(path)
    return FoundPhotos(entries)


def find_images(paths: Iterable[str | os.PathLike]) -> list[str]:
    """The photos of :func:`find_photos`, for callers that want all or nothing.

    Returns:
        The photo paths as strings, in the order given.

    Raises:
        ValueError: a folder holds no photo or cannot be listed, or holds a broken symlink with a photo's name
            (the first problem; :func:`find_photos` reports every one and keeps the rest).
    """
    found = find_photos(paths)
    if found.problems:
        raise ValueError(found.problems[0].sentence())
    return found.photos


def _folder_entries(folder: str) -> list[Entry]:
    """One folder's photos, sorted by name, with its broken photo symlinks in their places; or why it has none."""
    try:
        with os.scandir(folder) as listing:
            names = sorted(entry.name for entry in listing if _is_photo_name(entry.name))
    except OSError as err:
        return [PathProblem(folder, f"cannot be listed: {type(err).__name__}: {err.strerror or err}")]
    entries: list[Entry] = []
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):  # follows symlinks: a link to a photo is a photo
            entries.append(path)
        elif os.path.islink(path):
            entries.append(PathProblem(path, _broken_link_reason(path)))
        # else a subfolder (or a device, a pipe) of a photo's name: not a photo, passed over like any subfolder
    if not entries:
        return [PathProblem(folder, f"holds no photos ({', '.join(IMAGE_SUFFIXES)} files)")]
    return entries


def _is_photo_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _broken_link_reason(path: str) -> str:
    """Why the symlink ``path`` leads to no file: a loop, a dangling target, or another error."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symlink loop (it never reaches a file)"
        if err.errno == errno.ENOENT:
            return f"a dangling symlink (its target {os.readlink(path)} does not exist)"
        return f"a symlink that cannot be followed: {type(err).__name__}: {err.strerror or err}"
    return "a symlink to something that is not a file"


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
