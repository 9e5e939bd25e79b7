"""train.evaluate: predictions on a built test set that `python -m unimumer evaluate` scores; resumable."""
import json
import shutil

import pytest

from conftest import shared_path
from test_finetune import build_synthetic
from train import evaluate
from unimumer import cli


def scored(capsys, path) -> dict:
    capsys.readouterr()
    assert cli.main(["evaluate", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predictions_are_scored_by_unimumer_evaluate_and_resume(tmp_path, tiny_model_dir, capsys):
    data = build_synthetic(tmp_path / "test", n=6, tasks=("vanilla", "count"))
    out = tmp_path / "preds.json"
    common = ["--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--max-new-tokens", "6",
              "--batch-size", "2"]
    assert evaluate.main(common + ["--limit", "4"]) == 0
    printed = capsys.readouterr()
    preds = json.loads(out.read_text())
    assert [p["img_id"] for p in preds] == [f"s{i:03d}" for i in range(4)]
    assert all({"img_id", "image_path", "gt", "pred", "mode", "model"} <= set(p) for p in preds)
    assert preds[2]["gt"] == "\\frac { 1 } { 2 }" and all(p["mode"] == "vanilla" for p in preds)
    assert "ExpRate" in printed.out and f"{out}: 4 expressions" in printed.out  # unimumer's own table
    assert scored(capsys, out)["n"] == 4

    assert evaluate.main(common) == 0  # the same command, now over all 6 images
    assert "Resuming: 4 of 6 images" in capsys.readouterr().err
    again = json.loads(out.read_text())
    assert again[:4] == preds and len(again) == 6


def test_one_jsonl_file_and_clear_errors(tmp_path, tiny_model_dir, capsys):
    data = build_synthetic(tmp_path / "test", n=3, tasks=("tree",))
    items = evaluate.vanilla_items(data / "syn_tree.jsonl")  # any task: the gt is the target's last line
    assert [i["gt"] for i in items] == ["x ^ { 2 }", "a + b", "\\frac { 1 } { 2 }"]
    assert evaluate.main(["--model", str(tiny_model_dir), "--data", str(data), "--out", str(tmp_path / "p.json")]) == 1
    assert "has no *_vanilla.jsonl files" in capsys.readouterr().err
    assert evaluate.main(["--model", str(tmp_path / "nope"), "--data", str(data / "syn_tree.jsonl"),
                          "--out", str(tmp_path / "p.json")]) == 1
    assert "error:" in capsys.readouterr().err


@pytest.mark.shared_data
def test_on_a_built_crohme_test_set(tmp_path, tiny_model_dir, capsys):
    from train import build_data

    inks = shared_path("crohme", "inkml", "2014")
    data = tmp_path / "crohme2014"
    assert build_data.main(["crohme", str(inks), "--tasks", "vanilla", "--limit", "5", "--out", str(data),
                            "--workers", "1", "--no-progress"]) == 0
    out = tmp_path / "crohme2014_pred.json"
    assert evaluate.main(["--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                          "--max-new-tokens", "4"]) == 0
    metrics = scored(capsys, out)
    assert metrics["n"] == 5 and 0 <= metrics["exprate"] <= 100


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("gs") is None, reason="no TeX Live / Ghostscript")
def test_cdm_is_printed_with_the_metrics(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("UNIMUMER_CDM_CACHE", str(tmp_path / "cache"))
    data = build_synthetic(tmp_path / "test", n=2)
    assert evaluate.main(["--model", str(tiny_model_dir), "--data", str(data), "--out", str(tmp_path / "p.json"),
                          "--max-new-tokens", "4", "--cdm"]) == 0
    table = capsys.readouterr().out
    assert "CDM F1" in table and "ExpRate@CDM" in table
