"""The settings of a `rnncap train` run from Python: a TOML file keyed like the command's options, overrides that win,
the defaults of the config dataclasses, and the errors a bad file gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnncap.apps.run_config import RUN_KEYS, RunConfig, default_run_dir, load_run_config
from rnncap.models import AttentionConfig, RNNConfig
from rnncap.train import SCSTConfig, TrainConfig
from rnncap.train.scst import SCST_BATCH_SIZE, SCST_LEARNING_RATE, scst_config


def test_a_run_file_sets_the_model_the_training_and_the_run(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        'data = "prepared/toy.h5"\nattention = true\nattention_dim = 8\nalpha-reg = 0.5\nwordvec = 8\nhidden = 16\n'
        'epochs = 2\nbatch_size = 4\nlr = 0.05\nclip = 25\nselect_by = "BLEU-4"\nval_split = "val"\n'
    )
    run = load_run_config(path, {"hidden": 32, "epochs": 3, "seed": 5})  # overrides win over the file
    assert run.settings == AttentionConfig(wordvec_dim=8, hidden_dim=32, attention_dim=8, alpha_reg=0.5)
    assert run.train == TrainConfig(
        num_epochs=3, batch_size=4, optim_config={"learning_rate": 0.05}, max_grad_norm=25.0, seed=5
    )
    assert (run.data, run.out_dir) == (Path("prepared/toy.h5"), None)
    assert (run.train_split, run.val_split, run.select_by) == ("train", "val", "BLEU-4")
    assert run.run_dir == Path("runs/toy-attention")
    assert load_run_config(path, {"out": "elsewhere"}).run_dir == Path("elsewhere")


def test_what_nothing_sets_defaults_as_the_dataclasses_say() -> None:
    run = load_run_config()
    assert run == RunConfig() and run.settings == RNNConfig() and run.train == TrainConfig()
    assert (run.train_split, run.val_split, run.select_by) == ("train", "dev", "CIDEr")
    with pytest.raises(ValueError, match="a run needs a data file"):
        _ = run.run_dir
    gru = load_run_config(overrides={"cell": "gru", "data": Path("data/flickr8k.h5"), "attention_dim": 8})
    assert gru.settings == RNNConfig(cell_type="gru")  # the attention model's sizes wait for attention = true
    assert gru.run_dir == default_run_dir("data/flickr8k.h5", gru.settings) == Path("runs/flickr8k-gru")


def test_the_keys_are_those_existing_run_files_use() -> None:
    # min_count is new with several data sets (rnncap.apps.joint), image_input with the LSTM recipe (issue 10);
    # scst, init, samples, baseline and scst_max_length with self-critical fine-tuning (issue 12), keep_epochs with
    # checkpoint averaging; every older key stays
    assert sorted(RUN_KEYS) == sorted(
        ["attention", "attention_dim", "alpha_reg", "cell", "wordvec", "hidden", "dropout", "epochs", "batch_size",
         "update_rule", "lr", "lr_decay", "clip", "patience", "select_by", "train_split", "val_split", "seed", "data",
         "out", "min_count", "image_input", "scst", "init", "samples", "baseline", "scst_max_length", "keep_epochs"]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hiden = 16\n", r"run.toml: unknown option 'hiden'; known: \['alpha_reg', 'attention', 'attention_dim'"),
        ('attention = "yes"\n', "run.toml: attention must be true or false, got 'yes'"),
        ("hidden = 16.5\n", "run.toml: hidden must be an integer, got 16.5"),
        ("data = 3.5\nlr = [1]\n", r"run.toml: lr must be a number, got \[1\]"),
        ('attention = true\ncell = "gru"\n', "the attention model's cell is an LSTM; cell_type 'gru' needs attention"),
        ('cell = "lsmt"\n', "cell_type must be one of"),
        ('attention = true\nimage_input = "first_word"\n', "image_input is the recurrent network's setting"),
        ('image_input = "first"\n', r"image_input must be one of \['init', 'first_word'\]"),
        ("dropout = 1.5\n", r"dropout must be in \[0, 1\)"),
        ("lr = -1\n", "learning_rate must be in"),
        ("hidden = \n", "cannot read the config file .*run.toml"),
    ],
)
def test_bad_run_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_run_config(path)


def test_bad_overrides() -> None:
    with pytest.raises(ValueError, match="overrides: unknown option 'hiden'"):
        load_run_config(overrides={"hiden": 16})
    with pytest.raises(ValueError, match=r"unknown options \['hiden'\]"):
        RunConfig.from_options({"hiden": 16})


def test_a_continued_run_takes_the_saved_settings_where_none_are_given() -> None:
    saved_model = RNNConfig(cell_type="gru", wordvec_dim=8, hidden_dim=16, dropout=0.1)
    saved_train = TrainConfig(num_epochs=2, optim_config={"learning_rate": 0.05, "beta1": 0.8}, keep_best=True)
    run = load_run_config(None, {"data": "toy.h5", "epochs": 5, "hidden": 64})
    assert run.given == {"data": Path("toy.h5"), "epochs": 5, "hidden": 64}
    continued = run.continuing(saved_model, saved_train)
    assert continued.settings == RNNConfig(cell_type="gru", wordvec_dim=8, hidden_dim=64, dropout=0.1)
    assert continued.train == TrainConfig(
        num_epochs=5, optim_config={"learning_rate": 0.05, "beta1": 0.8}, keep_best=True
    )
    assert continued.run_dir == Path("runs/toy-lstm")  # the folder that holds the saved run, not runs/toy-gru
    lr = load_run_config(None, {"data": "toy.h5", "lr": 0.01}).continuing(saved_model, saved_train)
    assert lr.train.optim_config == {"learning_rate": 0.01, "beta1": 0.8}

    attention = AttentionConfig(wordvec_dim=8, hidden_dim=16, attention_dim=8)
    assert load_run_config(None, {"data": "t.h5", "alpha_reg": 0.5}).continuing(attention, saved_train).settings == (
        AttentionConfig(wordvec_dim=8, hidden_dim=16, attention_dim=8, alpha_reg=0.5)
    )  # no --attention given: the saved run's kind
    gru = load_run_config(None, {"data": "t.h5", "cell": "gru"})
    assert gru.continuing(attention, saved_train).settings == gru.settings  # another kind: kept whole, for fit to name
    assert load_run_config(None, {"data": "t.h5", "attention": True}).continuing(saved_model, saved_train).settings == (
        AttentionConfig()
    )


def test_image_input_chooses_how_the_recurrent_network_reads_the_image() -> None:
    run = load_run_config(overrides={"image_input": "first_word", "data": Path("flickr8k.h5")})
    assert run.settings == RNNConfig(image_input="first_word")
    assert load_run_config(overrides={"data": Path("flickr8k.h5")}).settings.image_input == "init"  # CS231n's


def test_an_scst_run_has_the_fine_tunes_defaults_until_options_say_otherwise() -> None:
    default = load_run_config(overrides={"scst": True, "init": "flickr8k-lstm"}).train
    assert default == scst_config()  # one set of defaults: scst_config's, from the command line as from Python
    assert (default.batch_size, default.lr_decay) == (SCST_BATCH_SIZE, 1.0)
    assert default.optim_config == {"learning_rate": SCST_LEARNING_RATE} and default.scst == SCSTConfig()
    given = {"scst": True, "init": "m", "batch_size": 7, "lr": 1e-3, "lr_decay": 0.5, "samples": 3, "epochs": 2}
    train = load_run_config(overrides=given).train
    assert train == scst_config(learning_rate=1e-3, batch_size=7, lr_decay=0.5, num_samples=3, num_epochs=2), (
        "the options win over the defaults"
    )
    assert train.scst == SCSTConfig(num_samples=3) and train.num_epochs == 2
