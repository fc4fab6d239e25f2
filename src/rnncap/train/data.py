"""CaptionData: one split of a captioning data set, as the trainer reads it and the data readers return it.

It depends on NumPy and :mod:`rnncap.text` alone, so that the data layer (``rnncap.data``) can build it without
importing the trainer, its progress bars or the models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncap.text import check_caption_ids


@dataclass(frozen=True, eq=False)
class CaptionData:
    """One split of a captioning data set in CS231n's COCO layout: one row per caption, images stored once.

    Attributes:
        features: (M, D) pooled or (M, L, D) grid floating-point features of M images, any float dtype: the
            model casts each batch, so a float16 grid stays half the size of a float32 one.
        captions: (K, T) integer token ids, ``<START> ... <END> <NULL>...``, T >= 2.
        image_idxs: (K,) integers in [0, M): the image of every caption.
    """

    features: np.ndarray
    captions: np.ndarray
    image_idxs: np.ndarray

    def __post_init__(self) -> None:
        features, captions, image_idxs = (np.asarray(a) for a in (self.features, self.captions, self.image_idxs))
        if features.ndim not in (2, 3) or features.shape[0] == 0:
            raise ValueError(f"features must have shape (M, D) or (M, L, D) with M >= 1, got {features.shape}")
        if not np.issubdtype(features.dtype, np.floating):
            raise ValueError(f"features must be floating point, got dtype {features.dtype}")
        finite = np.isfinite(features).all(axis=tuple(range(1, features.ndim)))  # (M,): one per image
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise ValueError(f"features hold NaN or infinite values (rows {rows[:10].tolist()})")
        check_caption_ids(captions)
        if image_idxs.shape != (captions.shape[0],):
            raise ValueError(
                f"image_idxs must have shape ({captions.shape[0]},), one per caption, got {image_idxs.shape}"
            )
        if not np.issubdtype(image_idxs.dtype, np.integer):
            raise ValueError(f"image_idxs must be integers, got dtype {image_idxs.dtype}")
        if image_idxs.min() < 0 or image_idxs.max() >= features.shape[0]:
            bad = image_idxs.min() if image_idxs.min() < 0 else image_idxs.max()
            raise ValueError(f"image_idxs holds {bad}, outside [0, {features.shape[0]}) (the rows of features)")
        # The dataclass is frozen so that nobody swaps an array after these checks; set the converted arrays once.
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "captions", captions)
        object.__setattr__(self, "image_idxs", image_idxs)

    def __len__(self) -> int:
        """K, the number of captions."""
        return self.captions.shape[0]

    def check_fits(self, feature_shape: tuple[int, ...], vocab_size: int, name: str) -> None:
        """Raise ValueError unless a model that reads ``feature_shape`` per image ((D,) or (L, D)) and knows
        ``vocab_size`` token ids can train on this split; ``name`` (e.g. "train") names it in the message."""
        if self.features.shape[1:] != feature_shape:
            hint = ""
            if self.features.ndim != 1 + len(feature_shape):
                hint = " (an AttentionCaptioner reads grid features, store.load_grid; a CaptioningRNN pooled ones)"
            raise ValueError(
                f"{name} features have shape {self.features.shape}, the model reads "
                f"(M, {', '.join(map(str, feature_shape))}){hint}"
            )
        if self.captions.max() >= vocab_size:
            raise ValueError(
                f"{name} captions hold token id {self.captions.max()}, outside the model's vocabulary [0, {vocab_size})"
            )

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, D) or (N, L, D) and captions (N, T) of the captions ``idx`` (N,)."""
        return self.features[self.image_idxs[idx]], self.captions[idx]
