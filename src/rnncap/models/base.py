"""The model contract: what every captioning model declares, and what they share.

Everything outside ``rnncap.models`` (decoding, the trainer, evaluation, the captioner) types against
:class:`CaptionModel` and asks it, never probes it with ``hasattr``:

- ``feature_shape``: one image's features as the model reads them: ``(D,)`` pooled, ``(L, D)`` a grid;
- ``attends``: whether decoding can return attention weights (``attention_weights``);
- ``loss(features, captions, compute_grads, rng) -> (loss, grads)``: teacher forcing;
- ``init_state(features) -> state``, ``step(state, word_ids) -> (log_probs, state)`` and
  ``select_state(state, rows) -> state``: what :mod:`rnncap.decode` needs to write captions;
- ``config()``: the constructor arguments; ``save`` / ``load``; ``metadata``;
- ``device`` and ``to(device)``: where the parameters live (:mod:`rnncap.backend`), NumPy on the host by default.
  The methods take host (NumPy) or device features and move them to the model's device; gradients and decoder
  states are on it too. Model files are NumPy whatever the device.

A model class calls :meth:`CaptionModel._setup` first in its ``__init__``, then builds ``self.params``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal, Self, overload

import numpy as np

from rnncap import decode
from rnncap.backend import Device, array_module, device_of, is_array, to_device, to_numpy
from rnncap.decode import Attended, State
from rnncap.models.config import ModelConfig
from rnncap.models.serialization import ModelFileError, check_params, read_model_file, write_model_file
from rnncap.nn.dropout import DropoutDraws
from rnncap.text import END, END_ID, NULL, START, START_ID, UNK, check_caption_ids, idx_to_word_list

BLOCKED_ENDINGS = "blocked_endings"
"""The metadata key of :attr:`CaptionModel.blocked_endings`: a sorted list of words."""


class CaptionModel(abc.ABC):
    """Base of the captioning models; see the module docstring."""

    params: dict[str, np.ndarray]
    #: The dataclass of the model's shape (see rnncap.models.config).
    settings_class: type[ModelConfig]
    dropout: float
    #: Whether the model attends over a grid, so that decoding can return where it looked for each word.
    attends: bool = False

    def _setup(self, word_to_idx: dict[str, int], dtype: np.dtype | type | str, settings: ModelConfig) -> None:
        """Keep what every model has: the fields of ``settings`` (checked by its dataclass) as attributes
        (``self.hidden_dim`` ...), then the vocabulary, its special ids and the dtype."""
        for name, value in asdict(settings).items():
            setattr(self, name, value)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.word_to_idx = dict(word_to_idx)
        self.idx_to_word = idx_to_word_list(self.word_to_idx)
        self.null_id = self.word_to_idx[NULL]
        self.start_id = self.word_to_idx.get(START, START_ID)
        self.end_id = self.word_to_idx.get(END, END_ID)
        self.unk_id = self.word_to_idx.get(UNK)  # decoding never emits it (see rnncap.decode)
        self.vocab_size = len(self.idx_to_word)
        # Facts saved with the weights that the network does not use, e.g. {"encoder": "efficientnet-lite2"}.
        self.metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------ decoding rules

    @property
    def blocked_endings(self) -> tuple[str, ...]:
        """Words no decoded caption ends on: greedy and beam search never emit ``<END>`` right after one of them
        (:mod:`rnncap.decode`), so that "a dog runs through the" is never written; none by default.

        Kept in the model's metadata (:data:`BLOCKED_ENDINGS`) and so in its file. Self-critical fine-tuning learns
        to cut captions off (a CIDEr-D reward hack, counted by ``rnncap evaluate`` as "cut off mid-phrase"): the
        fine-tuned models shipped block :data:`rnncap.metrics.evaluate.CUT_OFF_ENDINGS`. The sampler of SCST
        (:func:`rnncap.sampling.sample_captions`) draws from the model's distribution as it is.
        """
        return tuple(self.metadata.get(BLOCKED_ENDINGS, ()))

    @blocked_endings.setter
    def blocked_endings(self, words: Iterable[str]) -> None:
        words = [words] if isinstance(words, str) else list(words)  # one word given alone is that word
        if not all(isinstance(word, str) and word for word in words):
            raise ValueError(f"blocked_endings must be words (non-empty strings), got {words!r}")
        special = sorted({NULL, START, END, UNK} & set(words))
        if special:
            raise ValueError(f"blocked_endings must be words, not the special tokens {special}")
        if words:
            self.metadata[BLOCKED_ENDINGS] = sorted(set(words))
        else:
            self.metadata.pop(BLOCKED_ENDINGS, None)

    @property
    def no_end_after(self) -> tuple[int, ...]:
        """The ids of the :attr:`blocked_endings` the vocabulary has (the others can never be emitted anyway)."""
        return tuple(self.word_to_idx[word] for word in self.blocked_endings if word in self.word_to_idx)

    # ------------------------------------------------------------------ the device

    @property
    def device(self) -> Device:
        """Where the parameters live, and so where the model computes: ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy)."""
        return device_of(next(iter(self.params.values())))

    def to(self, device: str) -> Self:
        """Move the parameters to ``device`` (``"cpu"`` or ``"cuda"``) and return the model; a no-op where they
        are already.

        Raises:
            rnncap.backend.DeviceError: ``device`` cannot be used here (``"cuda"`` without CuPy or a GPU).
        """
        self.params = {name: to_device(value, device) for name, value in self.params.items()}
        return self

    # ------------------------------------------------------------------ the contract

    @abc.abstractmethod
    def __init__(self, word_to_idx: dict[str, int], **kwargs: Any) -> None:
        """A model with random weights for the vocabulary ``word_to_idx``; ``kwargs`` are the fields of its config
        dataclass, ``dtype`` and ``rng``: what :meth:`load` and :func:`rnncap.models.build_model` pass."""

    @classmethod
    @abc.abstractmethod
    def param_shapes(cls, settings: Any, vocab_size: int) -> dict[str, tuple[int, ...]]:
        """Every parameter's shape for ``settings`` (an instance of ``settings_class``) and V = ``vocab_size``,
        computed without allocating: what :meth:`load` checks a file's arrays against before building a model."""

    @property
    @abc.abstractmethod
    def feature_shape(self) -> tuple[int, ...]:
        """One image's features as the model reads them: ``(D,)`` pooled, or ``(L, D)`` a grid of L locations."""

    @property
    def reads_grid(self) -> bool:
        """Whether the model reads the encoder's grid (M, L, D) rather than its pooled vector (M, D)."""
        return len(self.feature_shape) == 2

    @property
    def input_shape_label(self) -> str:
        """``feature_shape`` with the batch axis, for messages: ``"(N, 1280)"`` or ``"(N, L, D) = (N, 81, 1280)"``."""
        shape = f"(N, {', '.join(map(str, self.feature_shape))})"
        return shape if len(self.feature_shape) == 1 else f"(N, L, D) = {shape}"

    @abc.abstractmethod
    def loss(
        self,
        features: np.ndarray,
        captions: np.ndarray,
        compute_grads: bool = True,
        rng: np.random.Generator | DropoutDraws | None = None,
        caption_weights: np.ndarray | None = None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Teacher-forcing loss of (N, *feature_shape) features and (N, T) captions, and the gradients of every
        parameter keyed like ``params`` (empty without ``compute_grads``); ``rng`` draws dropout masks (a
        :class:`~rnncap.nn.DropoutDraws`: those of a block of a global batch).

        Given ``caption_weights`` (N,) (the advantages of sampled captions, self-critical training), the loss is
        the policy-gradient surrogate
        ``-sum_n caption_weights[n] * sum_t log q(w_t | w_<t, image) / N``, where q is the distribution
        :func:`rnncap.sampling.sample_captions` draws from (the softmax without the tokens it never draws) and the
        words are ``captions[:, 1:]`` up to ``<END>``; its gradient is the REINFORCE estimate.
        No other term (regulariser) is added."""

    def _policy_weights(
        self, caption_weights: np.ndarray | None, batch_size: int
    ) -> tuple[np.ndarray | None, tuple[int, ...]]:
        """``caption_weights`` checked ((N,) finite numbers) and the ids the sampler never draws, which the
        surrogate loss leaves out of its softmax; (None, ()) for plain teacher forcing."""
        if caption_weights is None:
            return None, ()
        weights = np.asarray(to_numpy(caption_weights))
        if weights.shape != (batch_size,) or not np.issubdtype(weights.dtype, np.number):
            raise ValueError(f"caption_weights must be ({batch_size},) numbers, one per caption, got {weights.shape}")
        if not np.isfinite(weights).all():
            raise ValueError("caption_weights hold NaN or infinite values")
        return weights.astype(self.dtype), tuple(decode.never_drawn(self))

    @abc.abstractmethod
    def init_state(self, features: np.ndarray) -> State:
        """The decoder's state before the first word of each of the N images: a tuple of arrays."""

    @abc.abstractmethod
    def step(self, state: State, word_ids: np.ndarray) -> tuple[np.ndarray, State]:
        """Feed (N,) word ids: the (N, V) log-probabilities of the next word, and the next state."""

    def select_state(self, state: State, rows: np.ndarray) -> State:
        """The state of the hypotheses ``rows``: every array indexed by ``rows``.

        Beam search keeps each image's hypotheses together (image n's B beams at rows ``n*B .. n*B + B - 1``),
        so a model may override this to keep per-image arrays (an attention model's grid) unrepeated.
        """
        return tuple(s[rows] for s in state)

    def attention_weights(self, state: State) -> np.ndarray:
        """(N, L) attention weights of the step that returned ``state``; only for a model that ``attends``."""
        raise ValueError(f"{type(self).__name__} has no attention weights to return (it does not attend)")

    @overload
    def sample(
        self, features: np.ndarray, max_length: int = ..., return_attention: Literal[False] = ...
    ) -> np.ndarray: ...
    @overload
    def sample(self, features: np.ndarray, max_length: int = ..., *, return_attention: Literal[True]) -> Attended: ...
    @overload
    def sample(
        self, features: np.ndarray, max_length: int = ..., return_attention: bool = ...
    ) -> np.ndarray | Attended: ...
    def sample(
        self, features: np.ndarray, max_length: int = 30, return_attention: bool = False
    ) -> np.ndarray | Attended:
        """Greedy captions: (N, *feature_shape) -> (N, max_length) int32 ids, ``<NULL>`` after ``<END>``; with
        ``return_attention`` (a model that ``attends``) also the (N, max_length, L) weights behind every word."""
        return decode.greedy_search(self, features, max_length, return_attention=return_attention)

    @overload
    def beam_search(
        self,
        features: np.ndarray,
        beam_size: int = ...,
        max_length: int = ...,
        length_penalty: float = ...,
        return_attention: Literal[False] = ...,
    ) -> np.ndarray: ...
    @overload
    def beam_search(
        self,
        features: np.ndarray,
        beam_size: int = ...,
        max_length: int = ...,
        length_penalty: float = ...,
        *,
        return_attention: Literal[True],
    ) -> Attended: ...
    @overload
    def beam_search(
        self,
        features: np.ndarray,
        beam_size: int = ...,
        max_length: int = ...,
        length_penalty: float = ...,
        return_attention: bool = ...,
    ) -> np.ndarray | Attended: ...
    def beam_search(
        self,
        features: np.ndarray,
        beam_size: int = 3,
        max_length: int = 30,
        length_penalty: float = 0.0,
        return_attention: bool = False,
    ) -> np.ndarray | Attended:
        """Beam-search captions (see :func:`rnncap.decode.beam_search`) and, with ``return_attention``, their
        attention weights."""
        return decode.beam_search(
            self, features, beam_size, max_length, length_penalty, return_attention=return_attention
        )

    @property
    def settings(self) -> ModelConfig:
        """The model's shape as its config dataclass, from its attributes (``model.dropout = 0.3`` changes it)."""
        return self.settings_class(**{item.name: getattr(self, item.name) for item in fields(self.settings_class)})

    def config(self) -> dict[str, Any]:
        """The constructor arguments (without the vocabulary), JSON-serialisable, with the class under "model":
        what the model file stores."""
        return {"model": type(self).__name__, **asdict(self.settings), "dtype": self.dtype.name}

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike, weights_dtype: np.dtype | type | None = None) -> Path:
        """Save weights, configuration, vocabulary and ``metadata`` in one ``.npz`` file (NumPy arrays, whatever the
        model's device); returns the path written."""
        return write_model_file(path, self.config(), self.word_to_idx, self.params, weights_dtype, self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: np.dtype | type | str | None = None, device: str = "cpu") -> Self:
        """Load a model saved by :meth:`save`, never unpickling; weights are cast to ``dtype`` (default: as saved)
        and moved to ``device``.

        Raises:
            ModelFileError: the file is missing, corrupt, truncated, of another model, or its weights do not fit.
            rnncap.backend.DeviceError: ``device`` cannot be used here.
        """
        config, word_to_idx, stored, metadata = read_model_file(path)
        if config.get("model") != cls.__name__:
            raise ModelFileError(f"{path} holds a {config.get('model')!r} model, not a {cls.__name__}")
        kwargs = {key: value for key, value in config.items() if key != "model"}
        if dtype is not None:
            kwargs["dtype"] = dtype
        # The stored arrays are checked against the shapes the configuration implies before anything is built,
        # so that a crafted size (hidden_dim 10**9) is refused at once instead of allocating its weights.
        check_params(path, stored, cls._file_param_shapes(path, config, kwargs, word_to_idx))
        try:
            model = cls(word_to_idx, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: configuration {config} does not describe a {cls.__name__}: {exc}") from exc
        model.params = {name: stored[name].astype(model.dtype) for name in model.params}
        model.metadata = metadata
        try:
            model.blocked_endings = model.blocked_endings  # checked as if set now
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: metadata {BLOCKED_ENDINGS!r}: {exc}") from exc
        return model.to(device)

    @classmethod
    def _file_param_shapes(
        cls, path: str | os.PathLike, config: dict[str, Any], kwargs: dict[str, Any], word_to_idx: dict[str, int]
    ) -> dict[str, tuple[int, ...]]:
        """The parameter shapes a file's configuration implies (``kwargs``: its constructor arguments)."""
        names = {item.name for item in fields(cls.settings_class)}
        try:
            unknown = sorted(kwargs.keys() - names - {"dtype"})
            if unknown:
                raise TypeError(f"unexpected settings {unknown}")
            settings = cls.settings_class(**{key: value for key, value in kwargs.items() if key in names})
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: configuration {config} does not describe a {cls.__name__}: {exc}") from exc
        return cls.param_shapes(settings, len(word_to_idx))

    # ------------------------------------------------------------------ input checks

    def _check_features(self, features: np.ndarray) -> np.ndarray:
        """(N, *feature_shape) features, host or device -> the same on the model's device, cast to its dtype,
        refusing another shape, an empty batch, non-numbers, NaN and infinities (naming the rows)."""
        if not is_array(features):
            features = np.asarray(features)  # a list, say; arrays of either device stay where they are
        if features.shape[1:] != self.feature_shape or features.ndim != 1 + len(self.feature_shape):
            hint = ""
            if features.ndim == 2 and len(self.feature_shape) == 2:
                hint = " (pooled features? this model reads the grid: rnncap.data.load_grid)"
            raise ValueError(f"features must have shape {self.input_shape_label}, got {features.shape}{hint}")
        if features.shape[0] == 0:
            raise ValueError("empty batch: features has no rows")
        if not np.issubdtype(features.dtype, np.number):
            raise ValueError(f"features must be numeric, got dtype {features.dtype}")
        # Moved first, then cast and checked there: a GPU does both faster than the host would.
        features = to_device(features, self.device).astype(self.dtype, copy=False)
        xp = array_module(features)
        finite = xp.isfinite(features).reshape(len(features), -1).all(axis=1)
        if not finite.all():
            rows = to_numpy(xp.flatnonzero(~finite)[:10]).tolist()
            raise ValueError(f"features hold NaN or infinite values (rows {rows})")
        return features

    def _check_captions(self, captions: np.ndarray, batch_size: int) -> np.ndarray:
        """(N, T) token ids, host or device, checked, as a host array: the ids steer the loops (lengths, order)
        and move to the device where the maths reads them."""
        return check_caption_ids(to_numpy(captions), rows=batch_size, vocab_size=self.vocab_size)
