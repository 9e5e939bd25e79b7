"""normalize() calls per second over all reference ground truths and the CROHME InkML truths.

Run: .venv/bin/python tests/benchmarks/bench_normalize.py [--data ../shared/data]
Prints one JSON line: counts, how many raised LatexError, and the rate for each input kind.
"""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from reference import parse_data_folder, reference_records  # also puts the repository on sys.path

from unimumer.latex import LatexError, normalize  # noqa: E402

INKML = "{http://www.w3.org/2003/InkML}"


def inkml_truths(folder: Path) -> list[str]:
    truths = []
    for path in sorted(folder.rglob("*.inkml")):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:  # one training file is not well-formed XML
            continue
        truths += [a.text or "" for a in root.findall(INKML + "annotation") if a.get("type") == "truth"]
    return truths


def timed(texts: list[str]) -> tuple[float, int]:
    errors = 0
    start = time.perf_counter()
    for text in texts:
        try:
            normalize(text)
        except LatexError:
            errors += 1
    return len(texts) / (time.perf_counter() - start), errors


def main() -> None:
    data = parse_data_folder(__doc__)
    records = reference_records(data)
    if records is None:
        return
    gts = [record["gt"] for record in records]
    truths = inkml_truths(data / "crohme" / "inkml")
    gt_rate, gt_errors = timed(gts)
    truth_rate, truth_errors = timed(truths)
    all_rate, _ = timed(gts + truths)
    print(json.dumps({
        "benchmark": "normalize",
        "ground_truths": len(gts),
        "ground_truth_errors": gt_errors,
        "inkml_truths": len(truths),
        "inkml_truth_errors": truth_errors,
        "gt_normalize_per_s": round(gt_rate),
        "inkml_normalize_per_s": round(truth_rate),
        "normalize_per_s": round(all_rate),
    }))


if __name__ == "__main__":
    main()
