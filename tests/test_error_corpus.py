"""train.error_corpus: EDL records from predictions (real mistakes of the released model) and the K-fold loop."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, shared_path
from train import error_corpus
from train.error_corpus import error_pair, from_predictions, split_folds
from train.records import parse_record, read_jsonl
from unimumer.tasks import apply_corrections, human_prompt, mark_errors, tree_text


def check_pairs(out: Path, name: str) -> tuple[list[dict], list[dict]]:
    """Every find/fix pair is consistent and every fix record round-trips."""
    finds = read_jsonl(out / f"{name}_error_find.jsonl")
    fixes = read_jsonl(out / f"{name}_error_fix.jsonl")
    assert len(finds) == len(fixes)
    for find, fix in zip(finds, fixes):
        images, find_prompt, marked = parse_record(find)
        assert parse_record(fix)[0] == images
        candidate = find_prompt.split("erroneous formula: ", 1)[1].split("\nMarked formula: ")[0]
        assert find_prompt == "<image>" + human_prompt("error_find", candidate=candidate)
        operations, _, truth = parse_record(fix)[2].rpartition("\n")
        assert marked == mark_errors(candidate, truth) and candidate.split() != truth.split()
        assert parse_record(fix)[1] == "<image>" + human_prompt("error_fix", marked=marked)
        assert operations and apply_corrections(marked, operations) == truth
    return finds, fixes


def test_reference_predictions_crohme_2014(tmp_path):
    preds = shared_path("reference_preds", "crohme_2014_pred.json")
    stats = from_predictions(preds, tmp_path)
    rows = json.loads(preds.read_text())
    wrong = [r for r in rows if r["pred"].split() != r["gt"].split()]
    assert len(wrong) == 171 and stats["wrong"] == 171 and stats["correct"] == 815
    assert stats["records"] == {"error_find": 171, "error_fix": 171}
    finds, _ = check_pairs(tmp_path, "crohme_2014")
    assert [f["images"][0] for f in finds] == [r["image_path"] for r in wrong]  # kept as written
    assert stats["image_not_found"] == 986
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(info) == {"crohme_2014_error_find", "crohme_2014_error_fix"}


def test_predictions_edge_cases_and_images_root(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    rows = [
        {"gt": "x ^ { 2 }", "pred": "x ^ { 2 }", "image_path": "./imgs/a.png"},  # correct
        {"gt": "x ^ { 2 }", "pred": "x  ^ { 3 }", "image_path": "./imgs/a.png"},  # wrong
        {"gt": "a + b", "pred": "", "image_path": "./imgs/b.png"},  # empty prediction: all missing
        {"gt": "a", "pred": "a <error_end>", "image_path": "./imgs/b.png"},  # reserved tag: unmarkable
        {"gt": "", "pred": "a", "image_path": "./imgs/b.png"},  # no truth
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    stats = from_predictions(tmp_path / "p.jsonl", out, name="mine", images_root=tmp_path)
    counts = [stats[k] for k in ("correct", "wrong", "skipped_unmarkable", "skipped_missing_truth")]
    assert counts == [1, 2, 1, 1]
    finds, fixes = check_pairs(out, "mine")
    assert finds[0]["images"] == ["../imgs/a.png"] and stats["image_not_found"] == 2
    assert finds[1]["messages"][1]["value"] == "<deleted>"
    assert not (out / "mine_right_error_find.jsonl").exists()

    # --with-right: the right reading also becomes an error_find record with nothing marked
    stats = from_predictions(tmp_path / "p.jsonl", out, name="mine", images_root=tmp_path, with_right=True)
    assert stats["records"] == {"error_find": 2, "error_fix": 2, "right_error_find": 1}
    [right] = read_jsonl(out / "mine_right_error_find.jsonl")
    assert right["images"] == ["../imgs/a.png"] and parse_record(right)[2] == "x ^ { 2 }"
    assert parse_record(right)[1] == "<image>" + human_prompt("error_find", candidate="x ^ { 2 }")
    assert "mine_right_error_find" in json.loads((out / "dataset_info.json").read_text())
    from_predictions(tmp_path / "p.jsonl", out, name="mine", images_root=tmp_path)  # rebuilt without it
    assert "mine_right_error_find" not in json.loads((out / "dataset_info.json").read_text())

    # --with-follow: each wrong reading's tree / counts given, the reading the answer (the empty one has no tree)
    stats = from_predictions(tmp_path / "p.jsonl", out, name="mine", images_root=tmp_path, with_follow=True)
    assert stats["records"] == {"error_find": 2, "error_fix": 2, "follow_tree": 1, "follow_count": 1}
    assert stats["skipped_unfollowable"] == 1  # `a <error_end>`: a reserved tag
    [tree] = read_jsonl(out / "mine_follow_tree.jsonl")
    [count] = read_jsonl(out / "mine_follow_count.jsonl")
    assert tree["given"] == tree_text("x ^ { 3 }") + "\n" and count["given"] == "x: 1, ^: 1, 3: 1\n"
    assert parse_record(tree)[2] == tree["given"] + "x ^ { 3 }" and parse_record(count)[2].endswith("\nx ^ { 3 }")
    assert parse_record(tree)[1] == "<image>" + human_prompt("tree") and tree["images"] == ["../imgs/a.png"]
    assert {"mine_follow_tree", "mine_follow_count"} <= set(json.loads((out / "dataset_info.json").read_text()))
    from_predictions(tmp_path / "p.jsonl", out, name="mine", images_root=tmp_path)
    assert "mine_follow_tree" not in json.loads((out / "dataset_info.json").read_text())

    result = subprocess.run([sys.executable, "-m", "train.error_corpus", "--from-predictions",
                             str(tmp_path / "nope.json"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_error_pair_round_trips():
    find, fix = error_pair("i.png", "\\frac { 1 } { z } + y", "\\frac { 1 } { 2 } x")
    marked = "\\frac { 1 } { <error_start> z <error_end> } <error_start> + y <error_end>"
    assert find["messages"][1]["value"] == marked
    assert fix["messages"][1]["value"].splitlines()[-1] == "\\frac { 1 } { 2 } x"


def test_split_folds_is_stable_and_balanced():
    items = [(f"images/x/{i}.png", str(i)) for i in range(91)]
    folds = split_folds(items, 3)
    assert sorted(len(f) for f in folds) == [30, 30, 31]
    assert sorted(i for f in folds for i in f) == sorted(items)
    assert split_folds(list(reversed(items)), 3) == folds  # independent of record order
    assert split_folds(items, 3, seed=1) != folds


def test_interrupted_finetune_is_resumed(tmp_path, monkeypatch):
    fold = tmp_path / "fold_0"
    (fold / "model" / "checkpoint-10").mkdir(parents=True)
    commands = []
    monkeypatch.setattr(error_corpus.subprocess, "run",
                        lambda command: commands.append(command) or subprocess.CompletedProcess(command, 0))
    error_corpus._finetune(fold, "c.yaml", ["--max_steps", "20"])
    assert commands[0][-3:] == ["--max_steps", "20", "--resume"] and (fold / "trained").exists()
    error_corpus._finetune(fold, "c.yaml", [])  # finished: not run again
    assert len(commands) == 1


def test_other_split_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"images": [f"images/{i}.png"], "messages": [{"from": "human", "value": "<image>q"},
                                                         {"from": "gpt", "value": "x"}]} for i in range(6)]
    (data / "d_vanilla.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "split.json").write_text(json.dumps({"data": str(data), "folds": 2, "fold_seed": 0}))
    with pytest.raises(ValueError, match="another split"):
        error_corpus.cross_fold(data, tmp_path / "out", "c.yaml", folds=3)


def test_kfold_loop_end_to_end(tmp_path):
    """~90 CROHME inks, 3 folds, a tiny model fine-tuned 20 steps per fold, 2 samples per held-out image."""
    inks = shared_path("crohme", "inkml", "train")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    data, out = tmp_path / "data", tmp_path / "edl"
    built = subprocess.run([sys.executable, "-m", "train.build_data", "crohme", str(inks), "--out", str(data),
                            "--limit", "90", "--tasks", "vanilla", "--height", "64", "--no-progress"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    command = [sys.executable, "-m", "train.error_corpus", "--data", str(data), "--folds", "3", "--samples", "2",
               "--config", "train/configs/tiny-cpu.yaml", "--max_steps", "20", "--per_device_train_batch_size", "2",
               "--max-new-tokens", "24", "--with-right", "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())["edl"]
    assert stats["held_out"] == 90 and stats["folds"] == 3
    finds, _ = check_pairs(out, "edl")
    assert len(finds) == stats["wrong"] >= 1
    held = {}
    for k in range(3):
        assert (out / f"fold_{k}" / "model" / "model.safetensors").exists()
        train_images = {r["images"][0] for r in read_jsonl(out / f"fold_{k}" / "data" / "crohme_vanilla.jsonl")}
        predicted = json.loads((out / f"fold_{k}" / "predictions.json").read_text())
        assert len(train_images) == 60 and all(len(p["preds"]) == 2 for p in predicted)
        for p in predicted:  # a fold's model never saw its held-out images
            assert os.path.relpath(data / p["image"], out / f"fold_{k}" / "data") not in train_images
            held[p["image"]] = k
    assert len(held) == 90
    right_read = [p for k in range(3) for p in json.loads((out / f"fold_{k}" / "predictions.json").read_text())
                  if any(pred.split() == p["gt"].split() for pred in p["preds"])]
    right = read_jsonl(out / "edl_right_error_find.jsonl")
    assert len(right) == len(right_read) == stats["records"]["right_error_find"]
    for find in finds + right:  # every record points at a real held-out image, relative to OUT
        assert (out / find["images"][0]).is_file()
    # Re-run: every fold is done, nothing is trained again, the records are identical.
    before = (out / "edl_error_fix.jsonl").read_bytes()
    start = time.perf_counter()
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "train.finetune" not in again.stderr
    assert time.perf_counter() - start < 30
    assert (out / "edl_error_fix.jsonl").read_bytes() == before

    # --with-follow on the finished folds: built from their saved samples, nothing trained again
    follow = subprocess.run(command + ["--with-follow"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert follow.returncode == 0 and "train.finetune" not in follow.stderr
    wrong = {(os.path.relpath(data / p["image"], out), " ".join(pred.split()))
             for k in range(3) for p in json.loads((out / f"fold_{k}" / "predictions.json").read_text())
             for pred in p["preds"] if pred.split() and pred.split() != p["gt"].split()}
    for task in ("tree", "count"):
        records = read_jsonl(out / f"edl_follow_{task}.jsonl")
        assert 1 <= len(records) <= len(wrong)
        for record in records:
            answer = parse_record(record)[2]
            assert answer.startswith(record["given"]) and (record["images"][0], answer[len(record["given"]):]) in wrong
