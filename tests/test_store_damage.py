"""A damaged prepared file: every inconsistency is a StoreError naming the attribute or dataset, from every reader
(load_split, load_references, load_grid, image_paths) and from `rnncap evaluate` as one line, never a traceback."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import make_model, make_prepared
from rnncap.cli import main
from rnncap.data import StoreError, load_grid, load_references, load_split, open_store

_STR = h5py.string_dtype("utf-8")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A prepared file of 7 photos (3 train, 4 dev), 14 captions, pooled and grid features; copied for each damage."""
    return make_prepared(tmp_path_factory.mktemp("pristine"))


def replace(f: h5py.File, name: str, data: object, dtype: object = None) -> None:
    """Put ``data`` in place of dataset ``name``."""
    del f[name]
    f.create_dataset(name, data=data, dtype=dtype)


def shorter(name: str) -> Callable[[h5py.File], None]:
    """Drop the last row of dataset ``name``: its length no longer agrees with the others'."""
    return lambda f: replace(f, name, f[name][:-1], f[name].dtype)


def set_attr(key: str, value: object) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        f.attrs[key] = value

    return damage


def set_row(name: str, row: int, value: object) -> Callable[[h5py.File], None]:
    def damage(f: h5py.File) -> None:
        f[name][row] = value

    return damage


def vocab_without_end(f: h5py.File) -> None:
    f.attrs["vocab"] = f.attrs["vocab"].replace('"<END>": 2', '"<END>": 99')


DAMAGES: dict[str, tuple[Callable[[h5py.File], None], str]] = {
    # what is done to the file -> what the message must say (a regular expression)
    "caption image far out": (set_row("captions/image", 0, 10**6), r"captions/image\[0\] is 1000000, not a photo"),
    "caption image negative": (set_row("captions/image", 5, -1), r"captions/image\[5\] is -1, not a photo"),
    "raw deleted": (lambda f: f.__delitem__("captions/raw"), "captions/raw is missing"),
    "raw short": (shorter("captions/raw"), r"captions/raw has 13 rows for the 14 captions \(captions/image\)"),
    "tokens short": (shorter("captions/tokens"), "captions/tokens has 13 rows for the 14 captions"),
    "tokens float": (
        lambda f: replace(f, "captions/tokens", f["captions/tokens"][()].astype(np.float32)),
        "captions/tokens must hold integers, got dtype float32",
    ),
    "tokens columns": (
        lambda f: replace(f, "captions/tokens", f["captions/tokens"][:, :-1]),
        "captions/tokens has 7 columns, but attribute 'max_length' 6 means 8",
    ),
    "paths deleted": (lambda f: f.__delitem__("images/path"), "images/path is missing"),
    "paths short": (shorter("images/path"), r"images/path has 6 rows for the 7 photos \(images/id\)"),
    "split a group": (
        lambda f: (f.__delitem__("images/split"), f.create_group("images/split")),
        "images/split is a group, not a dataset",
    ),
    "split numbers": (lambda f: replace(f, "images/split", np.zeros(7)), "images/split must hold utf-8 strings"),
    "ids repeated": (set_row("images/id", 1, "p0.png"), "images/id repeats the photo id 'p0.png'"),
    "ok not bool": (lambda f: replace(f, "images/ok", np.ones(7, np.int8)), "images/ok must hold bool, got dtype int8"),
    "done short": (shorter("features/done"), "features/done has 6 rows for the 7 photos"),
    "done 2-D": (lambda f: replace(f, "features/done", np.ones((7, 1), bool)), r"features/done must have 1 dim"),
    "pooled rows": (shorter("features/pooled"), "features/pooled has 6 rows for the 7 photos"),
    "pooled ints": (
        lambda f: replace(f, "features/pooled", np.zeros((7, 4), np.int16)),
        "features/pooled must hold floating point",
    ),
    "grid 2-D": (lambda f: replace(f, "features/grid", np.zeros((7, 4), np.float16)), "features/grid must have 3 dim"),
    "grid rows": (shorter("features/grid"), "features/grid has 6 rows for the 7 photos"),
    "vocab deleted": (lambda f: f.attrs.__delitem__("vocab"), "attribute 'vocab' is missing"),
    "vocab not JSON": (set_attr("vocab", "{not json"), "attribute 'vocab' is not JSON"),
    "vocab a list": (set_attr("vocab", "[1, 2]"), "attribute 'vocab' must map words to non-negative integer ids"),
    "vocab special ids": (vocab_without_end, "attribute 'vocab' must map <END> to id 2, got 99"),
    "max_length text": (set_attr("max_length", "six"), "attribute 'max_length' must be a positive integer"),
    "max_length deleted": (lambda f: f.attrs.__delitem__("max_length"), "attribute 'max_length' is missing"),
    "encoder deleted": (lambda f: f.attrs.__delitem__("encoder"), "attribute 'encoder' is missing"),
    "encoder emptied": (set_attr("encoder", ""), "attribute 'encoder' is empty although features/pooled exists"),
}

READERS: dict[str, Callable[[Path], object]] = {
    "load_split": lambda path: load_split(path, "dev"),
    "load_references": lambda path: load_references(path, "dev"),
    "load_grid": lambda path: load_grid(path, "dev"),
    "image_paths": lambda path: open_store(path).image_paths([0, 1]),
}


def damaged_copy(pristine: Path, tmp_path: Path, damage: Callable[[h5py.File], None]) -> Path:
    path = tmp_path / "damaged.h5"
    shutil.copyfile(pristine, path)
    with h5py.File(path, "r+") as f:
        damage(f)
    return path


@pytest.mark.parametrize("damage", DAMAGES)
def test_every_reader_names_the_damaged_field(damage, pristine, tmp_path) -> None:
    edit, message = DAMAGES[damage]
    path = damaged_copy(pristine, tmp_path, edit)
    for reader, read in READERS.items():
        with pytest.raises(StoreError, match=rf"damaged\.h5 is damaged or incomplete: {message}") as caught:
            read(path)
        assert "prepare it again" in str(caught.value), reader


def test_the_pristine_file_reads(pristine) -> None:
    """The damages above are what makes the readers refuse: the same file undamaged reads in every way."""
    for read in READERS.values():
        read(pristine)


def test_a_token_outside_the_vocabulary_is_refused_where_tokens_are_read(pristine, tmp_path) -> None:
    path = damaged_copy(pristine, tmp_path, set_row("captions/tokens", 9, [1, 10**6, 2, 0, 0, 0, 0, 0]))
    with pytest.raises(StoreError, match=r"captions/tokens holds token id 1000000, outside the vocabulary: the ids"):
        load_split(path, "dev")
    assert len(load_references(path, "dev")) == 4  # the references do not read the tokens


def test_a_photo_index_outside_the_file_is_an_index_error_naming_it(pristine) -> None:
    with open_store(pristine) as store, pytest.raises(IndexError, match="photo index 7 is outside the 7 photos"):
        store.image_paths([0, 7])


@pytest.mark.parametrize("damage", ["caption image far out", "raw deleted", "tokens columns", "vocab not JSON"])
def test_evaluate_says_what_is_damaged_in_one_line(damage, pristine, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default output folder runs/evaluate is relative
    model = make_model(pristine).save(tmp_path / "model.npz")
    path = damaged_copy(pristine, tmp_path, DAMAGES[damage][0])
    status = main(["evaluate", "--model", str(model), "--data", str(path), "--metrics", "CIDEr", "--no-save"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"rnncap evaluate: error: {path} is damaged or incomplete: ")
