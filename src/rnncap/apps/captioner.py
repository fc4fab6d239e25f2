"""Photos in, captions out: a trained model and the image encoder whose features it reads, behind one object.

    from rnncap import Captioner

    captioner = Captioner.from_pretrained()                    # the shipped model; or a name or a model file
    captioner.caption("dog.jpg")                               # 'a black dog runs through the grass'
    captioner.caption_many([pil_image, uint8_array, "cat.png"], beam_size=1)   # batched; beam 1 is greedy
    for result in captioner.caption_files(["photos/", "cat.png"]):          # folders expanded; problems reported
        print(result.image, result.caption or result.error)

    [detailed] = captioner.caption_detailed([pil_image], attention=True)   # what `rnncap serve` answers
    detailed.candidates, detailed.ms                           # every beam hypothesis and its log-probability

    attended = Captioner.from_pretrained("runs/attention/best.npz").caption_with_attention("dog.jpg")
    attended.words, attended.weights.shape                     # ('a', 'dog', ...), (T, 9, 9): one map per word
    attended.write("dog-attention.png")                        # each word's map drawn over the photo

The model's metadata says which encoder it was trained on (``"encoder"``) and, optionally, how many tokens to
generate (``"max_length"``); the encoder is loaded on first use, so building a Captioner is cheap. A model that
attends over the encoder's grid (:class:`rnncap.models.AttentionCaptioner`) reads the grid instead of the pooled
vector, and can say where it looked for each word.

What a name means as a model file, which photos a folder holds and where maps go: :mod:`rnncap.apps.paths`; the
results and their gallery: :mod:`rnncap.apps.caption_results` (both importable from here too).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager

import numpy as np
from threadpoolctl import ThreadpoolController

from rnncap.apps.candidates import Candidate, DetailedCaption, candidate_lists
from rnncap.apps.caption_results import AttendedCaption, CaptionResult
from rnncap.apps.compat import check_spec, grid_maps, model_encoder
from rnncap.apps.paths import DEFAULT_MODEL, Entry, FoundPhotos, PathProblem, find_images, find_photos, model_path
from rnncap.decode import beam_candidates, search
from rnncap.encoders import Encoder, load_encoder
from rnncap.encoders.encoder import Backend
from rnncap.encoders.preprocess import ImageLike, load_images
from rnncap.encoders.specs import EncoderSpec, get_spec
from rnncap.models import CaptionModel, ModelFileError, load_model
from rnncap.text import decode_captions

# Where these lived before apps/paths.py and apps/caption_results.py, and what `rnncap caption` users import.
__all__ = [
    "DEFAULT_MODEL",
    "AttendedCaption",
    "Candidate",
    "CaptionResult",
    "Captioner",
    "DetailedCaption",
    "FoundPhotos",
    "PathProblem",
    "Photo",
    "find_images",
    "find_photos",
    "model_path",
]

# Searches over at most this many hypotheses (photos x beam) run on one BLAS thread. Their products are tiny
# ((rows, 512) @ (512, 2048)): a second OpenBLAS thread only adds synchronisation, and while other work shares the
# CPU it waits for its turn at every product. Measured with the shipped model, one photo, beam 3, while another
# process kept the 2 cores busy: 33 ms on one thread, 860 ms on two; 16 photos: 96 ms against 1,290 ms.
SINGLE_THREAD_ROWS = 96
_BLAS = ThreadpoolController()

# Tokens generated per caption, <END> included, for a model whose metadata does not say: room for the 16 words
# `rnncap prepare` keeps per caption by default, and a few more.
DEFAULT_MAX_LENGTH = 20

Photo = str | os.PathLike | ImageLike  # a file, a PIL image or a uint8 array (H, W), (H, W, 3) or (H, W, 4)


class Captioner:
    """A captioning model and its image encoder: photos -> captions.

    Shapes: N photos, S x S the encoder's input, D = ``model.input_dim`` = the encoder's feature size; for a model
    that reads the grid (``model.reads_grid``, e.g. :class:`~rnncap.models.AttentionCaptioner`), L = h * w
    its cells.
    """

    def __init__(self, model: CaptionModel, encoder: Encoder | None = None, *, backend: Backend = "auto") -> None:
        """Pair a model with the encoder it was trained on.

        Args:
            model: a captioning model, e.g. from :func:`rnncap.models.load_model`; its ``metadata["encoder"]``
                names the encoder whose features it reads (pooled, or the grid for a model with
                ``model.reads_grid``), and ``metadata["max_length"]`` (optional) how many tokens to generate.
            encoder: the encoder to use; default: the one the metadata names, loaded on first use.
            backend: how a default encoder runs (see :func:`rnncap.encoders.load_encoder`).

        Raises:
            ValueError: no encoder given and none named by the metadata; the encoder is another than the metadata
                names, unknown, or gives features of another size (or a grid of another number of cells) than the
                model reads; a bad ``max_length``.
        """
        name = model_encoder(model, None if encoder is None else encoder.name)
        try:
            spec = encoder.spec if encoder is not None else get_spec(name)
        except ValueError as err:
            raise ValueError(f"the model reads features that rnncap cannot compute from photos: {err}") from None
        check_spec(model, spec)
        max_length = model.metadata.get("max_length", DEFAULT_MAX_LENGTH)
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise ValueError(f"the model's metadata 'max_length' must be a positive integer, got {max_length!r}")
        self._model = model
        self._encoder = encoder
        self._spec = spec
        self._backend = backend
        self._max_length = max_length

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike | None = None, *, backend: Backend = "auto", device: str = "cpu"
    ) -> Captioner:
        """Load a shipped model by name (default :data:`DEFAULT_MODEL`) or any model file (see :func:`model_path`)
        onto ``device`` (``"cpu"`` or ``"cuda"``, where it decodes; the encoder runs as ``backend`` says).

        Raises:
            ModelFileError: no such model, or the file is missing, corrupt or unusable for captioning photos.
            rnncap.backend.DeviceError: ``device`` cannot be used here (``"cuda"`` without CuPy or a GPU).
        """
        path = model_path(name_or_path)
        model = load_model(path, device=device)
        try:
            return cls(model, backend=backend)
        except ValueError as err:
            raise ModelFileError(f"{path}: {err}") from None

    @property
    def model(self) -> CaptionModel:
        """The captioning model, e.g. a :class:`~rnncap.models.CaptioningRNN`."""
        return self._model

    @property
    def encoder_name(self) -> str:
        """The image encoder whose features the model reads, e.g. ``"efficientnet-lite2"``."""
        return self._spec.name

    @property
    def encoder_spec(self) -> EncoderSpec:
        """What the encoder reads and gives: input side, crop fraction, feature size, grid shape."""
        return self._spec

    @property
    def encoder(self) -> Encoder:
        """The image encoder, loaded on first use (an ONNX Runtime session; seconds the first time, see
        :func:`rnncap.encoders.load_encoder`)."""
        if self._encoder is None:
            self._encoder = load_encoder(self._spec.name, self._backend)
        return self._encoder

    @property
    def max_length(self) -> int:
        """Tokens generated per caption, ``<END>`` included, unless a call says otherwise."""
        return self._max_length

    @property
    def has_attention(self) -> bool:
        """Whether the model can say where it looked for each word (:meth:`caption_with_attention`)."""
        return self._model.attends

    def caption(self, image: Photo, *, beam_size: int = 3, max_length: int | None = None) -> str:
        """The caption of one photo: a file path, a PIL image (any mode) or a uint8 array; see :meth:`caption_many`."""
        return self.caption_many([image], beam_size=beam_size, max_length=max_length)[0]

    def caption_many(
        self,
        images: Sequence[Photo],
        *,
        beam_size: int = 3,
        max_length: int | None = None,
        batch_size: int = 32,
    ) -> list[str]:
        """Caption photos, ``batch_size`` at a time: one encoder run and one batched search per batch.

        Args:
            images: N file paths, PIL images (any mode) or uint8 arrays (H, W), (H, W, 3) or (H, W, 4), mixed freely.
            beam_size: hypotheses kept per photo; 1 is greedy search.
            max_length: the most tokens per caption, ``<END>`` included; default :attr:`max_length`.
            batch_size: photos encoded and decoded together (memory grows with it).

        Returns:
            N captions, words joined by spaces.

        Raises:
            OSError: a file is missing or not a readable image (the message starts with its path); use
                :meth:`caption_files` to caption the others anyway.
        """
        return [
            caption
            for squares in self._batches(images, batch_size)
            for caption in self._caption_squares(squares, beam_size, max_length)
        ]

    def caption_with_attention(
        self, image: Photo, *, beam_size: int = 3, max_length: int | None = None
    ) -> AttendedCaption:
        """The caption of one photo and where the model looked for each word; see :meth:`caption_many_with_attention`.

        ``caption_with_attention(photo).caption == caption(photo)``: the same search, with its weights kept.
        """
        return self.caption_many_with_attention([image], beam_size=beam_size, max_length=max_length)[0]

    def caption_many_with_attention(
        self,
        images: Sequence[Photo],
        *,
        beam_size: int = 3,
        max_length: int | None = None,
        batch_size: int = 32,
    ) -> list[AttendedCaption]:
        """Caption photos as :meth:`caption_many` does, keeping the attention weights of every word.

        Returns:
            N :class:`AttendedCaption`: caption, words, (T, h, w) weights and the (S, S, 3) square they lie on.

        Raises:
            ValueError: the model does not attend (see :attr:`has_attention`).
            OSError: a file is missing or not a readable image (the message starts with its path).
        """
        self._check_attention()
        return [
            attended
            for squares in self._batches(images, batch_size)
            for attended in self._attend_squares(squares, beam_size, max_length)
        ]

    def caption_detailed(
        self,
        images: Sequence[Photo],
        *,
        beam_size: int = 3,
        max_length: int | None = None,
        attention: bool = False,
    ) -> list[DetailedCaption]:
        """Caption photos as one batch, keeping what a server shows: every beam hypothesis with its log-probability,
        where the model looked (with ``attention``) and how long the batch took.

        Args:
            images: N photos as for :meth:`caption_many` (a server passes decoded PIL images), encoded together.
            beam_size, max_length: as for :meth:`caption_many`; ``caption_detailed(p)[i].caption ==
                caption_many(p)[i]``.
            attention: also return each caption's :class:`AttendedCaption` (ValueError for a model that does not
                attend, before any photo is read).

        Returns:
            N :class:`DetailedCaption`, in order.
        """
        if attention:
            self._check_attention()
        if not images:
            return []
        started = time.perf_counter()
        squares = np.stack([self._square(image) for image in images])  # (N, S, S, 3)
        features = self._features(squares)
        with _blas_threads(len(features) * beam_size):
            found = beam_candidates(
                self._model, features, beam_size, self._length(max_length), return_attention=attention
            )
        lists = candidate_lists(found, self._model.idx_to_word, self._model.end_id)
        maps: list[AttendedCaption | None] = [None] * len(images)
        if found.weights is not None:
            best = found.tokens[np.arange(len(images)), found.best]  # (N, max_length)
            maps = [
                AttendedCaption(" ".join(words), words, weights, square.copy())
                for (words, weights), square in zip(
                    grid_maps(self._model, best, found.weights, self._spec.grid_shape), squares, strict=True
                )
            ]
        ms = (time.perf_counter() - started) * 1000
        return [
            DetailedCaption(candidates[0].caption, candidates, attended, ms)
            for candidates, attended in zip(lists, maps, strict=True)
        ]

    def caption_files(
        self,
        paths: Iterable[str | os.PathLike] | FoundPhotos,
        *,
        beam_size: int = 3,
        max_length: int | None = None,
        batch_size: int = 32,
        attention: bool = False,
    ) -> Iterator[CaptionResult]:
        """Caption photo files and folders batch by batch, yielding one result per photo in order as each batch is done.

        Folders are expanded by :func:`rnncap.apps.paths.find_photos` (or pass its :class:`FoundPhotos`). Nothing
        bad costs more than itself: an unreadable file (missing, not an image, truncated, corrupt), a folder that
        holds no photos or cannot be listed, a broken symlink in a folder each yield a result with the reason in
        ``error``, in its place, and the others are captioned. Photos are decoded in this process: for tens of
        thousands of photos, :func:`rnncap.encoders.extract_features` decodes on worker processes, and
        :meth:`caption_features` captions its output. Arguments as for :meth:`caption_many`; with ``attention``,
        every captioned photo's result also holds its :class:`AttendedCaption` (ValueError, before any photo is
        read, for a model that does not attend).
        """
        _check_batch_size(batch_size)
        if attention:
            self._check_attention()
        found = paths if isinstance(paths, FoundPhotos) else find_photos(paths)
        entries = found.entries
        for start in range(0, len(entries), batch_size):
            yield from self._caption_entries(entries[start : start + batch_size], beam_size, max_length, attention)

    def _caption_entries(
        self, entries: list[Entry], beam_size: int, max_length: int | None, attention: bool
    ) -> Iterator[CaptionResult]:
        """One batch of :meth:`caption_files`: its photos read and captioned together, its problems passed on."""
        tasks = [(index, entry) for index, entry in enumerate(entries) if isinstance(entry, str)]
        decoded = {index: (square, message) for index, square, message in self._read(tasks)}
        readable = [square for square, _ in decoded.values() if square is not None]
        outcomes: Iterator[tuple[str, AttendedCaption | None]] = iter([])
        if readable and attention:
            outcomes = ((a.caption, a) for a in self._attend_squares(np.stack(readable), beam_size, max_length))
        elif readable:
            outcomes = ((c, None) for c in self._caption_squares(np.stack(readable), beam_size, max_length))
        for index, entry in enumerate(entries):
            if isinstance(entry, PathProblem):
                yield CaptionResult(entry.path, None, entry.reason)
                continue
            square, message = decoded[index]
            if square is None:
                # load_images starts its messages with the path, which the result already holds.
                yield CaptionResult(entry, None, message.removeprefix(f"{entry}: "))
            else:
                caption, attended = next(outcomes)
                yield CaptionResult(entry, caption, attention=attended)

    def caption_features(self, features: np.ndarray, *, beam_size: int = 3, max_length: int | None = None) -> list[str]:
        """Captions of features already extracted by the model's encoder (e.g. read from a prepared store).

        Args:
            features: (N, D) pooled features, or (N, L, D) grids for a model that reads the grid.
            beam_size, max_length: as for :meth:`caption_many`.

        Returns:
            N captions.
        """
        with _blas_threads(len(features) * beam_size):
            ids = search(self._model, features, beam_size, self._length(max_length))  # (N, max_length)
        return decode_captions(ids, self._model.idx_to_word)

    def _length(self, max_length: int | None) -> int:
        return self._max_length if max_length is None else max_length

    def _check_attention(self) -> None:
        if not self.has_attention:
            raise ValueError(
                f"the model ({type(self._model).__name__}) does not attend, so it has no attention maps: only an "
                "attention model (AttentionCaptioner) says where it looked for each word"
            )

    def _batches(self, images: Sequence[Photo], batch_size: int) -> Iterator[np.ndarray]:
        """The photos as (B, S, S, 3) uint8 squares, ``batch_size`` at a time."""
        _check_batch_size(batch_size)
        for start in range(0, len(images), batch_size):
            yield np.stack([self._square(image) for image in images[start : start + batch_size]])

    def _square(self, image: Photo) -> np.ndarray:
        """One photo as the (S, S, 3) uint8 square the encoder reads."""
        if isinstance(image, str | os.PathLike):
            [(_, square, message)] = self._read([(0, os.fspath(image))])
            if square is None:
                raise OSError(message)
            return square
        return self.encoder.preprocess(image)

    def _read(self, tasks: list[tuple[int, str]]) -> list[tuple[int, np.ndarray | None, str]]:
        """Decode (index, path) photo files into squares: (index, (S, S, 3) uint8 or None, error message or "")."""
        return load_images(tasks, self._spec.image_size, self._spec.crop_fraction)

    def _features(self, squares: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> what the model reads: (B, D) pooled or (B, L, D) grids."""
        pooled, grid = self.encoder.encode_preprocessed(squares, with_grid=self._model.reads_grid)
        return pooled if grid is None else grid  # the grid comes only when asked for

    def _caption_squares(self, squares: np.ndarray, beam_size: int, max_length: int | None) -> list[str]:
        """(B, S, S, 3) uint8 -> B captions."""
        return self.caption_features(self._features(squares), beam_size=beam_size, max_length=max_length)

    def _attend_squares(self, squares: np.ndarray, beam_size: int, max_length: int | None) -> list[AttendedCaption]:
        """(B, S, S, 3) uint8 -> B captions with their attention weights."""
        features = self._features(squares)
        with _blas_threads(len(features) * beam_size):
            # (B, max_length) ids, (B, max_length, L) weights
            ids, weights = search(self._model, features, beam_size, self._length(max_length), return_attention=True)
        return [
            AttendedCaption(" ".join(words), words, maps, square.copy())
            for (words, maps), square in zip(
                grid_maps(self._model, ids, weights, self._spec.grid_shape), squares, strict=True
            )
        ]


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _blas_threads(rows: int) -> AbstractContextManager[object]:
    """Within it, a search over ``rows`` hypotheses runs on one BLAS thread if they are few (see SINGLE_THREAD_ROWS),
    else on as many as configured."""
    return _BLAS.limit(limits=1 if rows <= SINGLE_THREAD_ROWS else None, user_api="blas")
