"""train.snapshot: a run carried between sessions through a tracked folder — bfloat16 weights the next
session trains from, the curve of every session, a ledger with totals, a kept card, clear errors."""
import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForImageTextToText

from conftest import ROOT
from test_bundled import slice_metrics
from test_convmer import TOY
from test_finetune import TINY_CPU, build_synthetic
from train import finetune, snapshot
from unimumer.convmer.build import build_convmer
from unimumer.recognizer import Recognizer

TRACKED = ROOT / "checkpoints" / "convmer"  # the next bundled model, in training across sessions
TRACKED_EDIT_FLOOR = 56.0  # % edit score on the first 100 CROHME 2014 inks; session 1 scored 63.0


def float_dtypes(folder) -> set:
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        tensors = [weights.get_tensor(k) for k in weights.keys()]
    return {t.dtype for t in tensors if t.is_floating_point()}


def train(model, data, out, steps: int = 2, *flags: str) -> None:
    """A few steps of a toy ConvMer (at 1e-4: TINY_CPU's 2e-3 can diverge to NaN at this size)."""
    assert finetune.main(["--config", str(TINY_CPU), "--model", str(model), "--data", str(data),
                          "--output_dir", str(out), "--max_steps", str(steps), "--logging_steps", "1",
                          "--learning_rate", "1e-4", "--per_device_train_batch_size", "4", "--disable_tqdm", "true",
                          "--crop_to_ink", "true", *flags]) == 0


def test_two_sessions_chain_through_the_tracked_folder(tmp_path):
    data = build_synthetic(tmp_path / "data", n=8)
    base = build_convmer(tmp_path / "base", seed=0, **TOY)
    into = tmp_path / "checkpoints" / "convmer"

    train(base, data, tmp_path / "session1", steps=2)
    ledger = snapshot.snapshot(tmp_path / "session1", into)
    assert [s["session"] for s in ledger["sessions"]] == [1] and ledger["sessions"][0]["steps"] == 2
    assert ledger["sessions"][0]["cpu_hours"] > 0 and ledger["sessions"][0]["state"] == "finished"
    assert float_dtypes(into) == {torch.bfloat16}
    (into / "README.md").write_text("# the card\n")

    # the next session: a fresh run from the tracked folder, then scored and snapshotted again
    train(into, data, tmp_path / "session2", steps=3)
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"gt": "x ^ { 2 }", "pred": "x ^ { 2 }"}, {"gt": "a + b", "pred": "a - b"}]))
    assert snapshot.main([str(tmp_path / "session2"), "--into", str(into), "--eval", str(preds)]) == 0
    ledger = json.loads((into / "sessions.json").read_text())
    assert [s["steps"] for s in ledger["sessions"]] == [2, 3] and ledger["total"]["steps"] == 5
    assert ledger["sessions"][1]["eval"]["exprate"] == 50.0 and ledger["sessions"][1]["eval"]["le1"] == 100.0
    curve = [json.loads(line) for line in (into / "learning_curve.jsonl").read_text().splitlines()]
    assert {e["stage"] for e in curve} == {1, 2} and max(e["total_step"] for e in curve) == 5
    assert (into / "learning_curve.png").is_file() and (into / "README.md").read_text() == "# the card\n"
    assert not (into.parent / "convmer.partial").exists() and not (into.parent / "convmer.old").exists()

    trained = AutoModelForImageTextToText.from_pretrained(tmp_path / "session2").state_dict()
    kept = AutoModelForImageTextToText.from_pretrained(into).state_dict()
    for name, tensor in trained.items():
        expected = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        assert torch.equal(kept[name].to(expected.dtype), expected), name


def test_a_checkpoint_folder_counts_its_own_steps(tmp_path):
    data = build_synthetic(tmp_path / "data", n=8)
    base = build_convmer(tmp_path / "base", seed=0, **TOY)
    train(base, data, tmp_path / "run", 2, "--save_steps", "1")
    ledger = snapshot.snapshot(tmp_path / "run" / "checkpoint-1", tmp_path / "into")
    assert ledger["sessions"][0]["steps"] == 1


def test_a_session_too_short_to_log_keeps_the_curve_so_far(tmp_path):
    data = build_synthetic(tmp_path / "data", n=8)
    base = build_convmer(tmp_path / "base", seed=0, **TOY)
    into = tmp_path / "into"
    train(base, data, tmp_path / "logged", 2)
    snapshot.snapshot(tmp_path / "logged", into)
    before = (into / "learning_curve.jsonl").read_text()
    train(into, data, tmp_path / "quiet", 1, "--logging_steps", "100")  # a GPU session's dry run on a CPU
    assert not (tmp_path / "quiet" / "learning_curve.jsonl").exists()
    snapshot.snapshot(tmp_path / "quiet", into)
    assert (into / "learning_curve.jsonl").read_text() == before and (into / "learning_curve.png").is_file()


def test_a_diverged_run_does_not_replace_the_kept_one(tmp_path, capsys):
    data = build_synthetic(tmp_path / "data", n=8)
    base = build_convmer(tmp_path / "base", seed=0, **TOY)
    train(base, data, tmp_path / "run", steps=1)
    into = tmp_path / "into"
    snapshot.snapshot(tmp_path / "run", into)
    kept = (into / "model.safetensors").read_bytes()
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "run")
    with torch.no_grad():
        model.model.encoder.stem.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "run")
    assert snapshot.main([str(tmp_path / "run"), "--into", str(into)]) == 2
    assert "non-finite weights (1 of its tensors, the first model.encoder.stem.weight" in capsys.readouterr().err
    assert (into / "model.safetensors").read_bytes() == kept
    assert len(json.loads((into / "sessions.json").read_text())["sessions"]) == 1


def test_what_is_not_a_run_gets_one_sentence(tmp_path, capsys):
    base = build_convmer(tmp_path / "base", seed=0, **TOY)  # a model folder, but never trained: no status.json
    assert snapshot.main([str(base), "--into", str(tmp_path / "into")]) == 2
    assert "status.json is missing" in capsys.readouterr().err
    assert snapshot.main([str(tmp_path / "nowhere"), "--into", str(tmp_path / "into")]) == 2
    assert "holds no saved model" in capsys.readouterr().err
    assert not (tmp_path / "into").exists()
    with pytest.raises(snapshot.SnapshotError):
        snapshot.snapshot(tmp_path / "nowhere", tmp_path / "into")


@pytest.mark.shared_data
def test_the_tracked_run_is_whole_small_and_reads_handwriting():
    ledger = json.loads((TRACKED / "sessions.json").read_text())
    sessions = ledger["sessions"]
    assert [s["session"] for s in sessions] == list(range(1, len(sessions) + 1))
    assert ledger["total"] == snapshot.totals(sessions) and all("eval" in s for s in sessions)
    curve = [json.loads(line) for line in (TRACKED / "learning_curve.jsonl").read_text().splitlines()]
    assert {e["stage"] for e in curve} == set(range(1, len(sessions) + 1))
    weights = TRACKED / "model.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024 and float_dtypes(TRACKED) == {torch.bfloat16}
    assert AutoModelForImageTextToText.from_pretrained(TRACKED).config.model_type == "convmer"
    metrics = slice_metrics(Recognizer.from_pretrained(str(TRACKED)), 100)
    assert metrics["edit_score"] >= TRACKED_EDIT_FLOOR, metrics
