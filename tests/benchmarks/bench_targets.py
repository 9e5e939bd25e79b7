"""Targets per second for the tree, count and EDL formats over all reference ground truths.

Run: .venv/bin/python tests/benchmarks/bench_targets.py [--data ../shared/data]
Prints one JSON line (also the number of well-formed / malformed ground truths).
"""
from __future__ import annotations

import json
import time

from reference import parse_data_folder, reference_records  # also puts the repository on sys.path

from unimumer.tasks import MalformedLatexError, correction_log, count_target, mark_errors, tree_target  # noqa: E402


def rate(function, items) -> float:
    start = time.perf_counter()
    for item in items:
        function(*item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    data = parse_data_folder(__doc__)
    records = reference_records(data)
    if records is None:
        return
    gts = [record["gt"] for record in records]
    well_formed = []
    for gt in gts:
        try:
            tree_target(gt)
            well_formed.append((gt,))
        except MalformedLatexError:
            pass
    wrong = [(r["pred"], r["gt"]) for r in records if r["pred"].split() != r["gt"].split()]
    print(json.dumps({
        "ground_truths": len(gts),
        "well_formed": len(well_formed),
        "malformed": len(gts) - len(well_formed),
        "tree_targets_per_s": round(rate(tree_target, well_formed)),
        "count_targets_per_s": round(rate(count_target, [(gt,) for gt in gts])),
        "wrong_predictions": len(wrong),
        "edl_pairs_per_s": round(rate(lambda c, t: (mark_errors(c, t), correction_log(c, t)), wrong)),
    }))


if __name__ == "__main__":
    main()
