"""One learning curve over consecutive training stages: loss and in-training ExpRate, as JSONL and a plot.

    python -m train.curve runs/bundled/stage1 runs/bundled/stage2 runs/bundled/stage3 --out unimumer/bundled

    # continue an earlier merged curve with a new stage
    python -m train.curve unimumer/bundled/learning_curve.jsonl runs/bundled/stage5 --out unimumer/bundled

Reads each run folder's learning_curve.jsonl (written by `python -m train.finetune`), in the order given,
and numbers the steps across stages (`total_step`); a .jsonl file given instead is an earlier output of this
command, whose stages come first. Writes OUT/learning_curve.jsonl (every entry with its `stage`, 1-based)
and OUT/learning_curve.png: training loss on the left axis, ExpRate and ≤1-error rate on the held-out
slice (`eval_data` / `exprate_limit` of the configs) on the right, stage boundaries dotted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from train.records import read_jsonl, write_jsonl

CURVE_NAME = "learning_curve.jsonl"  # what train.finetune writes in its output folder


def merge_curves(sources: list[Path]) -> list[dict]:
    """The entries of every run's learning curve (or earlier merged curve), with `stage` and `total_step`
    numbered across them."""
    merged, stage, offset = [], 0, 0
    for source in map(Path, sources):
        if source.suffix == ".jsonl" and source.is_file():  # an earlier merge: its stages as they are
            entries = [{**e, "stage": stage + e["stage"], "total_step": offset + e["total_step"]}
                       for e in read_jsonl(source)]
        else:
            path = source / CURVE_NAME
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: is {source} a train.finetune output folder?")
            entries = [{"stage": stage + 1, "total_step": offset + e["step"], **e} for e in read_jsonl(path)]
        merged += entries
        stage = max((e["stage"] for e in entries), default=stage)
        offset = max((e["total_step"] for e in entries), default=offset)
    return merged


def plot_curve(entries: list[dict], path: Path) -> None:
    """Loss (left axis) and ExpRate / ≤1 in percent (right axis) against total steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    losses = [(e["total_step"], e["loss"]) for e in entries if "loss" in e]
    rates = [(e["total_step"], e["exprate"], e.get("exprate_le1")) for e in entries if "exprate" in e]
    fig, loss_axis = plt.subplots(figsize=(8, 4), dpi=100)
    if losses:
        loss_axis.plot(*zip(*losses), color="tab:blue", linewidth=1, label="training loss")
    loss_axis.set_xlabel("training step (all stages, batch 16)")
    loss_axis.set_ylabel("loss", color="tab:blue")
    rate_axis = loss_axis.twinx()
    if rates:
        steps = [r[0] for r in rates]
        rate_axis.plot(steps, [r[1] for r in rates], "o-", color="tab:red", label="ExpRate")
        if all(r[2] is not None for r in rates):
            rate_axis.plot(steps, [r[2] for r in rates], "s--", color="tab:orange", label="≤ 1 error")
        rate_axis.legend(loc="upper right")
    rate_axis.set_ylabel("held-out rate (%)", color="tab:red")
    rate_axis.set_ylim(bottom=0)
    ends = {}
    for e in entries:
        ends[e["stage"]] = max(ends.get(e["stage"], 0), e["total_step"])
    for stage, end in sorted(ends.items())[:-1]:
        loss_axis.axvline(end, color="grey", linestyle=":", linewidth=1)
    loss_axis.set_title(f"Learning curve over {len(ends)} stage(s)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="train.finetune output folders (or an earlier merged .jsonl), in "
                        "training order")
    parser.add_argument("--out", required=True, help="folder for learning_curve.jsonl and learning_curve.png")
    args = parser.parse_args(argv)
    try:
        entries = merge_curves(args.runs)
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / CURVE_NAME, entries)
    plot_curve(entries, out / "learning_curve.png")
    print(f"{len(entries)} entries from {len(args.runs)} stage(s) -> {out / CURVE_NAME}, {out / 'learning_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
