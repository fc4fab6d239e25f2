"""Data-parallel training (rnncap.train.distributed, rnncap.apps.distributed): two real processes on loopback over
gloo train the run one process trains with the same global batch, dropout and shuffling included, for the LSTM and
the attention model; a run interrupted at two processes continues at one and the other way round; the processes
refuse to train apart; ``torchrun -m rnncap train`` runs it from the command line.

The two-process runs all happen in one ``torch.multiprocessing.spawn`` (:func:`_worker`, its results written to
files), each compared here with the same run in this process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import make_captions, make_prepared, make_vocab
from rnncap import CaptioningRNN
from rnncap.cli import main
from rnncap.models import AttentionCaptioner, CaptionModel, load_model
from rnncap.train import BEST_FILE, HISTORY_FILE, MODEL_FILE, STATE_FILE, CaptionData, TrainConfig, Trainer
from rnncap.train.checkpoint import read_state
from rnncap.train.distributed import SINGLE_PROCESS, GradientReducer, block
from rnncap.train.scst import scst_config

D, W, H, T, NUM_WORDS, L = 12, 8, 16, 8, 10, 4
EPOCHS, SPLIT_AT = 4, 2
RTOL = 1e-5  # float32 rounding: sums taken in another order, grown through a few epochs of Adam


def _data(seed: int, num_images: int, num_captions: int, grid: bool = False) -> CaptionData:
    rng = np.random.default_rng(seed)
    shape = (num_images, L, D) if grid else (num_images, D)
    features = rng.standard_normal(shape).astype(np.float16 if grid else np.float32)
    captions = make_captions(rng, num_captions, T, NUM_WORDS + 4)
    return CaptionData(features, captions, rng.integers(0, num_images, size=num_captions))


# 33 training captions in batches of 16: the last batch holds 1, so the second process has none of it. 41: blocks of
# 5 and 4. Validation in batches of 5: 13 captions, blocks of 3 and 2 and a last batch of 3.
RUNS = {
    "lstm": dict(kind="lstm", num_captions=33),
    "attention": dict(kind="attention", num_captions=41),
    "attention64": dict(kind="attention", num_captions=41, dtype="float64"),
}


def _model(kind: str, dtype: str = "float32") -> CaptionModel:
    if kind == "attention":
        return AttentionCaptioner(
            make_vocab(NUM_WORDS), D, L, W, H, attention_dim=6, alpha_reg=0.5, rng=0, dropout=0.3, dtype=dtype
        )
    return CaptioningRNN(make_vocab(NUM_WORDS), D, W, H, cell_type="lstm", rng=0, dropout=0.3, dtype=dtype)


def _splits(kind: str, num_captions: int, seed: int = 1) -> tuple[CaptionData, CaptionData]:
    grid = kind == "attention"
    return _data(seed, 20, num_captions, grid), _data(seed + 1, 6, 13, grid)


def _config(**overrides) -> TrainConfig:
    settings = dict(
        num_epochs=EPOCHS,
        batch_size=16,
        val_batch_size=5,
        optim_config={"learning_rate": 1e-2},
        max_grad_norm=0.5,
        patience=None,
        progress=False,
        plot=False,
    )
    return TrainConfig(**(settings | overrides))


def _trainer(name: str, out: Path | None, communicator=None, epochs: int = EPOCHS, **kwargs) -> Trainer:
    run = RUNS[name]
    train, val = _splits(run["kind"], run["num_captions"])
    model = _model(run["kind"], run.get("dtype", "float32"))
    return Trainer(model, train, val, _config(num_epochs=epochs), out, communicator=communicator, **kwargs)


def _resume(name: str, out: Path, communicator=None) -> Trainer:
    run = RUNS[name]
    train, val = _splits(run["kind"], run["num_captions"])
    return Trainer.resume(out, train, val, config=_config(), communicator=communicator)


def _score(model: CaptionModel) -> float:
    """A score that changes every epoch: the size of the vocabulary projection."""
    return float(np.abs(model.params["W_vocab"]).sum())


def _errors(communicator) -> dict[str, str]:
    """What a two-process Trainer refuses, by case: the message."""
    train, val = _splits("lstm", 33)
    model = _model("lstm")
    cases = {
        "batch": lambda: Trainer(model, train, val, _config(batch_size=1), communicator=communicator),
        "captions": lambda: Trainer(
            model,
            CaptionData(train.features, train.captions[:1], train.image_idxs[:1]),
            val,
            _config(batch_size=4),
            communicator=communicator,
        ),
        "scst": lambda: Trainer(model, train, val, scst_config(_config(batch_size=4)), communicator=communicator),
    }
    found = {}
    for case, make in cases.items():
        with pytest.raises(ValueError) as raised:
            make()
        found[case] = str(raised.value)
    # Processes given different data refuse to train apart, every one of them.
    other, _ = _splits("lstm", 33, seed=1 + communicator.rank)
    with pytest.raises(ValueError) as raised:
        Trainer(_model("lstm"), other, val, _config(), communicator=communicator).train()
    found["apart"] = str(raised.value)
    return found


def _worker(rank: int, port: int, out: Path) -> None:
    """One of the two processes: every two-process run of the tests, in order."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    from rnncap.apps.distributed import TorchCommunicator

    communicator = TorchCommunicator("gloo")
    try:
        calls = []

        def score_fn(model: CaptionModel) -> float:  # called in process 0 only
            calls.append(rank)
            return _score(model)

        for name in RUNS:
            _trainer(name, out / f"{name}-2", communicator).train()
        _trainer("lstm", out / "lstm-score-2", communicator, score_fn=score_fn, higher_is_better=False).train()
        (out / f"score-calls-{rank}").write_text(str(len(calls)))
        _trainer("lstm", out / "lstm-2to1", communicator, epochs=SPLIT_AT).train()
        _resume("lstm", out / "lstm-1to2", communicator).train()
        (out / f"errors-{rank}.txt").write_text("\n".join(f"{k}: {v}" for k, v in _errors(communicator).items()))
    finally:
        communicator.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of every two-process run (spawned once for the module), the runs they resume made first."""
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    _trainer("lstm", out / "lstm-1to2", epochs=SPLIT_AT).train()  # interrupted at one process, resumed at two
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # two processes on a couple of cores
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2)
    return out


def _assert_close_params(ours: dict, theirs: dict, rtol: float) -> None:
    """Every parameter and all of them together within ``rtol`` of ``theirs``, relative to their norm."""
    assert ours.keys() == theirs.keys()
    difference = np.sqrt(sum(np.sum((ours[k].astype(float) - theirs[k]) ** 2) for k in theirs))
    norm = np.sqrt(sum(np.sum(theirs[k].astype(float) ** 2) for k in theirs))
    assert difference <= rtol * norm, f"relative difference {difference / norm:.3g}"
    for name in theirs:  # and no parameter far off on its own (a scalar gets 10 times the room: it has no norm)
        scale = max(float(np.linalg.norm(theirs[name])), 1e-30)
        assert float(np.linalg.norm(ours[name].astype(float) - theirs[name])) <= 10 * rtol * scale, name


def _assert_same_files(two: Path, one: Path, rtol: float) -> None:
    for name in (MODEL_FILE, BEST_FILE):
        _assert_close_params(load_model(two / name).params, load_model(one / name).params, rtol)
    ours, theirs = (read_state(path / STATE_FILE).history for path in (two, one))
    np.testing.assert_allclose(ours["iteration_loss"], theirs["iteration_loss"], rtol=rtol)
    np.testing.assert_allclose(ours["val_loss"], theirs["val_loss"], rtol=rtol)
    assert ours["epoch"] == theirs["epoch"] and ours["iterations"] == theirs["iterations"]


@pytest.mark.parametrize("name", ["lstm", "attention"])
def test_two_processes_train_the_run_of_one(two_processes, tmp_path, name):
    _trainer(name, tmp_path / name).train()
    _assert_same_files(two_processes / f"{name}-2", tmp_path / name, RTOL)
    assert sorted(p.name for p in (two_processes / f"{name}-2").iterdir()) == sorted(
        [MODEL_FILE, BEST_FILE, HISTORY_FILE, STATE_FILE]
    )


def test_in_float64_the_two_runs_are_one_to_rounding(two_processes, tmp_path):
    """What float32 differs by is rounding: in float64 the two runs agree to 1e-10 (the sums' order aside, the
    arithmetic is the same)."""
    _trainer("attention64", tmp_path / "one").train()
    for name in (MODEL_FILE, BEST_FILE):
        ours = load_model(two_processes / "attention64-2" / name).params
        theirs = load_model(tmp_path / "one" / name).params
        for key in theirs:
            scale = np.abs(theirs[key]).max()
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-10, atol=1e-10 * scale, err_msg=key)


def test_the_score_is_computed_once_and_chooses_the_same_best_epoch(two_processes, tmp_path):
    assert [(two_processes / f"score-calls-{rank}").read_text() for rank in (0, 1)] == [str(EPOCHS), "0"]
    one = _trainer("lstm", tmp_path / "one", score_fn=_score, higher_is_better=False)
    one.train()
    two = read_state(two_processes / "lstm-score-2" / STATE_FILE)
    assert two.best_epoch == one.best_epoch
    np.testing.assert_allclose(two.history["score"], one.history["score"], rtol=RTOL)


def test_a_run_interrupted_at_two_processes_continues_at_one(two_processes, tmp_path):
    split = tmp_path / "split"
    shutil.copytree(two_processes / "lstm-2to1", split)
    assert Trainer.resume(split, *_splits("lstm", 33)).epoch == SPLIT_AT
    _resume("lstm", split).train()
    _trainer("lstm", tmp_path / "whole").train()
    _assert_same_files(split, tmp_path / "whole", RTOL)


def test_a_run_interrupted_at_one_process_continues_at_two(two_processes, tmp_path):
    _trainer("lstm", tmp_path / "whole").train()
    _assert_same_files(two_processes / "lstm-1to2", tmp_path / "whole", RTOL)


def test_two_processes_refuse_what_they_cannot_share(two_processes):
    errors = [
        dict(line.split(": ", 1) for line in (two_processes / f"errors-{rank}.txt").read_text().splitlines())
        for rank in (0, 1)
    ]
    for found in errors:
        assert "2 processes cannot share batches of 1 captions" in found["batch"]
        assert "2 processes cannot share 1 training captions" in found["captions"]
        assert "self-critical training runs in one process, not in 2" in found["scst"]
        assert "Every process must be given the same data, settings and run folder" in found["apart"]
    assert "1 of the 2 processes do not hold process 0's run" in errors[0]["apart"]
    assert "process 1 does not hold process 0's run: its training captions differ" in errors[1]["apart"]


# ---------------------------------------------------------------------- the arithmetic, in one process


@pytest.mark.parametrize(("n", "world"), [(7, 2), (7, 3), (1, 2), (16, 4), (5, 8)])
def test_blocks_are_array_splits_order(n, world):
    rows = np.arange(n)
    assert [rows[block(n, rank, world)].tolist() for rank in range(world)] == [
        part.tolist() for part in np.array_split(rows, world)
    ]


def test_batches_of_one_process_are_its_blocks_of_the_global_batches():
    data = _data(0, 5, 11)
    order = np.random.default_rng(0).permutation(11)
    whole = [idx for idx, _, _ in data.batches(order, 4, prefetch=0)]
    for rank in (0, 1):
        mine = [idx for idx, _, _ in data.batches(order, 4, prefetch=1, part=(rank, 2))]
        assert [m.tolist() for m in mine] == [w[block(len(w), rank, 2)].tolist() for w in whole]
    with pytest.raises(ValueError, match=r"part must be \(rank, world_size\)"):
        next(data.batches(order, 4, part=(2, 2)))


def test_the_reducer_weighs_by_share_into_views_of_one_buffer():
    params = {"a": np.ones((2, 3), np.float32), "b": np.ones(4, np.float32)}
    reducer = GradientReducer(params, SINGLE_PROCESS)
    assert reducer.num_values == 11
    grads = {"a": np.full((2, 3), 2.0, np.float32), "b": np.arange(4, dtype=np.float32)}
    loss, reduced = reducer.reduce(3.0, grads, 0.25)
    assert loss == 0.75
    np.testing.assert_array_equal(reduced["a"], np.full((2, 3), 0.5))
    np.testing.assert_array_equal(reduced["b"], np.arange(4) / 4)
    assert all(np.shares_memory(view, reducer.buffer) for view in reduced.values())
    loss, reduced = reducer.reduce(0.0, {}, 0.0)  # a process without captions in the batch adds nothing
    assert loss == 0.0 and not reducer.buffer.any()


# ---------------------------------------------------------------------- the command line


def _cli_options(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", "3", "--batch-size", "4"]


def test_torchrun_trains_the_run_of_one_process(tmp_path, capsys):
    data = make_prepared(tmp_path)
    options = ["--hidden", "16", "--wordvec", "8", "--dropout", "0.3", "--lr", "1e-2"]
    assert main([*_cli_options(data, tmp_path / "one"), *options]) == 0
    capsys.readouterr()
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    command = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "rnncap", *_cli_options(data, tmp_path / "two")]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")} | {"OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([*command, *options], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("in 2 processes, choosing by CIDEr on dev") == 1  # process 0 reports, alone
    assert done.stdout.count("wrote ") == 1
    for name in (BEST_FILE, MODEL_FILE, "best-float16.npz"):
        ours, theirs = load_model(tmp_path / "two" / name), load_model(tmp_path / "one" / name)
        _assert_close_params(ours.params, theirs.params, 1e-3 if name == "best-float16.npz" else RTOL)

    # The same command again continues the finished run, in one process this time: nothing is left to train.
    assert main([*_cli_options(data, tmp_path / "two"), *options]) == 0
    assert "trained 3 epochs" in capsys.readouterr().out
