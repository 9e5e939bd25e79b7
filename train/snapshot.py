"""Carry a long training run from one session to the next through git.

    python -m train.snapshot runs/convmer/session --into checkpoints/convmer --eval preds/convmer_2014.json

A session's machine is not kept (runs/ and data/ go with it), so a run that needs many sessions, like the
next bundled ConvMer's, lives in the repository between them. This writes a finished train.finetune run
(or one of its checkpoint-N folders) into a tracked folder that the next session trains from
(`train.finetune --config train/configs/convmer/stage1.yaml --model checkpoints/convmer ...`):

- the model and processor, weights in bfloat16: half of float32, and the next session trains in float32
  from them (the rounding is one small nudge a session). The optimizer's state is not kept: each session
  warms up again, a warm restart of its cosine schedule;
- `learning_curve.jsonl` / `.png`: the curve of every session so far, one stage each (train.curve);
- `sessions.json`: a ledger, one entry a session (steps, CPU and wall hours, last loss, and the metrics of
  `--eval`, a prediction file of this run's model), and the totals over all sessions;
- the run's training record (unimumer_training.json); a README.md already in the folder is kept.

The folder is replaced whole (written beside it, then swapped), so a kill leaves the old one or the new one.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from train.curve import CURVE_NAME, merge_curves, plot_curve
from train.records import write_json, write_jsonl

LEDGER = "sessions.json"
STATUS = "status.json"  # what train.finetune writes in its output folder
RECORD = "unimumer_training.json"
KEPT = ("README.md",)  # hand-written files of the tracked folder, carried into the new one


class SnapshotError(ValueError):
    """A run that cannot be snapshotted; str(e) is one sentence."""


def checkpoint_step(model_dir: Path) -> int | None:
    """N of a train.finetune checkpoint-N folder; None for a run's own (final) folder."""
    prefix, _, step = model_dir.name.rpartition("-")
    return int(step) if prefix == PREFIX_CHECKPOINT_DIR and step.isdigit() else None


def run_folder(model_dir: Path) -> Path:
    """The train.finetune output folder of a model folder (itself, or the parent of a checkpoint-N)."""
    return model_dir.parent if checkpoint_step(model_dir) is not None else model_dir


def session_entry(model_dir: Path, evaluation: Path | None) -> dict:
    """This session's line of the ledger, from the run's status.json (and the scored --eval file)."""
    status_path = run_folder(model_dir) / STATUS
    try:
        status = json.loads(status_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SnapshotError(f"{status_path} is missing or unreadable: is {model_dir} a train.finetune run?") from None
    step = checkpoint_step(model_dir)
    entry = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "steps": status.get("step") if step is None else step,
        "state": status.get("state"),
        "cpu_hours": status.get("cpu_hours"),
        "wall_hours": status.get("wall_hours"),
        "loss": status.get("loss"),
    }
    if evaluation is not None:
        from unimumer.metrics import PredictionFileError, load_predictions, rounded, score

        try:
            metrics = rounded(score(load_predictions(evaluation)))
        except PredictionFileError as error:
            raise SnapshotError(str(error)) from None
        entry["eval"] = {"file": evaluation.name, **{k: metrics[k] for k in ("n", "exprate", "le1", "le2", "edit_score")}}
    return entry


def totals(sessions: list[dict]) -> dict:
    return {
        "sessions": len(sessions),
        "steps": sum(s.get("steps") or 0 for s in sessions),
        "cpu_hours": round(sum(s.get("cpu_hours") or 0.0 for s in sessions), 3),
        "wall_hours": round(sum(s.get("wall_hours") or 0.0 for s in sessions), 3),
    }


def snapshot(model_dir: Path, into: Path, evaluation: Path | None = None) -> dict:
    """Write `model_dir` (a finished run or a checkpoint-N) into `into` as described above; the new ledger."""
    import torch
    from transformers import AutoModelForImageTextToText

    from unimumer.processor import load_processor

    model_dir, into = Path(model_dir), Path(into)
    if not (model_dir / "config.json").is_file():
        raise SnapshotError(f"{model_dir} holds no saved model (config.json): give a finished run or a checkpoint-N.")
    entry = session_entry(model_dir, evaluation)
    ledger = json.loads((into / LEDGER).read_text(encoding="utf-8")) if (into / LEDGER).is_file() else {}
    sessions = ledger.get("sessions", []) + [{"session": len(ledger.get("sessions", [])) + 1, **entry}]

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.bfloat16)
    broken = [name for name, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
    if broken:  # a diverged run must not replace the run it continued
        raise SnapshotError(
            f"{model_dir} has non-finite weights ({len(broken)} of its tensors, the first {broken[0]}): not kept."
        )
    partial = into.with_name(into.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    load_processor(model_dir).save_pretrained(partial)
    run = run_folder(model_dir)
    if (run / RECORD).is_file():
        shutil.copy2(run / RECORD, partial / RECORD)
    for name in KEPT:
        if (into / name).is_file():
            shutil.copy2(into / name, partial / name)
    # the curve so far, and this run's (a run too short to log one adds nothing, but keeps the curve)
    sources = [into / CURVE_NAME] if (into / CURVE_NAME).is_file() else []
    sources += [run] if (run / CURVE_NAME).is_file() else []
    if sources:
        curve = merge_curves(sources)
        write_jsonl(partial / CURVE_NAME, curve)
        plot_curve(curve, partial / "learning_curve.png")
    ledger = {"sessions": sessions, "total": totals(sessions)}
    write_json(partial / LEDGER, ledger)

    old = into.with_name(into.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if into.exists():
        into.rename(old)
    partial.rename(into)
    shutil.rmtree(old, ignore_errors=True)
    return ledger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.snapshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished train.finetune output folder, or a checkpoint-N in one")
    parser.add_argument("--into", required=True, type=Path, help="the tracked folder to (re)write")
    parser.add_argument("--eval", type=Path, help="a prediction file of this run's model (train.evaluate --out), "
                        "scored into the ledger")
    args = parser.parse_args(argv)
    try:
        ledger = snapshot(args.run, args.into, args.eval)
    except SnapshotError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    last, total = ledger["sessions"][-1], ledger["total"]
    print(f"Session {last['session']} ({last['steps']} steps, {last['cpu_hours']} CPU hours) -> {args.into}; "
          f"all {total['sessions']} sessions: {total['steps']} steps, {total['cpu_hours']} CPU hours.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
