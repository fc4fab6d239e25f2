"""A rerun of `rnncap train` on a run folder continues the run only when it is the same run: the same data by
content, the same model and the same training settings (more epochs aside); otherwise it stops, naming each
difference. Unusable run folders are refused before any work. Real runs on a tiny prepared file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import make_prepared
from rnncap.apps.fit import fit
from rnncap.cli import main
from rnncap.models import RNNConfig, load_model
from rnncap.train import TrainConfig

SMALL = RNNConfig(cell_type="lstm", wordvec_dim=8, hidden_dim=16, dropout=0.0)
CONFIG = TrainConfig(
    num_epochs=1, batch_size=4, optim_config={"learning_rate": 5e-2}, lr_decay=1.0, patience=None, progress=False
)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_prepared(tmp_path)


def _renumbered(data: Path, out: Path) -> tuple[str, int, int]:
    """A copy of ``data`` whose vocabulary numbers two words the other way round (captions re-encoded to match:
    the same sentences); returns the first of them and its ids in ``data`` and in the copy."""
    shutil.copy(data, out)
    with h5py.File(out, "a") as f:
        vocab = json.loads(f.attrs["vocab"])
        first, second = sorted(word for word in vocab if not word.startswith("<"))[:2]
        a, b = vocab[first], vocab[second]
        vocab[first], vocab[second] = b, a
        f.attrs["vocab"] = json.dumps(vocab)
        tokens = f["captions/tokens"][()]
        f["captions/tokens"][()] = np.where(tokens == a, b, np.where(tokens == b, a, tokens))
    return first, a, b


def test_a_rerun_with_another_data_file_is_refused(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit(data, run, SMALL, CONFIG)
    word, old_id, new_id = _renumbered(data, tmp_path / "b.h5")
    with pytest.raises(ValueError, match=f"the vocabulary: '{word}' is {old_id} in the run, {new_id} in .*b.h5") as e:
        fit(tmp_path / "b.h5", run, SMALL, CONFIG)
    assert "another run folder (--out)" in str(e.value)

    other = tmp_path / "c.h5"  # the same vocabulary, one caption changed
    shutil.copy(data, other)
    with h5py.File(other, "a") as f:
        tokens = f["captions/tokens"][()]
        tokens[0, 1], tokens[0, 2] = tokens[0, 2], tokens[0, 1]
        f["captions/tokens"][()] = tokens
    with pytest.raises(ValueError, match=r"the data: .*c.h5 holds other captions, photos or features than the run's"):
        fit(other, run, SMALL, CONFIG)
    assert json.loads((run / "history.json").read_text())["epoch"] == [1]  # nothing trained

    copy = tmp_path / "copy.h5"  # the same content under another name continues, and the model names its data
    shutil.copy(data, copy)
    result = fit(copy, run, SMALL, TrainConfig(**{**CONFIG.__dict__, "num_epochs": 2}))
    assert result.resumed and result.history["epoch"] == [1, 2]
    assert load_model(result.best_path).metadata["data"] == data.name


def test_a_rerun_with_another_model_or_optimiser_is_refused(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit(data, run, SMALL, CONFIG)
    gru = RNNConfig(cell_type="gru", wordvec_dim=16, hidden_dim=64, dropout=0.0)
    with pytest.raises(ValueError) as caught:
        fit(data, run, gru, CONFIG)
    message = str(caught.value)
    for difference in (
        "cell_type: 'lstm' in the run, 'gru' now",
        "hidden_dim: 16 in the run, 64 now",
        "wordvec_dim: 8 in the run, 16 now",
    ):
        assert difference in message
    faster = TrainConfig(**{**CONFIG.__dict__, "optim_config": {"learning_rate": 0.5}, "batch_size": 2})
    with pytest.raises(ValueError, match="optim_config: {'learning_rate': 0.05} in the run, {'learning_rate': 0.5}"):
        fit(data, run, SMALL, faster)
    with pytest.raises(ValueError, match="batch_size: 4 in the run, 2 now"):
        fit(data, run, SMALL, faster)


def test_the_train_command_continues_the_same_command_and_refuses_a_changed_one(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    command = ["train", "--data", str(data), "--out", str(out), "--wordvec", "8", "--hidden", "16", "--lr", "0.05"]
    command += ["--batch-size", "4", "--epochs", "1"]
    assert main(command) == 0
    assert main([*command[:-1], "2"]) == 0  # the same command, more epochs: continues
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "3"]) == 0  # options left out: the run's
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2, 3]
    model = load_model(out / "best.npz")
    assert (model.cell_type, model.hidden_dim, model.wordvec_dim) == ("lstm", 16, 8)
    capsys.readouterr()

    assert main(["train", "--data", str(data), "--out", str(out), "--cell", "gru", "--hidden", "64"]) == 1
    err = capsys.readouterr().err
    assert "cell_type: 'lstm' in the run, 'gru' now" in err and "hidden_dim: 16 in the run, 64 now" in err
    assert main(["train", "--data", str(data), "--out", str(out), "--lr", "0.01"]) == 1
    assert "optim_config: {'learning_rate': 0.05} in the run, {'learning_rate': 0.01} now" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--out", str(out), "--attention"]) == 1
    assert "the model: a recurrent network of lstm cells in the run, the attention model now" in (
        capsys.readouterr().err
    )
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2, 3]


def test_train_out_that_is_a_file_fails_before_any_work(data: Path, tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    # Refused before the data is even read: the missing data file is not what the message is about.
    assert main(["train", "--data", str(tmp_path / "missing.h5"), "--out", str(a_file)]) == 1
    assert f"the run folder {a_file} is an existing file, not a folder" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--out", str(a_file / "run")]) == 1
    assert f"cannot create the run folder {a_file / 'run'}: {a_file} is a file" in capsys.readouterr().err
    (tmp_path / "run" / "best-float16.npz").mkdir(parents=True)
    assert main(["train", "--data", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "run")]) == 1
    assert "best-float16.npz is in the way of the run's file" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"


class Killed(BaseException):
    """Stands for a kill: a BaseException, so that no ``except Exception`` of the code under test stops it."""


def test_a_kill_at_any_file_write_of_fit_loses_nothing(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before or after each rename of a one-epoch fit (the epoch's files, then best.npz again with the
    run's facts and its float16 copy), then run again: the files of a run never interrupted."""
    config = TrainConfig(**{**CONFIG.__dict__, "plot": False})
    real_replace, renamed = os.replace, []

    def counting(src: str, dst: str) -> None:
        real_replace(src, dst)
        renamed.append(Path(dst).name)

    monkeypatch.setattr(os, "replace", counting)
    whole = fit(data, tmp_path / "whole", SMALL, config)
    monkeypatch.undo()
    assert renamed == ["model.npz", "best.npz", "history.json", "trainer_state.npz", "best.npz", "best-float16.npz"]
    renames = len(renamed)
    for target in range(renames):
        for before in (True, False):
            done: list[str] = []

            def replace(src: str, dst: str, target: int = target, before: bool = before, done: list = done) -> None:
                if len(done) == target and before:
                    raise Killed
                real_replace(src, dst)
                done.append(Path(dst).name)
                if len(done) == target + 1 and not before:
                    raise Killed

            out = tmp_path / f"killed-{target}-{before}"
            monkeypatch.setattr(os, "replace", replace)
            with pytest.raises(Killed):
                fit(data, out, SMALL, config)
            monkeypatch.undo()
            result = fit(data, out, SMALL, config)
            assert result.history["metrics"] == whole.history["metrics"], (target, before)
            for file in ("model.npz", "best.npz", "best-float16.npz"):
                ours, theirs = load_model(out / file), load_model(tmp_path / "whole" / file)
                assert all(np.array_equal(ours.params[n], theirs.params[n]) for n in theirs.params), (file, target)
                assert ours.metadata.keys() == theirs.metadata.keys(), (file, target)
            history = json.loads((out / "history.json").read_text())
            assert history["metrics"] == whole.history["metrics"]
