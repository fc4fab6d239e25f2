"""A run's checkpoint is one consistent unit: a kill at any instant of training leaves the previous checkpoint or
the new one, and the rerun ends with the very weights and history of a run never interrupted; old (format 1) run
folders still resume; unusable run folders are refused before any work. Real training on tiny data; the kills are
faults injected at every file rename (the commit of every file the run writes), and real SIGKILLs of a child."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import make_captions, make_vocab
from rnncap import CaptioningRNN
from rnncap.models import load_model
from rnncap.train import (
    BEST_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    PLOT_FILE,
    STATE_FILE,
    CaptionData,
    TrainConfig,
    Trainer,
)
from rnncap.train.checkpoint import OLD_STATE_FORMATS, read_state

D, W, H, T, NUM_WORDS = 6, 4, 5, 6, 8
RUN_NAMES = sorted([STATE_FILE, MODEL_FILE, BEST_FILE, HISTORY_FILE])


class Killed(BaseException):
    """Stands for a kill: a BaseException, so that no ``except Exception`` of the code under test stops it."""


def _data(seed: int, num_images: int, num_captions: int) -> CaptionData:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((num_images, D)).astype(np.float32)
    captions = make_captions(rng, num_captions, T, NUM_WORDS + 4)
    return CaptionData(features, captions, rng.integers(0, num_images, size=num_captions))


TRAIN, VAL = _data(1, 8, 12), _data(2, 3, 4)
CONFIG = TrainConfig(
    num_epochs=3,
    batch_size=6,
    optim_config={"learning_rate": 5e-2},
    lr_decay=0.9,
    patience=None,
    progress=False,
    plot=False,
)


def _model() -> CaptioningRNN:
    return CaptioningRNN(make_vocab(NUM_WORDS), D, W, H, cell_type="lstm", rng=0, dropout=0.2)


def _run(out_dir: Path, config: TrainConfig = CONFIG) -> Trainer:
    """What `rnncap train` does in a folder: continue the run there, or start one."""
    if (out_dir / STATE_FILE).exists():
        trainer = Trainer.resume(out_dir, TRAIN, VAL, config=config)
    else:
        trainer = Trainer(_model(), TRAIN, VAL, config, out_dir)
    trainer.train()
    return trainer


def _without_times(history: dict) -> dict:
    return {key: value for key, value in history.items() if key != "epoch_time"}


def _assert_same_run(trainer: Trainer, out_dir: Path, reference: Trainer, reference_dir: Path) -> None:
    """The run in ``out_dir`` is ``reference``'s: the trainers, the model files, the history, no other files."""
    for name, value in reference.model.params.items():
        assert np.array_equal(trainer.model.params[name], value), name
    assert _without_times(trainer.history) == _without_times(reference.history)
    history = json.loads((out_dir / HISTORY_FILE).read_text())
    assert _without_times(history) == _without_times(reference.history)
    for file in (MODEL_FILE, BEST_FILE):
        ours, theirs = load_model(out_dir / file).params, load_model(reference_dir / file).params
        assert all(np.array_equal(ours[name], theirs[name]) for name in theirs), file
    names = RUN_NAMES + ([PLOT_FILE] if trainer.config.plot else [])
    assert sorted(path.name for path in out_dir.iterdir()) == sorted(names)  # no debris left


def _kill_at(monkeypatch: pytest.MonkeyPatch, target: int, before: bool) -> list[str]:
    """Make the ``target``-th file rename (0-based) raise Killed, before or after it happens.

    Before: the finished temporary file is kept as a SIGKILL would leave it (the writer's cleanup never runs).
    Returns the names renamed so far, for the failure messages.
    """
    real_replace, done = os.replace, []

    def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        if len(done) == target and before:
            shutil.copy(src, Path(src).with_name(f".{Path(dst).name}.99999.dead.tmp"))
            raise Killed
        real_replace(src, dst)
        done.append(Path(dst).name)
        if len(done) == target + 1 and not before:
            raise Killed

    monkeypatch.setattr(os, "replace", replace)
    return done


def _renames_of_a_whole_run(out_dir: Path, config: TrainConfig, monkeypatch: pytest.MonkeyPatch) -> int:
    done = _kill_at(monkeypatch, target=10**6, before=True)
    _run(out_dir, config)
    monkeypatch.undo()
    return len(done)


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,  # 3 epochs, keep-best by the validation loss
        dataclasses.replace(CONFIG, num_epochs=2, keep_best=False),  # best.npz still from the state file
        dataclasses.replace(CONFIG, num_epochs=1, plot=True),  # the plot's write too
    ],
    ids=["keep-best", "last", "plot"],
)
def test_a_kill_at_any_file_write_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: TrainConfig
) -> None:
    """Killed before or after each rename of a run (each file's commit, the state file's last), then run again:
    the very run that was never interrupted, every time."""
    reference = _run(tmp_path / "whole", config)
    renames = _renames_of_a_whole_run(tmp_path / "count", config, monkeypatch)
    assert renames >= config.num_epochs * 3  # every epoch: model, best (when better), history, state
    for target in range(renames):
        for before in (True, False):
            out = tmp_path / f"killed-{target}-{before}"
            done = _kill_at(monkeypatch, target, before)
            with pytest.raises(Killed):
                _run(out, config)
            monkeypatch.undo()
            try:
                _assert_same_run(_run(out, config), out, reference, tmp_path / "whole")
            except AssertionError as exc:
                raise AssertionError(f"killed {'before' if before else 'after'} rename {target} of {done}") from exc


def test_a_rerun_after_a_kill_in_the_last_checkpoint_brings_every_file_up_to_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the last epoch's state file, before nothing: the rerun trains nothing and the files agree."""
    reference = _run(tmp_path / "whole")
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CONFIG, num_epochs=2))
    (out / HISTORY_FILE).write_text("{}")  # as if left behind: the rerun writes it again from the state
    (out / MODEL_FILE).unlink()
    _assert_same_run(_run(out), out, reference, tmp_path / "whole")


def test_a_run_folder_can_never_get_stuck(tmp_path: Path) -> None:
    """Only the model files there (killed before the first state file): the folder holds no run, one starts."""
    reference = _run(tmp_path / "whole")
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(tmp_path / "whole" / MODEL_FILE, out / MODEL_FILE)
    (out / f".{STATE_FILE}.1234.abcd.tmp").write_bytes(b"half a state file")
    _assert_same_run(_run(out), out, reference, tmp_path / "whole")


_CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_checkpoint as t
real, done = os.replace, []
def replace(src, dst):
    if len(done) == {target}:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
    done.append(dst)
os.replace = replace
t._run(t.Path({out!r}))
"""


@pytest.mark.parametrize("target", [3, 5])  # the first epoch's state file; the second's best model
def test_a_real_sigkill_in_the_middle_of_a_checkpoint(tmp_path: Path, target: int) -> None:
    reference = _run(tmp_path / "whole")
    out = tmp_path / "run"
    code = _CHILD.format(tests=str(Path(__file__).parent), target=target, out=str(out))
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert any(path.name.endswith(".tmp") for path in out.iterdir())  # the kill left a temporary file behind
    _assert_same_run(_run(out), out, reference, tmp_path / "whole")


# ---------------------------------------------------------------------- old folders and bad folders


def test_a_run_folder_of_format_1_still_resumes(tmp_path: Path) -> None:
    """A state file as rnncap 0.2 wrote it (no vocabulary or metadata, best parameters with keep-best alone)."""
    reference = _run(tmp_path / "whole")
    out = tmp_path / "old"
    _run(out, dataclasses.replace(CONFIG, num_epochs=2))
    with np.load(out / STATE_FILE, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    numbers = json.loads(str(arrays["__state__"]))
    del numbers["word_to_idx"], numbers["metadata"]
    arrays["__state__"], arrays["__format__"] = np.array(json.dumps(numbers)), np.array(OLD_STATE_FORMATS[0])
    np.savez(out / STATE_FILE, **arrays)
    assert read_state(out / STATE_FILE).word_to_idx is None
    _assert_same_run(_run(out), out, reference, tmp_path / "whole")


def test_an_unusable_run_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="the run folder .*a-file is an existing file, not a folder"):
        Trainer(_model(), TRAIN, VAL, CONFIG, a_file)
    with pytest.raises(ValueError, match="cannot create the run folder .*a-file is a file"):
        Trainer(_model(), TRAIN, VAL, CONFIG, a_file / "run")
    (tmp_path / "run" / MODEL_FILE).mkdir(parents=True)
    with pytest.raises(ValueError, match="model.npz is in the way of the run's file model.npz: it is not a file"):
        Trainer(_model(), TRAIN, VAL, CONFIG, tmp_path / "run")


def test_the_plot_is_part_of_the_checkpoint(tmp_path: Path) -> None:
    plotted = dataclasses.replace(CONFIG, plot=True, num_epochs=1)
    _run(tmp_path / "run", plotted)
    (tmp_path / "run" / PLOT_FILE).unlink()
    _run(tmp_path / "run", plotted)  # nothing left to train, the plot is drawn again
    assert (tmp_path / "run" / PLOT_FILE).read_bytes()[:4] == b"\x89PNG"


def test_a_run_begun_before_a_model_setting_existed_continues_with_its_default(tmp_path: Path) -> None:
    """A checkpoint written before CaptioningRNN had image_input is an "init" run: the model given fits it."""
    from rnncap.train.checkpoint import check_model

    _run(tmp_path, dataclasses.replace(CONFIG, num_epochs=1))
    state = read_state(tmp_path / STATE_FILE)
    before = dataclasses.replace(
        state, model_config={k: v for k, v in state.model_config.items() if k != "image_input"}
    )
    check_model(before, _model(), tmp_path)  # no error: image_input defaults to "init", as model files read
    first_word = CaptioningRNN(make_vocab(NUM_WORDS), D, W, H, cell_type="lstm", dropout=0.2, image_input="first_word")
    with pytest.raises(ValueError, match="the checkpoint is of a model"):
        check_model(before, first_word, tmp_path)
