"""What the benchmarks share: the repository on sys.path and the reference predictions in ../shared/data."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def parse_data_folder(description: str) -> Path:
    """The `--data` option every benchmark takes (default ../shared/data)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the reference data folder")
    return parser.parse_args().data


def reference_records(data: Path) -> list[dict] | None:
    """Every record of reference_preds/*_pred.json; None (after printing a skip line) when absent."""
    files = sorted((data / "reference_preds").glob("*_pred.json"))
    if not files:
        print(json.dumps({"skipped": f"no reference predictions under {data}"}))
        return None
    return [record for path in files for record in json.loads(path.read_text())]
