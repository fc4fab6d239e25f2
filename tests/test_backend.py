"""rnncap.backend: the array module of arrays, moves between devices, the clear error without CuPy or a GPU; a
model and a training run on each device (CUDA skipped without a GPU; "strict": the CUDA path through
tests/cupy_standin.py, which refuses host arrays leaking into device code)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cupy_standin import DeviceArray, HostLeakError, StandIn
from helpers import make_captions, make_vocab, small_model
from rnncap import backend
from rnncap.backend import CUDA_HELP, DeviceError, array_module, check_device, device_of, to_device, to_numpy
from rnncap.cli import main
from rnncap.models import load_model
from rnncap.train import CaptionData, TrainConfig, Trainer


@pytest.fixture
def no_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without CuPy: ``import cupy`` fails (a None entry in sys.modules makes the import raise)."""
    monkeypatch.setitem(sys.modules, "cupy", None)


def test_cuda_without_cupy_says_what_to_install(no_cupy):
    with pytest.raises(DeviceError) as caught:
        check_device("cuda")
    assert CUDA_HELP in str(caught.value) and "pip install 'rnncap[gpu]'" in str(caught.value)
    with pytest.raises(DeviceError, match="needs CuPy and an NVIDIA GPU"):
        to_device(np.zeros(3), "cuda")


def test_cuda_without_a_gpu_says_so(monkeypatch):
    """CuPy installed, no device reachable (the driver's error, as CuPy raises it)."""
    stand_in = StandIn()

    def no_driver() -> int:
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    stand_in.cuda = type(stand_in.cuda)(runtime=type("Runtime", (), {"getDeviceCount": staticmethod(no_driver)}))
    monkeypatch.setitem(sys.modules, "cupy", stand_in)
    with pytest.raises(DeviceError, match="CuPy finds no CUDA device: cudaErrorNoDevice"):
        check_device("cuda")


def test_unknown_device_is_refused():
    with pytest.raises(DeviceError, match=r"device must be one of \['cpu', 'cuda'\], got 'gpu'"):
        check_device("gpu")


def test_model_to_cuda_refused_without_cupy(no_cupy, rng):
    model = small_model("lstm", rng)
    with pytest.raises(DeviceError, match="pip install 'rnncap\\[gpu\\]'"):
        model.to("cuda")
    assert model.device == "cpu"  # nothing moved


def test_cli_device_cuda_fails_with_the_message(no_cupy, tmp_path, capsys):
    """Before any work: the data file is never opened (it does not even exist)."""
    status = main(["train", "--data", str(tmp_path / "absent.h5"), "--out", str(tmp_path / "run"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert status == 1 and "needs CuPy and an NVIDIA GPU" in err and "absent.h5" not in err


def test_the_engine_never_imports_cupy_on_the_cpu():
    """Training steps and a beam search on the CPU leave CuPy unimported (it is an optional extra)."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from rnncap import CaptioningRNN
        from rnncap.models import AttentionCaptioner
        vocab = {w: i for i, w in enumerate(["<NULL>", "<START>", "<END>", "<UNK>", "a", "b"])}
        rng = np.random.default_rng(0)
        captions = np.array([[1, 4, 5, 2], [1, 5, 2, 0]])
        for model, shape in ((CaptioningRNN(vocab, input_dim=5, wordvec_dim=4, hidden_dim=6), (2, 5)),
                             (AttentionCaptioner(vocab, input_dim=5, num_locations=3, wordvec_dim=4, hidden_dim=6,
                                                 attention_dim=4), (2, 3, 5))):
            features = rng.standard_normal(shape)
            model.loss(features, captions, rng=rng)
            model.beam_search(features, beam_size=2, max_length=5)
        assert "cupy" not in sys.modules, "the CPU path imported cupy"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_round_trips(device):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    moved = to_device(x, device)
    assert device_of(moved) == device
    assert to_device(moved, device) is moved or device == "cuda"  # already there: no copy on the host
    back = to_numpy(moved)
    assert type(back) is np.ndarray and back.dtype == np.float32
    np.testing.assert_array_equal(back, x)
    if device == "cpu":
        assert moved is x and back is x and array_module(moved) is np
    else:
        assert array_module(moved) is not np and back is not x
    assert to_numpy(to_device(x, "cpu")) is x


def test_standin_catches_host_leaks(monkeypatch):
    """The strict device refuses what CuPy would (a host array in device arithmetic) and what the engine must not
    do (a NumPy function on a device array): without these refusals the "strict" tests would prove nothing."""
    monkeypatch.setitem(sys.modules, "cupy", StandIn())
    x = to_device(np.ones((2, 3)), "cuda")
    assert isinstance(x, DeviceArray) and backend.device_of(x) == "cuda"
    with pytest.raises(HostLeakError, match="host array"):
        x + np.ones(3)
    with pytest.raises(HostLeakError, match="numpy.concatenate called on a device array"):
        np.concatenate([x, x])
    with pytest.raises(HostLeakError, match="an index of a device array"):
        x[np.array([0, 1])]
    with pytest.raises(HostLeakError, match="cupy.zeros_like"):
        array_module(x).zeros_like(np.ones(3))
    with pytest.raises(TypeError, match=r"cupy.einsum does not support \['out'\]"):
        array_module(x).einsum("ij->i", x, out=array_module(x).zeros(2))
    assert isinstance(x + 1, DeviceArray) and float((x * 2).sum()) == 12.0


def test_model_save_load_across_devices(device, rng, tmp_path):
    model = small_model("attention", rng, dtype=np.float32).to(device)
    assert model.device == device and all(device_of(p) == device for p in model.params.values())
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as archive:  # NumPy on disk, whatever the device
        assert all(type(archive[key]) is np.ndarray for key in archive.files)
    loaded = load_model(path, device=device)
    assert loaded.device == device
    for name, value in model.params.items():
        np.testing.assert_array_equal(to_numpy(loaded.params[name]), to_numpy(value))
    assert load_model(path).device == "cpu"


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_loss_and_searches_match_the_cpu(kind, device, rng):
    """Host features in, gradients on the model's device, host ids out; the same numbers as the CPU's (exactly on
    the strict device for the LSTM, whose arithmetic is NumPy's; to rounding on a GPU and where the GPU branch
    sums in another order)."""
    cpu = small_model(kind, rng, dropout=0.3)
    features = rng.standard_normal((4, *cpu.feature_shape))
    captions = make_captions(rng, 4, 7, cpu.vocab_size)
    on_device = small_model(kind, np.random.default_rng(0), dropout=0.3)
    on_device.params = {name: value.copy() for name, value in cpu.params.items()}
    on_device.to(device)

    loss, grads = cpu.loss(features, captions, rng=np.random.default_rng(5))
    device_loss, device_grads = on_device.loss(features, captions, rng=np.random.default_rng(5))
    assert device_loss == pytest.approx(loss, rel=1e-12)
    for name, grad in grads.items():
        assert device_of(device_grads[name]) == device
        np.testing.assert_allclose(to_numpy(device_grads[name]), grad, rtol=1e-10, atol=1e-12, err_msg=name)

    for search in ("sample", "beam_search"):
        ids = getattr(on_device, search)(features, max_length=6)
        assert type(ids) is np.ndarray
        np.testing.assert_array_equal(ids, getattr(cpu, search)(features, max_length=6))


def test_training_runs_and_resumes_on_device(device, tmp_path):
    """A seeded run trains on the device to the CPU's parameters (its generator stays on the host), writes NumPy
    checkpoints, and resumes onto the device bit for bit."""
    rng = np.random.default_rng(3)
    data = CaptionData(
        rng.standard_normal((10, 5)).astype(np.float32),
        make_captions(rng, 24, 6, 10),
        rng.integers(0, 10, size=24),
    )
    config = TrainConfig(num_epochs=2, batch_size=8, plot=False, progress=False, keep_best=False, patience=None)

    def model(on: str):
        from rnncap import CaptioningRNN

        return CaptioningRNN(make_vocab(6), input_dim=5, wordvec_dim=4, hidden_dim=6, dropout=0.3, rng=1).to(on)

    cpu = model("cpu")
    Trainer(cpu, data, data, config).train()
    trained = model(device)
    Trainer(trained, data, data, replace_epochs(config, 1), tmp_path / "run").train()
    resumed = Trainer.resume(tmp_path / "run", data, data, model=model(device), config=config)
    with np.load(tmp_path / "run" / "trainer_state.npz", allow_pickle=False) as archive:
        assert archive["param/Wx"].dtype == np.float32
    resumed.train()
    assert resumed.model.device == device
    for name, value in cpu.params.items():  # float32 on a GPU: 16 Adam steps of rounding differences at most
        np.testing.assert_allclose(to_numpy(resumed.model.params[name]), value, rtol=1e-4, atol=1e-5, err_msg=name)


def replace_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(config, num_epochs=epochs)
