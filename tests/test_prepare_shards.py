"""Sharded extraction: ``rnncap prepare ... --shard I/N``, ``rnncap prepare merge`` and ``torchrun -m rnncap
prepare``, each proven to write the very file the unsharded ``rnncap prepare`` writes (every dataset, every
attribute, every feature byte), a shard resumed after an interruption, and every refusal with its message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from rnncap.apps.prepare_shards import part_path, torchrun_shard
from rnncap.cli import main
from rnncap.data import create_store, open_store, prepare_records, read_folder
from rnncap.data.store_create import shard_rows
from rnncap.encoders import extract_features, load_encoder

ENCODER = "efficientnet-lite0"  # the small real encoder
FAST = ["--encoder", ENCODER, "--workers", "0", "--batch-size", "2", "--min-count", "1"]
pytestmark = pytest.mark.usefixtures("export_cache")  # one ONNX export per test session, in a temporary cache


def _photo_folder(root: Path) -> Path:
    """Eight photos over train, val and test, of three sizes and modes; the fourth is a file that only pretends to
    be a JPEG (an unreadable photo in a shard that is not the last)."""
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = ["image,caption,split"]
    for i, split in enumerate(["train"] * 4 + ["val"] * 2 + ["test"] * 2):
        name = "broken.jpg" if i == 3 else f"photo{i}.png"
        if i == 3:
            (root / name).write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
        else:
            width, height, channels = [(64, 48, 3), (40, 60, 1), (90, 30, 3)][i % 3]
            Image.fromarray(rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8).squeeze()).save(
                root / name
            )
        rows += [
            f"{name},A dog number {i} runs on the grass.,{split}",
            f"{name},Two dogs play with a ball {i}.,{split}",
        ]
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root


def _prepare(root: Path, out: Path, *extra: str) -> int:
    return main(["prepare", "folder", "--root", str(root), "--out", str(out), *FAST, *extra])


def _contents(path: Path) -> dict[str, object]:
    """Every attribute (``name@key``) and dataset of a file: dtype, shape and bytes (strings as text)."""
    found: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        found.update({f"/@{key}": _value(value) for key, value in f.attrs.items()})

        def visit(name: str, item: h5py.Group | h5py.Dataset) -> None:
            found.update({f"{name}@{key}": _value(value) for key, value in item.attrs.items()})
            if isinstance(item, h5py.Dataset):
                strings = h5py.check_string_dtype(item.dtype) is not None
                data = item.asstr()[()].tolist() if strings else item[()].tobytes()
                found[name] = (str(item.dtype), item.shape, data)

        f.visititems(visit)
    return found


def _value(value: object) -> object:
    return (value.dtype.str, value.tolist()) if isinstance(value, np.ndarray) else value


def assert_same_store(ours: Path, theirs: Path) -> None:
    """The two files hold the same attributes and the same datasets, byte for byte."""
    a, b = _contents(ours), _contents(theirs)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    assert {"features/pooled", "features/grid", "images/ok", "/@fingerprint"} <= a.keys()  # the features compared


def test_two_shards_merged_are_the_unsharded_store(tmp_path, capsys):
    root = _photo_folder(tmp_path / "photos")
    assert _prepare(root, tmp_path / "whole.h5") == 0
    capsys.readouterr()
    parts = [tmp_path / "part0.h5", tmp_path / "part1.h5"]
    for index, part in enumerate(parts):
        assert _prepare(root, part, "--shard", f"{index}/2") == 0
    printed = capsys.readouterr().out
    assert "shard 0/2: photos 0..3 of the 8" in printed and "shard 1/2: photos 4..7 of the 8" in printed
    assert "skipped unreadable photo broken.jpg" in printed  # in shard 0, not the last one
    with open_store(parts[0]) as part, open_store(tmp_path / "whole.h5") as whole:
        assert part.num_images == 4 and part.word_to_idx == whole.word_to_idx  # the whole data set's vocabulary
        assert part.failures() == whole.failures() and len(part.failures()) == 1

    merged = tmp_path / "merged.h5"
    assert main(["prepare", "merge", "--out", str(merged), *map(str, reversed(parts))]) == 0  # any order
    assert "merged 2 parts" in capsys.readouterr().out
    assert_same_store(merged, tmp_path / "whole.h5")


def test_three_uneven_shards_merge_to_the_same_store(tmp_path, capsys):
    """Three shards of 8 photos (2, 3, 3), through the Python API: the vocabulary of every shard is the whole
    data set's although a shard of val and test photos alone has no train caption."""
    from rnncap.apps.prepare import Extraction, prepare_dataset
    from rnncap.apps.prepare_shards import merge_prepared

    root = _photo_folder(tmp_path / "photos")
    dataset = read_folder(root)
    extraction = Extraction(ENCODER, batch_size=3, workers=0, progress=False)
    prepare_dataset(dataset, tmp_path / "whole.h5", extraction, min_count=1)
    parts = [tmp_path / f"p{i}.h5" for i in range(3)]
    for index, part in enumerate(parts):
        prepare_dataset(dataset, part, extraction, min_count=1, shard=(index, 3))
    assert [shard_rows(8, i, 3) for i in range(3)] == [(0, 2), (2, 5), (5, 8)]
    with open_store(parts[2]) as last:
        assert set(last.splits()) == {"val", "test"}
    result = merge_prepared(parts, tmp_path / "merged.h5", progress=False)
    assert result.parts == 3 and "8 images" in result.summary
    assert_same_store(tmp_path / "merged.h5", tmp_path / "whole.h5")


def test_an_interrupted_shard_resumes_where_it_stopped(tmp_path, capsys):
    root = _photo_folder(tmp_path / "photos")
    assert _prepare(root, tmp_path / "whole.h5") == 0
    part1 = tmp_path / "part1.h5"
    # Shard 1/2 as `prepare --shard 1/2` begins it, its extraction stopped (Ctrl-C) after the first batch of two.
    dataset = read_folder(root)
    create_store(part1, dataset, *prepare_records(dataset, min_count=1), root=root, name=dataset.name, shard=(1, 2))
    encoder = load_encoder(ENCODER)
    with open_store(part1, writable=True) as store:
        store.begin_features(encoder.name, encoder.feature_dim, (encoder.spec.grid_cells, encoder.feature_dim))

        def write_then_stop(indices: np.ndarray, pooled: np.ndarray, grid: np.ndarray | None) -> None:
            store.write_features(indices, pooled, grid)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            extract_features(encoder, store.image_paths(), write_then_stop, batch_size=2, workers=0, progress=False)
        assert store.pending().tolist() == [2, 3]
    capsys.readouterr()

    assert _prepare(root, part1, "--shard", "1/2") == 0  # the same command again continues it
    printed = capsys.readouterr().out
    assert "already held this data: continued" in printed and "encoded 2 photos" in printed
    assert _prepare(root, tmp_path / "part0.h5", "--shard", "0/2") == 0
    merged = tmp_path / "merged.h5"
    assert main(["prepare", "merge", "--out", str(merged), str(tmp_path / "part0.h5"), str(part1)]) == 0
    assert_same_store(merged, tmp_path / "whole.h5")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0/0", "shard 0/0: N must be at least 1"),
        ("2/2", "shard 2/2: I must be one of 0..1"),
        ("-1/2", "shard -1/2: I must be one of 0..1"),
        ("a/b", "expected I/N, shard I of N (e.g. 0/2), got 'a/b'"),
        ("1", "expected I/N, shard I of N (e.g. 0/2), got '1'"),
        ("0/2/3", "expected I/N"),
    ],
)
def test_a_bad_shard_is_a_usage_error(tmp_path, capsys, value, message):
    with pytest.raises(SystemExit) as exit_:
        _prepare(tmp_path, tmp_path / "x.h5", f"--shard={value}")  # "=": argparse takes a lone -1/2 for an option
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "argument --shard" in error and message in error


def test_more_shards_than_photos_and_cs231n_shards_are_refused(tmp_path, capsys):
    root = _photo_folder(tmp_path / "photos")
    assert _prepare(root, tmp_path / "x.h5", "--shard", "3/9") == 1
    assert "shard 3/9: 9 shards of 8 photo(s) would leave some empty" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(SystemExit):  # CS231n has features already, no photos: not offered
        main(["prepare", "cs231n", "--root", str(tmp_path), "--out", str(tmp_path / "c.h5"), "--shard", "0/2"])
    assert "unrecognized arguments: --shard 0/2" in capsys.readouterr().err


def test_a_part_on_another_parts_file_is_refused(tmp_path, capsys):
    root = _photo_folder(tmp_path / "photos")
    part = tmp_path / "part.h5"
    assert _prepare(root, part, "--shard", "0/2") == 0
    capsys.readouterr()
    # Shard 1/2 (or the whole data set) into shard 0's file: other data, kept unless --overwrite.
    assert _prepare(root, part, "--shard", "1/2") == 1
    assert "part.h5 already exists and holds other data" in capsys.readouterr().err
    assert _prepare(root, part) == 1
    assert "--overwrite" in capsys.readouterr().err


# ---- merge refusals: parts written through the store API with random features, no encoder --------------------


def _toy_parts(tmp_path: Path, count: int, min_count: int = 1, grid: bool = True, name: str = "p") -> list[Path]:
    """The parts of every shard of ``count`` of a folder data set, each complete with random features."""
    root = tmp_path / "photos"
    if not root.exists():
        _photo_folder(root)
    dataset = read_folder(root)
    prepared = prepare_records(dataset, min_count=min_count)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = tmp_path / f"{name}{index}.h5"
        create_store(path, dataset, *prepared, root=root, name=dataset.name, shard=(index, count))
        with open_store(path, writable=True) as store:
            store.begin_features("toy-cnn", 4, (3, 4) if grid else None)
            M = store.num_images
            store.write_features(np.arange(M), rng.random((M, 4)), rng.random((M, 3, 4)) if grid else None)
        paths.append(path)
    return paths


def _merge(out: Path, *parts: Path, overwrite: bool = False) -> int:
    return main(["prepare", "merge", "--out", str(out), *map(str, parts), *(["--overwrite"] if overwrite else [])])


def test_merge_refuses_parts_that_are_not_one_complete_extraction(tmp_path, capsys):
    p0, p1 = _toy_parts(tmp_path, 2)
    out = tmp_path / "out.h5"
    cases = [
        ([p0], "shard 1/2 missing: give the part of every shard 0..1"),
        ([p0, p0, p1], f"shard 0/2 is given twice: {p0} and {p0}"),
        ([p0, _toy_parts(tmp_path, 3, name="three")[1]], "is shard 1/3 but"),
        ([p0, _toy_parts(tmp_path, 2, min_count=3, name="vocab")[1]], "they differ in the vocabulary"),
        ([p0, _toy_parts(tmp_path, 2, grid=False, name="nogrid")[1]], "they differ in the feature shapes"),
        ([p0, tmp_path / "none.h5"], "none.h5 not found"),
    ]
    for parts, message in cases:
        assert _merge(out, *parts) == 1
        error = capsys.readouterr().err
        assert error.startswith("rnncap prepare: error: ") and message in error, (parts, error)
    assert not out.exists()  # nothing written by a refused merge

    whole = tmp_path / "whole.h5"
    dataset = read_folder(tmp_path / "photos")
    create_store(whole, dataset, *prepare_records(dataset, min_count=1), root=dataset.root, name=dataset.name)
    assert _merge(out, p0, whole) == 1
    assert "whole.h5 is a whole prepared file, not a shard part" in capsys.readouterr().err


def test_merge_refuses_an_unfinished_part(tmp_path, capsys):
    p0, p1 = _toy_parts(tmp_path, 2)
    with open_store(p1, writable=True) as store:  # as an interrupted extraction leaves it: one photo not done
        with h5py.File(p1, "r+") as f:
            f["features/done"][1] = False
        assert store.pending().tolist() == [1]
    assert _merge(tmp_path / "out.h5", p0, p1) == 1
    assert "p1.h5 (shard 1/2) is incomplete: 1 of its 4 photos have no features yet" in capsys.readouterr().err
    dataset = read_folder(tmp_path / "photos")
    fresh = tmp_path / "fresh.h5"  # created, never extracted
    prepared = prepare_records(dataset, min_count=1)
    create_store(fresh, dataset, *prepared, root=dataset.root, name=dataset.name, shard=(1, 2))
    assert _merge(tmp_path / "out.h5", p0, fresh) == 1
    assert "fresh.h5 (shard 1/2) is incomplete: 4 of its 4 photos have no features yet" in capsys.readouterr().err
    other = tmp_path / "other.h5"  # the same photos under another data set name
    create_store(other, dataset, *prepared, root=dataset.root, name="mine", shard=(1, 2))
    assert _merge(tmp_path / "out.h5", p0, other) == 1
    assert "they differ in the data set 'mine' vs 'folder'" in capsys.readouterr().err


def test_merge_refuses_a_changed_part_and_follows_the_output_rule(tmp_path, capsys):
    p0, p1 = _toy_parts(tmp_path, 2)
    out = tmp_path / "out.h5"
    assert _merge(out, p0, p1) == 0
    capsys.readouterr()
    assert _merge(out, p0, p1) == 1
    assert f"--out {out} already exists: give --overwrite" in capsys.readouterr().err
    assert _merge(out, p0, p1, overwrite=True) == 0
    assert _merge(p1, p0, p1, overwrite=True) == 1
    assert "is an input of this command" in capsys.readouterr().err
    with h5py.File(p1, "r+") as f:
        f["captions/raw"][0] = "A cat."  # changed after it was cut
    assert _merge(out, p0, p1, overwrite=True) == 1
    assert "p1.h5 is damaged: its photos, captions or shard attributes changed" in capsys.readouterr().err


# ---- torchrun ----------------------------------------------------------------------------------------------------


def test_torchrun_environment(monkeypatch, tmp_path, capsys):
    assert torchrun_shard({}) is None
    assert torchrun_shard({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: no shards
    assert torchrun_shard({"RANK": "1", "WORLD_SIZE": "3"}) == (1, 3)
    for bad in ({"RANK": "3", "WORLD_SIZE": "3"}, {"RANK": "x", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "2"}):
        with pytest.raises(ValueError, match="expected integers with 0 <= RANK < WORLD_SIZE.*to run in one process"):
            torchrun_shard(bad)
    assert part_path(tmp_path / "coco.h5", 1, 4) == tmp_path / "coco.shard-1-of-4.h5"

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _prepare(tmp_path, tmp_path / "x.h5", "--shard", "0/2") == 1
    assert "give --shard or run under torchrun" in capsys.readouterr().err
    assert main(["prepare", "cs231n", "--root", str(tmp_path), "--out", str(tmp_path / "c.h5")]) == 1
    assert "cs231n (its features come with it: there is nothing to extract" in capsys.readouterr().err
    assert _merge(tmp_path / "out.h5", tmp_path / "a.h5") == 1
    assert "rnncap prepare merge runs in one process: start it without torchrun" in capsys.readouterr().err


@pytest.mark.slow  # two processes, each importing torch and the encoder (~20-30 s on two busy cores)
def test_torchrun_two_processes_write_the_unsharded_store(tmp_path, capsys):
    root = _photo_folder(tmp_path / "photos")
    assert _prepare(root, tmp_path / "whole.h5") == 0  # also puts the ONNX export in the session's cache
    out = tmp_path / "out" / "full.h5"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    command = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "rnncap", "prepare", "folder"]
    command += ["--root", str(root), "--out", str(out), *FAST]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")} | {"OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shard 0/2: photos 0..3" in done.stdout and "shard 1/2: photos 4..7" in done.stdout
    assert "merged the 2 shards" in done.stdout
    assert_same_store(out, tmp_path / "whole.h5")
    assert sorted(p.name for p in out.parent.iterdir()) == ["full.h5"]  # the parts removed, no temporary left

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert "already holds this preparation with every feature of efficientnet-lite0: nothing to do" in again.stdout
