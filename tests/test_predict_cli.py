"""`python -m unimumer predict`: records, per-file errors, labels, exit codes, resume."""
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from unimumer.cli import main
from unimumer.predict import read_labels

ROOT = Path(__file__).resolve().parents[1]


def _scribble(path: Path, width=260, height=90):
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).line((12, 70, 80, 15, 150, 75, width - 12, 20), fill="black", width=4)
    image.save(path)
    return path


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height, with almost no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    good = [_scribble(folder / "a_good.png"), _scribble(folder / "sub" / "b_good.jpg", 400, 120)]
    (folder / "c_text.png").write_text("this is not an image\n")
    truncated = folder / "d_truncated.png"
    _scribble(truncated, 300, 300)
    truncated.write_bytes(truncated.read_bytes()[:300])
    (folder / "e_empty.png").write_bytes(b"")
    _png_claiming(folder / "f_huge.png", 30000, 30000)
    Image.new("RGB", (500, 300), "white").save(folder / "g_blank.png")
    (folder / "notes.txt").write_text("folders only yield image extensions")
    labels = tmp_path / "caption.txt"
    labels.write_text("".join(f"{p.stem}\tx ^ {{ 2 }}\n" for p in sorted(folder.rglob("*.*"))))
    return folder, good, labels


def test_bad_inputs_get_one_sentence_each_and_good_ones_still_run(tiny_model_dir, inputs, tmp_path, capsys):
    folder, good, labels = inputs
    out = tmp_path / "preds.json"
    code = main(["predict", str(folder), "--model", str(tiny_model_dir), "--labels", str(labels), "--out", str(out),
                 "--batch-size", "4", "--max-new-tokens", "6"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and "Recognised 2 of 7 images; 5 failed" in err
    records = json.loads(out.read_text())
    assert [r["img_id"] for r in records] == ["a_good", "c_text", "d_truncated", "e_empty", "f_huge", "g_blank",
                                              "b_good"]  # folder order: sorted paths, recursive
    by_id = {r["img_id"]: r for r in records}
    for name in ("a_good", "b_good"):
        record = by_id[name]
        assert "error" not in record and isinstance(record["pred"], str)
        assert record["visual_tokens"] > 0 and record["seconds"] > 0 and record["mode"] == "vanilla"
        assert record["gt"] == "x ^ { 2 }" and record["model"] == str(tiny_model_dir)
    for name in ("c_text", "d_truncated", "e_empty", "f_huge", "g_blank"):
        message = by_id[name]["error"]
        assert message.endswith(".") and "\n" not in message and "Traceback" not in message, message
        assert by_id[name]["pred"] == "" and by_id[name]["gt"] == "x ^ { 2 }"
    assert "megapixels" in by_id["f_huge"]["error"]
    assert "handwriting" in by_id["g_blank"]["error"].lower()

    # the file goes straight into `evaluate`
    assert main(["evaluate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 7

    # a second run resumes: finished records are kept, failed inputs are retried
    assert main(["predict", str(folder), "--model", str(tiny_model_dir), "--out", str(out),
                 "--max-new-tokens", "6"]) == 2
    assert "Resuming: 2 of 7 images" in capsys.readouterr().err
    assert json.loads(out.read_text())[0] == by_id["a_good"] | {"gt": "x ^ { 2 }"}


def test_all_good_exits_zero_with_mode_extras(tiny_model_dir, inputs, capsys):
    _, good, _ = inputs
    code = main(["predict", *map(str, good), "--model", str(tiny_model_dir), "--mode", "count+correct",
                 "--max-new-tokens", "6"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = json.loads(captured.out)
    assert [r["mode"] for r in records] == ["count+correct"] * 2
    assert all("candidate" in r and "error" not in r for r in records)


def test_usage_and_model_errors_exit_one(tiny_model_dir, inputs, tmp_path, capsys):
    _, good, _ = inputs
    model = ["--model", str(tiny_model_dir)]
    (tmp_path / "empty-dir").mkdir()
    cases = [
        (["predict", str(good[0]), "--mode", "poetry", *model], "Unknown mode poetry"),
        (["predict", str(tmp_path / "empty-dir"), *model], "No images found"),
        (["predict", str(good[0]), "--model", str(tmp_path)], "not a model checkpoint folder"),
        (["predict", str(good[0]), "--labels", str(good[0]), *model], "Cannot read the labels file"),
        (["predict", str(good[0]), "--batch-size", "0", *model], "--batch-size must be at least 1"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_labels_from_caption_file_or_predictions_json(tmp_path):
    caption = tmp_path / "caption.txt"
    caption.write_text("18_em_0\t\\frac { 1 } { 2 }\nbad line without tab\n")
    assert read_labels(caption) == {"18_em_0": "\\frac { 1 } { 2 }"}
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"img_id": "UN_1", "gt": "x", "pred": "y"}, {"img_id": "UN_2"}]))
    assert read_labels(preds) == {"UN_1": "x"}


def test_crohme_bitmaps_match_their_ink_ids(tiny_model_dir, tmp_path, capsys):
    image = _scribble(tmp_path / "UN_101_em_0_0.png")  # CROHME 2016 bitmaps add _0 to the InkML id
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([{"img_id": "UN_101_em_0", "gt": "a + b"}]))
    assert main(["predict", str(image), "--model", str(tiny_model_dir), "--labels", str(labels),
                 "--max-new-tokens", "4"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["gt"] == "a + b"


def _cli(args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "unimumer", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def test_real_cli_process(tiny_model_dir, inputs):
    """The shell entry point: help without importing torch, and a run with a bad file among good ones."""
    probe = subprocess.run([sys.executable, "-c", "import sys, unimumer.cli; unimumer.cli.build_parser(); "
                            "print('torch' in sys.modules)"], capture_output=True, text=True, cwd=ROOT)
    assert probe.stdout.strip() == "False", probe.stderr
    folder, good, _ = inputs
    done = _cli(["predict", str(good[0]), str(folder / "e_empty.png"), "--model", str(tiny_model_dir),
                 "--max-new-tokens", "4"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    records = json.loads(done.stdout)
    assert "error" not in records[0] and "empty" in records[1]["error"]


def test_an_input_that_breaks_recognition_costs_only_its_record(tiny_model_dir, inputs, monkeypatch, capsys):
    from unimumer.recognizer import Recognizer

    _, good, _ = inputs
    real = Recognizer._generate

    def fragile(self, task, images, prompts, settings):
        if any(image.width > 300 for image in images):  # the second image is the wide one
            raise RuntimeError("simulated failure\nwith details")
        return real(self, task, images, prompts, settings)

    monkeypatch.setattr(Recognizer, "_generate", fragile)
    code = main(["predict", *map(str, good), "--model", str(tiny_model_dir), "--max-new-tokens", "4"])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    first, second = json.loads(captured.out)
    assert "error" not in first and second["error"] == "Recognition failed: simulated failure"


def test_inkml_files_are_drawn_and_recognised(tiny_model_dir, tmp_path, capsys):
    from unimumer.ink import write_inkml

    folder = tmp_path / "inks"
    folder.mkdir()
    (folder / "plus.inkml").write_bytes(write_inkml([[(0, 5), (10, 5)], [(5, 0), (5, 10)]], truth="+"))
    (folder / "broken.inkml").write_text("<ink><trace>1 2, 3 4</trace>")
    code = main(["predict", str(folder), "--model", str(tiny_model_dir), "--max-new-tokens", "4"])
    records = {r["img_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert code == 2 and set(records) == {"plus", "broken"}
    assert records["plus"]["visual_tokens"] > 0 and "error" not in records["plus"]
    assert records["broken"]["error"] == "The InkML file 'broken.inkml' is not valid XML (error at line 1)."
