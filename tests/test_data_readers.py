"""The data set readers, on the real files in ../shared/data and on small layouts built here, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import make_cs231n
from rnncap.data import read_coco, read_cs231n, read_flickr8k, read_folder, tokenize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the repository, never inside it
FLICKR = SHARED / "flickr8k"
COCO_MINI = SHARED / "coco-mini"
CS231N_VOCAB = SHARED / "cs231n" / "coco2014_vocab.json"
needs_flickr = pytest.mark.skipif(not FLICKR.is_dir(), reason=f"real Flickr8k data not found at {FLICKR}")
needs_coco = pytest.mark.skipif(not COCO_MINI.is_dir(), reason=f"real coco-mini data not found at {COCO_MINI}")
needs_vocab = pytest.mark.skipif(not CS231N_VOCAB.is_file(), reason=f"CS231n vocabulary not found at {CS231N_VOCAB}")


def touch(path: Path) -> Path:
    """A stand-in photo: readers only check that the file exists (decoding is the encoder's job)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 not decoded by readers")
    return path


# ---- Flickr8k -------------------------------------------------------------------------------------------------


@needs_flickr
def test_flickr8k_real_train_and_dev() -> None:
    dataset = read_flickr8k(FLICKR, splits=("train", "dev"))
    assert dataset.split_counts() == {"train": 6000, "dev": 1000}
    counts = {s: sum(len(r.captions) for r in dataset if r.split == s) for s in ("train", "dev")}
    assert counts == {"train": 30000, "dev": 5000}
    assert all(r.path.is_file() for r in dataset.records[:50])
    first = dataset.records[0]
    assert first.image_id == first.path.name and first.image_id.endswith(".jpg")
    # The known defect and the 91 photos in no split are skipped, and said so.
    assert len(dataset.skipped) == 92
    assert any(s.startswith("2258277193_586949ec62.jpg.1: in no split list") for s in dataset.skipped)


@needs_flickr
def test_flickr8k_real_withheld_test_split_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match=r"1000 of 1000 photos of split 'test'.*--splits train,dev"):
        read_flickr8k(FLICKR)


def make_flickr(root: Path, token_lines: list[str] | None = None) -> Path:
    splits = {"train": ["a.jpg", "b.jpg"], "dev": ["c.jpg"], "test": ["d.jpg"]}
    files = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}
    for split, names in splits.items():
        (root / files[split]).parent.mkdir(parents=True, exist_ok=True)
        (root / files[split]).write_text("\n".join(names) + "\n")
        for name in names:
            touch(root / "Images" / name)
    if token_lines is None:
        token_lines = [f"{n}#{k}\t{n[0].upper()} caption number {k} ." for n in "abcd" for k in range(2)]
        token_lines = [line.replace("#", ".jpg#", 1) for line in token_lines]
        token_lines += ["zz.jpg.1#0\ta defect with no photo"]
    (root / "Flickr8k.token.txt").write_text("\n".join(token_lines) + "\n")
    return root


def test_flickr8k_fixture(tmp_path: Path) -> None:
    dataset = read_flickr8k(make_flickr(tmp_path), splits=("dev", "train"))
    assert [(r.image_id, r.split) for r in dataset] == [("c.jpg", "dev"), ("a.jpg", "train"), ("b.jpg", "train")]
    assert dataset.records[1].captions == ("A caption number 0 .", "A caption number 1 .")
    assert dataset.records[1].path == tmp_path / "Images" / "a.jpg"
    assert dataset.skipped == ("zz.jpg.1: in no split list (1 captions)",)
    assert dataset.name == "flickr8k" and dataset.root == tmp_path


def test_flickr8k_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Flickr8k folder .*missing"):
        read_flickr8k(tmp_path / "missing")
    root = make_flickr(tmp_path / "ok")
    with pytest.raises(ValueError, match=r"unknown Flickr8k split\(s\) \['valid'\]"):
        read_flickr8k(root, splits=("train", "valid"))
    (root / "Images" / "b.jpg").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"1 of 2 photos of split 'train' .*missing from .*Images \(e.g. b.jpg\)"
    ):
        read_flickr8k(root, splits=("train",))
    assert len(read_flickr8k(root, splits=("dev",))) == 1  # other splits are unaffected
    with pytest.raises(FileNotFoundError, match=r"--splits dev,test\)$"):
        read_flickr8k(root, splits=("train",))
    (root / "Flickr_8k.devImages.txt").unlink()
    with pytest.raises(FileNotFoundError, match="Flickr_8k.devImages.txt not found"):
        read_flickr8k(root, splits=("dev",))

    empty = make_flickr(tmp_path / "empty", ["a.jpg#0\tA dog .", "a.jpg#1\t . ", "b.jpg#0\tA cat ."])
    with pytest.raises(ValueError, match=r"Flickr8k.token.txt: 1 empty caption\(s\) \(no words\): line 2 \(a.jpg#1\)"):
        read_flickr8k(empty, splits=("train",))
    malformed = make_flickr(tmp_path / "malformed", ["a.jpg#0\tA dog .", "a.jpg A dog without a tab"])
    with pytest.raises(ValueError, match=r"Flickr8k.token.txt line 2: expected 'NAME.jpg#K<TAB>caption'"):
        read_flickr8k(malformed, splits=("train",))
    no_images = make_flickr(tmp_path / "noimages")
    for photo in (no_images / "Images").iterdir():
        photo.unlink()
    (no_images / "Images").rmdir()
    with pytest.raises(FileNotFoundError, match="Flickr8k photo folder .*Images not found"):
        read_flickr8k(no_images)


# ---- COCO -----------------------------------------------------------------------------------------------------


@needs_coco
def test_coco_real_mini_2017() -> None:
    dataset = read_coco(COCO_MINI, year=2017, splits=("train",))
    assert dataset.name == "coco2017" and dataset.split_counts() == {"train": 80}
    assert sum(len(r.captions) for r in dataset) == 400
    ids = [int(r.image_id) for r in dataset]
    assert ids == sorted(ids)
    assert all(r.path.is_file() and int(r.path.stem) == int(r.image_id) for r in dataset)
    assert dataset.skipped == ()


@needs_coco
def test_coco_real_mini_missing_split_names_the_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"captions_val2017.json not found, needed for split 'val'"):
        read_coco(COCO_MINI, year=2017)  # the default asks for train and val; coco-mini has train only
    with pytest.raises(FileNotFoundError, match=r"captions_train2014.json not found"):
        read_coco(COCO_MINI)  # 2014 by default


@needs_coco
def test_coco_real_mini_with_a_karpathy_file(tmp_path: Path) -> None:
    official = json.loads((COCO_MINI / "annotations" / "captions_train2017.json").read_text())
    images = sorted(official["images"], key=lambda im: im["id"])
    captions: dict[int, list[str]] = {}
    for a in official["annotations"]:
        captions.setdefault(a["image_id"], []).append(a["caption"])
    splits = ["train", "restval", "val", "test"]
    karpathy = {
        "images": [
            {
                "filepath": "train2017",
                "filename": im["file_name"],
                "cocoid": im["id"],
                "split": splits[i % 4],
                "sentences": [{"raw": c, "tokens": tokenize(c)} for c in captions[im["id"]]],
            }
            for i, im in enumerate(images)
        ]
    }
    split_file = tmp_path / "dataset_coco.json"
    split_file.write_text(json.dumps(karpathy))
    dataset = read_coco(COCO_MINI, year=2017, karpathy=split_file)
    assert dataset.name == "coco2017-karpathy"
    assert dataset.split_counts() == {"train": 40, "val": 20, "test": 20}  # restval counts as train
    assert sum(len(r.captions) for r in dataset) == 400
    assert read_coco(COCO_MINI, year=2017, karpathy=split_file, splits=("test",)).split_counts() == {"test": 20}


@needs_coco
@needs_vocab
def test_coco_captions_tokenize_into_the_cs231n_vocabulary() -> None:
    """Tokens are plain lowercase words (or PTB clitics), and most are in CS231n's 1,004 most frequent COCO words."""
    vocab = json.loads(CS231N_VOCAB.read_text())["word_to_idx"]
    tokens = [t for r in read_coco(COCO_MINI, year=2017, splits=("train",)) for c in r.captions for t in tokenize(c)]
    assert len(tokens) > 3000 and np.mean([t in vocab for t in tokens]) > 0.9
    assert all(t.replace("-", "").isalnum() and t == t.lower() or t in ("'s", "n't") for t in tokens if t not in vocab)


def make_coco(root: Path, year: int = 2014) -> Path:
    for split, ids in (("train", [9, 3, 5]), ("val", [42])):
        images = [{"id": i, "file_name": f"COCO_{split}{year}_{i:012d}.jpg"} for i in ids]
        for im in images:
            touch(root / f"{split}{year}" / im["file_name"])
        annotations = [
            {"id": 100 * i + k, "image_id": i, "caption": f"Photo {i} caption {k}."} for i in ids for k in (0, 1)
        ]
        if split == "train":
            annotations = [a for a in annotations if a["image_id"] != 5]  # a photo with no caption
            annotations.append({"id": 1, "image_id": 777, "caption": "A caption of no listed photo."})
        ann = root / "annotations" / f"captions_{split}{year}.json"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


def test_coco_fixture_official_splits(tmp_path: Path) -> None:
    dataset = read_coco(make_coco(tmp_path))
    assert [(r.image_id, r.split) for r in dataset] == [("3", "train"), ("9", "train"), ("42", "val")]
    assert dataset.records[0].captions == ("Photo 3 caption 0.", "Photo 3 caption 1.")
    assert dataset.records[2].path == tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"
    assert sorted(dataset.skipped) == [
        "777: captioned in captions_train2014.json but not in its images",
        "COCO_train2014_000000000005.jpg: no caption in captions_train2014.json",
    ]
    assert read_coco(tmp_path, splits=("val",)).split_counts() == {"val": 1}


def test_coco_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="COCO folder .*nowhere"):
        read_coco(tmp_path / "nowhere")
    root = make_coco(tmp_path / "c")
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['test'\] for official COCO captions"):
        read_coco(root, splits=("train", "test"))
    ann = root / "annotations" / "captions_val2014.json"
    good = ann.read_text()

    ann.write_text(good[:-20])  # truncated
    with pytest.raises(ValueError, match=r"captions_val2014.json is not valid JSON"):
        read_coco(root)
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match=r"captions_val2014.json is not a COCO captions file.*KeyError: 'annotations'"):
        read_coco(root)
    data = json.loads(good)
    data["annotations"][1]["caption"] = "  ...  "
    ann.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"captions_val2014.json: 1 empty caption\(s\) \(no words\): image 42: '  ...  '"
    ):
        read_coco(root)
    ann.write_text(good)

    for photo in (root / "train2014").iterdir():  # no photo at all: the wrong folder, not a partial download
        photo.unlink()
    (root / "val2014" / "COCO_val2014_000000000042.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"3 of 3 COCO photos .* are missing .*COCO_val2014_0.*is --root right"):
        read_coco(root)
    (root / "val2014").rmdir()
    with pytest.raises(FileNotFoundError, match=r"COCO photo folder for split 'val': .*val2014 not found"):
        read_coco(root)


def test_coco_karpathy_bad_input(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "c")
    split_file = tmp_path / "dataset_coco.json"
    with pytest.raises(FileNotFoundError, match="dataset_coco.json not found"):
        read_coco(root, karpathy=split_file)
    split_file.write_text('{"images": [')
    with pytest.raises(ValueError, match="dataset_coco.json is not valid JSON"):
        read_coco(root, karpathy=split_file)
    split_file.write_text(json.dumps({"images": [{"filepath": "val2014", "filename": "x.jpg"}]}))
    with pytest.raises(ValueError, match="dataset_coco.json is not Karpathy's dataset_coco.json"):
        read_coco(root, karpathy=split_file)
    image = {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "cocoid": 42, "split": "val"}
    split_file.write_text(json.dumps({"images": [{**image, "sentences": [{"raw": "A dog."}, {"raw": ""}]}]}))
    with pytest.raises(ValueError, match=r"1 empty caption\(s\).*COCO_val2014_000000000042.jpg sentence 1: ''"):
        read_coco(root, karpathy=split_file)
    split_file.write_text(json.dumps({"images": [{**image, "sentences": [{"raw": "A dog."}]}]}))
    with pytest.raises(
        ValueError, match=r"has no photos in split\(s\) \['train', 'test'\] \(splits in the file: \['val'\]\)"
    ):
        read_coco(root, karpathy=split_file, splits=("train", "val", "test"))
    assert read_coco(root, karpathy=split_file).split_counts() == {"val": 1}  # by default the splits the file has
    assert read_coco(root, karpathy=split_file, splits=("val",)).records[0].image_id == "42"
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['restval'\]"):
        read_coco(root, karpathy=split_file, splits=("restval",))


def test_coco_partial_download_skips_the_missing_photos(tmp_path: Path) -> None:
    """A json naming photos that are not on disk costs only those photos, each listed in skipped."""
    root = make_coco(tmp_path / "c")
    (root / "train2014" / "COCO_train2014_000000000009.jpg").unlink()
    dataset = read_coco(root)
    assert [r.image_id for r in dataset] == ["3", "42"]
    assert f"COCO_train2014_000000000009.jpg: photo not found in {root / 'train2014'}" in dataset.skipped
    split_file = tmp_path / "dataset_coco.json"
    images = [
        {"filepath": "train2014", "filename": f"COCO_train2014_{i:012d}.jpg", "cocoid": i, "split": "train"}
        for i in (3, 9)
    ]
    split_file.write_text(json.dumps({"images": [{**im, "sentences": [{"raw": "A dog."}]} for im in images]}))
    dataset = read_coco(root, karpathy=split_file)
    assert [r.image_id for r in dataset] == ["3"]
    assert dataset.skipped == (f"COCO_train2014_000000000009.jpg: photo not found in {root / 'train2014'}",)
    (root / "train2014" / "COCO_train2014_000000000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"2 of 2 COCO photos named in dataset_coco.json are missing"):
        read_coco(root, karpathy=split_file)


COCO_SUBSET = SHARED / "coco-subset"
needs_coco_subset = pytest.mark.skipif(not COCO_SUBSET.is_dir(), reason=f"real COCO subset not found at {COCO_SUBSET}")


@needs_coco_subset
def test_coco_real_subset_karpathy_reads_the_splits_the_file_has() -> None:
    dataset = read_coco(COCO_SUBSET, year=2017, karpathy=COCO_SUBSET / "dataset_coco.json")
    assert dataset.name == "coco2017-karpathy"
    assert dataset.split_counts() == {"train": 2493, "val": 300}
    with pytest.raises(
        ValueError, match=r"no photos in split\(s\) \['test'\] \(splits in the file: \['train', 'val'\]"
    ):
        read_coco(COCO_SUBSET, year=2017, karpathy=COCO_SUBSET / "dataset_coco.json", splits=("test",))


@needs_coco_subset
def test_coco_real_subset_official_layout() -> None:
    dataset = read_coco(COCO_SUBSET, year=2017)
    assert dataset.name == "coco2017"
    assert dataset.split_counts() == {"train": 130, "val": 2663}
    assert sum(len(r.captions) for r in dataset) == 13971


# ---- folder ---------------------------------------------------------------------------------------------------


def test_folder_csv(tmp_path: Path) -> None:
    for name in ("dogs/1.jpg", "dogs/2.jpg", "cat.jpg"):
        touch(tmp_path / name)
    (tmp_path / "captions.csv").write_text(
        "\ufeffimage,caption,split\n"  # spreadsheets write a byte-order mark
        'dogs/1.jpg,"A dog, running.",val\n'
        "cat.jpg,A cat.,\n"
        "dogs/1.jpg,Another dog.,val\n"
        "dogs/2.jpg,A second dog.,train\n",
        encoding="utf-8",
    )
    dataset = read_folder(tmp_path)  # captions.csv found by default
    assert [(r.image_id, r.split, r.captions) for r in dataset] == [
        ("dogs/1.jpg", "val", ("A dog, running.", "Another dog.")),
        ("cat.jpg", "train", ("A cat.",)),
        ("dogs/2.jpg", "train", ("A second dog.",)),
    ]
    assert dataset.records[0].path == tmp_path / "dogs" / "1.jpg"


def test_folder_jsonl(tmp_path: Path) -> None:
    touch(tmp_path / "photos" / "a.png")
    lines = [{"image": "a.png", "caption": "A red ball."}, {"image": "a.png", "caption": "A ball.", "split": "train"}]
    captions = tmp_path / "elsewhere" / "caps.jsonl"
    captions.parent.mkdir()
    captions.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    dataset = read_folder(tmp_path / "photos", captions)
    assert [(r.image_id, r.split, r.captions) for r in dataset] == [("a.png", "train", ("A red ball.", "A ball."))]


@needs_flickr
def test_folder_real_photos(tmp_path: Path) -> None:
    names = (FLICKR / "Flickr_8k.devImages.txt").read_text().split()[:3]
    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\n" + "".join(f"{n},A photo from Flickr.\n" for n in names))
    dataset = read_folder(FLICKR / "Images", captions)
    assert [r.image_id for r in dataset] == names and all(r.path.is_file() for r in dataset)


def test_folder_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="photo folder .*nowhere"):
        read_folder(tmp_path / "nowhere", "captions.csv")
    touch(tmp_path / "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"no captions file given and none of \['captions.csv'"):
        read_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="captions file nope.csv not found"):
        read_folder(tmp_path, "nope.csv")

    def csv(text: str) -> Path:
        path = tmp_path / "captions.csv"
        path.write_text(text)
        return path

    with pytest.raises(ValueError, match=r"captions.csv: the CSV header must name the columns 'image' and 'caption'"):
        read_folder(tmp_path, csv("file,text\na.jpg,A dog.\n"))
    with pytest.raises(FileNotFoundError, match=r"1 of 2 photos named in captions.csv are missing .*\(e.g. b.jpg\)"):
        read_folder(tmp_path, csv("image,caption\na.jpg,A dog.\nb.jpg,A cat.\n"))
    with pytest.raises(ValueError, match=r"captions.csv: 2 empty caption\(s\) \(no words\): line 3 \(a.jpg\): '!'"):
        read_folder(tmp_path, csv("image,caption\na.jpg,A dog.\na.jpg,!\na.jpg\n"))  # the short row is empty too
    with pytest.raises(ValueError, match=r"line 3: a.jpg is in split 'val' here but 'train' before"):
        read_folder(tmp_path, csv("image,caption,split\na.jpg,A dog.,train\na.jpg,A cat.,val\n"))
    with pytest.raises(ValueError, match="holds no captions"):
        read_folder(tmp_path, csv("image,caption\n"))

    jsonl = tmp_path / "captions.jsonl"
    jsonl.write_text('{"image": "a.jpg", "caption": "A dog."}\n{"image": "a.jpg", "caption": \n')
    with pytest.raises(ValueError, match=r"captions.jsonl line 2 is not valid JSON"):
        read_folder(tmp_path, jsonl)
    jsonl.write_text('{"image": "a.jpg", "text": "A dog."}\n')
    with pytest.raises(ValueError, match=r"captions.jsonl line 1: expected an object with 'image' and 'caption'"):
        read_folder(tmp_path, jsonl)
    (tmp_path / "captions.txt").write_text("a.jpg A dog.\n")
    with pytest.raises(ValueError, match=r"must be .csv or JSON lines"):
        read_folder(tmp_path, "captions.txt")


# ---- CS231n ---------------------------------------------------------------------------------------------------


@needs_vocab
def test_cs231n_layout_with_the_real_vocabulary(tmp_path: Path) -> None:
    root = make_cs231n(tmp_path / "coco_captioning", CS231N_VOCAB, {"train": (6, 20), "val": (3, 7)})
    data = read_cs231n(root)
    assert len(data.word_to_idx) == 1004 and data.idx_to_word[4] == "a" and data.word_to_idx["<UNK>"] == 3
    train, val = data.splits["train"], data.splits["val"]
    assert train.features.shape == (6, 512) and train.features.dtype == np.float32
    assert train.captions.shape == (20, 17) and train.captions.dtype == np.int32
    assert val.features.shape == (3, 512) and len(val) == 7
    with h5py.File(root / "coco2014_captions.h5", "r") as f:
        np.testing.assert_array_equal(train.image_idxs, f["train_image_idxs"][()])
    assert len(data.urls["train"]) == 6 and data.urls["val"][2].endswith("_000000000002.jpg")
    full = read_cs231n(root, pca=False, splits=("val",))
    assert list(full.splits) == ["val"] and full.splits["val"].features.shape == (3, 4096)


@needs_vocab
def test_cs231n_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="coco_captioning folder .*nowhere"):
        read_cs231n(tmp_path / "nowhere")
    root = make_cs231n(tmp_path / "cc", CS231N_VOCAB, {"train": (4, 9), "val": (2, 3)}, urls=False)
    assert read_cs231n(root).urls == {"train": [], "val": []}  # URL files are optional
    with pytest.raises(ValueError, match=r"unknown CS231n split\(s\) \['test'\]"):
        read_cs231n(root, splits=("test",))

    (root / "val2014_vgg16_fc7_pca.h5").unlink()
    with pytest.raises(FileNotFoundError, match="val2014_vgg16_fc7_pca.h5 not found"):
        read_cs231n(root)
    (root / "val2014_vgg16_fc7_pca.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="val2014_vgg16_fc7_pca.h5 is not a readable HDF5 file"):
        read_cs231n(root)
    with h5py.File(root / "val2014_vgg16_fc7_pca.h5", "w") as f:
        f.create_dataset("feats", data=np.zeros((2, 512), dtype=np.float32))
    with pytest.raises(
        ValueError, match=r"val2014_vgg16_fc7_pca.h5 has no dataset 'features' \(it holds \['feats'\]\)"
    ):
        read_cs231n(root)
    with h5py.File(root / "val2014_vgg16_fc7_pca.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((1, 512), dtype=np.float32))  # fewer photos than indexed
    with pytest.raises(ValueError, match=r"coco2014_captions.h5: val_image_idxs holds values outside \[0, 1\)"):
        read_cs231n(root)
    assert len(read_cs231n(root, splits=("train",)).splits["train"]) == 9

    with h5py.File(root / "coco2014_captions.h5", "r+") as f:
        f["train_captions"][0, 1] = 5000
    with pytest.raises(ValueError, match=r"train_captions holds token ids outside \[0, 1004\)"):
        read_cs231n(root, splits=("train",))

    (root / "train2014_urls.txt").write_text("http://x\n")
    with h5py.File(root / "coco2014_captions.h5", "r+") as f:
        f["train_captions"][0, 1] = 5
    with pytest.raises(ValueError, match=r"train2014_urls.txt has 1 URLs, expected 4"):
        read_cs231n(root, splits=("train",))

    vocab = json.loads(CS231N_VOCAB.read_text())
    vocab["word_to_idx"]["a"] = 5
    (root / "coco2014_vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(ValueError, match=r"coco2014_vocab.json: 'idx_to_word' and 'word_to_idx' disagree"):
        read_cs231n(root)
    (root / "coco2014_vocab.json").write_text("{")
    with pytest.raises(ValueError, match="coco2014_vocab.json is not valid JSON"):
        read_cs231n(root)


@needs_vocab
def test_cs231n_vocabulary_with_two_words_on_one_id_names_both_and_the_id(tmp_path: Path) -> None:
    root = make_cs231n(tmp_path / "cc", CS231N_VOCAB, {"train": (4, 9)}, urls=False)
    vocab = json.loads(CS231N_VOCAB.read_text())
    vocab["word_to_idx"] = {word: 5 if word == "the" else idx for word, idx in vocab["word_to_idx"].items()}
    (root / "coco2014_vocab.json").write_text(json.dumps(vocab))
    first, second = sorted(("on", "the"), key=list(vocab["word_to_idx"]).index)  # in the file's order
    with pytest.raises(ValueError, match=f"'word_to_idx' gives id 5 to both '{first}' and '{second}'"):
        read_cs231n(root, splits=("train",))
