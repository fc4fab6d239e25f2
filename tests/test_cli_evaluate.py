"""``rnncap evaluate`` end to end on a tiny prepared file and a tiny model: table, habits, JSON, HTML, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import GRID_ENCODER, make_attention_model, make_model, make_prepared
from rnncap.cli import main


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch) -> None:
    """The default output folder (runs/evaluate) is relative: keep it out of the repository."""
    monkeypatch.chdir(tmp_path)


def test_files_go_to_runs_evaluate_by_default_and_no_save_writes_none(tmp_path: Path, capsys) -> None:
    data = make_prepared(tmp_path)
    model = make_model(data).save(tmp_path / "model.npz")
    args = ["evaluate", "--model", str(model), "--data", str(data), "--metrics", "CIDEr"]
    assert main(args) == 0
    out = Path("runs/evaluate")
    printed = capsys.readouterr().out
    assert f"wrote {out / 'model-dev.json'} (scores on the 0-1 scale)" in printed
    assert f"wrote {out / 'model-dev.html'} (4 photos)" in printed
    assert sorted(p.name for p in out.iterdir()) == ["model-dev.html", "model-dev.json"]
    assert main([*args, "--split", "train", "--no-save"]) == 0
    assert "wrote" not in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["model-dev.html", "model-dev.json"]


def test_prints_scores_on_the_0_100_scale_and_writes_json_and_html(tmp_path: Path, capsys) -> None:
    data = make_prepared(tmp_path)
    model = make_model(data).save(tmp_path / "model.npz")
    out_json, out_html = tmp_path / "out" / "scores.json", tmp_path / "out" / "gallery.html"
    args = ["evaluate", "--model", str(model), "--data", str(data), "--metrics", "bleu,CIDEr", "--beam", "2"]
    assert main([*args, "--json", str(out_json), "--html", str(out_html), "--gallery-size", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Scores on the 0-100 scale" in printed and "| Metric (0-100) | Score |" in printed
    assert "| BLEU-4 " in printed and "| CIDEr " in printed and "ROUGE_L" not in printed
    assert "beam search (beam 2, length penalty 0), at most 7 tokens" in printed and "captioned 4 photos" in printed
    for habit in (
        "distinct captions",
        "words used",
        "mean length",
        "words repeated back to back",
        "cut off mid-phrase",
        "copied from training captions",
    ):
        assert habit in printed
    assert f"wrote {out_json} (scores on the 0-1 scale)" in printed and f"wrote {out_html} (3 photos)" in printed

    written = json.loads(out_json.read_text(encoding="utf-8"))
    assert written["scale"] == "0-1" and set(written["scores"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr"}
    assert all(0 <= value <= 1 for value in written["scores"].values())
    assert list(written["captions"]) == ["p3.png", "p4.png", "p5.png", "p6.png"]
    assert written["decoding"]["beam_size"] == 2 and written["model"] == str(model)
    page = out_html.read_text(encoding="utf-8")
    assert page.count("<figure>") == 3 and "data:image/jpeg;base64," in page and "0-100" in page


def test_gallery_size_zero_shows_every_photo(tmp_path: Path, capsys) -> None:
    data = make_prepared(tmp_path)
    model = make_model(data).save(tmp_path / "model.npz")
    html = tmp_path / "all.html"
    args = ["evaluate", "--model", str(model), "--data", str(data), "--metrics", "CIDEr", "--beam", "1"]
    assert main([*args, "--html", str(html), "--gallery-size", "0"]) == 0
    assert f"wrote {html} (4 photos)" in capsys.readouterr().out
    assert html.read_text(encoding="utf-8").count("<figure>") == 4


def test_the_gallery_of_an_attention_model_shows_its_maps(tmp_path: Path, capsys) -> None:
    data = make_prepared(tmp_path, encoder=GRID_ENCODER, locations=49)
    model = make_attention_model(data).save(tmp_path / "attention.npz")
    html = tmp_path / "gallery.html"
    args = ["evaluate", "--model", str(model), "--data", str(data), "--metrics", "CIDEr", "--html", str(html)]
    assert main([*args, "--gallery-size", "2"]) == 0
    assert f"wrote {html} (2 photos, with attention maps)" in capsys.readouterr().out
    assert html.read_text(encoding="utf-8").count('<img class="extra"') == 2
    assert main([*args, "--no-attention-maps", "--overwrite"]) == 0
    assert f"wrote {html} (4 photos)\n" in capsys.readouterr().out
    assert '<img class="extra"' not in html.read_text(encoding="utf-8")


def test_a_warning_is_one_line(tmp_path: Path, capsys) -> None:
    data = make_prepared(tmp_path)
    model = make_model(data)
    model.metadata = {}  # trained without saying which encoder made its features
    model_file = model.save(tmp_path / "model.npz")
    assert main(["evaluate", "--model", str(model_file), "--data", str(data), "--metrics", "CIDEr"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f"rnncap evaluate: warning: {model_file} does not record the encoder of its training features; "
        f"assuming {data}'s 'toy-cnn' is the right one\n"
    )
    assert "| CIDEr " in captured.out


def test_errors_are_one_line(tmp_path: Path, capsys) -> None:
    data = make_prepared(tmp_path)
    other = make_model(data, encoder="other-cnn").save(tmp_path / "other.npz")
    assert main(["evaluate", "--model", str(other), "--data", str(data)]) == 1
    assert capsys.readouterr().err.startswith("rnncap evaluate: error: ")
    model = make_model(data).save(tmp_path / "model.npz")
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--split", "test"]) == 1
    assert "has no split 'test'" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "nope.npz"), "--data", str(data)]) == 1
    assert "nope.npz does not exist" in capsys.readouterr().err


def test_unknown_metric_is_a_usage_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--data", str(tmp_path / "x.h5"), "--metrics", "BLEU,SPICE"])
    assert exit_info.value.code == 2
    assert "unknown metric(s) ['SPICE']: choose from BLEU,METEOR,ROUGE_L,CIDEr" in capsys.readouterr().err


def test_an_existing_output_is_refused_before_captioning_unless_overwrite(tmp_path: Path, capsys) -> None:
    data = make_prepared(tmp_path)
    model = make_model(data).save(tmp_path / "model.npz")
    scores, gallery = tmp_path / "scores.json", tmp_path / "gallery.html"
    scores.write_text("scores of an hour of decoding")
    args = ["evaluate", "--model", str(model), "--data", str(data), "--metrics", "CIDEr"]
    args += ["--json", str(scores), "--html", str(gallery)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert (
        captured.err
        == f"rnncap evaluate: error: --json {scores} already exists: give --overwrite (overwrite=True) to replace it\n"
    )
    assert captured.out == "" and not gallery.exists()  # refused before any captioning or writing
    assert scores.read_text() == "scores of an hour of decoding"
    assert main([*args, "--overwrite"]) == 0
    assert json.loads(scores.read_text())["scale"] == "0-1" and gallery.is_file()


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("folder", "--html {html} is a folder: expected the name of a file to write"),
        ("file/gallery.html", "--html {html}: cannot create its folder, {root}/file is a file, not a folder"),
        ("toy.h5", "--html {html} is an input of this command"),
    ],
)
def test_an_unusable_output_is_refused_before_captioning(tmp_path: Path, capsys, where: str, message: str) -> None:
    data = make_prepared(tmp_path)
    model = make_model(data).save(tmp_path / "model.npz")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    html, scores = tmp_path / where, tmp_path / "out" / "scores.json"
    before = data.read_bytes()
    args = ["evaluate", "--model", str(model), "--data", str(data), "--json", str(scores), "--html", str(html)]
    assert main([*args, "--overwrite"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"rnncap evaluate: error: {message.format(html=html, root=tmp_path)}")
    assert captured.out == "" and not scores.exists()  # before: the JSON was written, then the HTML failed
    assert data.read_bytes() == before
