"""Upstream-exact recognition metrics and the `python -m unimumer evaluate` command.

Uni-MuMER's protocol: split `gt` and `pred` on whitespace and take the token Levenshtein
distance d. ExpRate / <=1 / <=2 / <=3 are the percentages of samples with d <= 0..3; the edit
score is the mean of (1 - d / max(len gt, len pred)) in percent; BLEU-4 is nltk's
`corpus_bleu` with `SmoothingFunction().method4`, in percent; "CER" is upstream's definition,
sum of token distances / sum of ground-truth characters (the space-separated string, spaces
included) - not a character error rate in the usual sense, kept so results stay comparable.

Prediction files written by this package also say whether each answer was well formed (`structured`:
the tree / counts / correction log parsed; `warnings`: e.g. the tree disagrees with the LaTeX). When
they do, `well_formed` is the percentage of answers that parsed and raised no warning.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Iterable

from rapidfuzz.distance import Levenshtein

from unimumer.latex import tokenize

__all__ = ["EVALUATE_HELP", "KEYS", "PredictionFileError", "add_arguments", "add_cdm", "edit_distance",
           "load_predictions", "rounded", "score"]

KEYS = ("n", "exprate", "le1", "le2", "le3", "edit_score", "bleu4", "cer")


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two token lists (rapidfuzz, compiled)."""
    return Levenshtein.distance(a, b)


def _bleu4(references: list[list[str]], hypotheses: list[list[str]]) -> float:
    # nltk takes seconds to import: only `evaluate` pays for it, not every CLI start.
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    with warnings.catch_warnings():  # nltk warns about zero n-gram counts, e.g. one-token answers
        warnings.simplefilter("ignore")
        return corpus_bleu([[ref] for ref in references], hypotheses,
                           smoothing_function=SmoothingFunction().method4)


def score(records: Iterable[dict]) -> dict:
    """Metrics of `{gt, pred}` records: keys n, exprate, le1, le2, le3, edit_score, bleu4, cer, and
    well_formed when the records carry `structured` (this package's prediction files do).

    Everything is a percentage except n and cer (upstream's ratio, see the module docstring).
    """
    refs: list[list[str]] = []
    hyps: list[list[str]] = []
    within = [0, 0, 0, 0]
    similarity = 0.0
    total_distance = total_chars = 0
    checked = well_formed = 0
    for record in records:
        if "structured" in record:
            checked += 1
            well_formed += bool(record["structured"]) and not record.get("warnings") and not record.get("error")
        gt, pred = tokenize(record["gt"]), tokenize(record["pred"])
        d = edit_distance(gt, pred)
        for k in range(d, 4):
            within[k] += 1
        longest = max(len(gt), len(pred))
        similarity += 1 - d / longest if longest else 1.0
        total_distance += d
        total_chars += len(" ".join(gt))
        refs.append(gt)
        hyps.append(pred)
    n = len(refs)
    if n == 0:
        raise ValueError("There are no predictions to score.")
    metrics = {
        "n": n,
        "exprate": 100 * within[0] / n,
        "le1": 100 * within[1] / n,
        "le2": 100 * within[2] / n,
        "le3": 100 * within[3] / n,
        "edit_score": 100 * similarity / n,
        "bleu4": 100 * _bleu4(refs, hyps),
        "cer": total_distance / max(total_chars, 1),
    }
    if checked:
        metrics["well_formed"] = 100 * well_formed / checked
    return metrics


class PredictionFileError(ValueError):
    """A predictions file that cannot be scored; str(e) is one sentence."""


def _records(data: object, where: str) -> list[dict]:
    if isinstance(data, dict):  # a JSONL file of one line
        data = [data]
    if not isinstance(data, list):
        raise PredictionFileError(f"{where} must hold a list of {{gt, pred}} objects.")
    if not data:
        raise PredictionFileError(f"{where} holds no predictions.")
    for i, record in enumerate(data, 1):
        if not isinstance(record, dict):
            raise PredictionFileError(f"Record {i} of {where} is not a {{gt, pred}} object.")
        for key in ("gt", "pred"):
            if key not in record:
                raise PredictionFileError(f"Record {i} of {where} has no {key!r}.")
            if not isinstance(record[key], str):
                kind = type(record[key]).__name__
                raise PredictionFileError(f"Record {i} of {where}: {key!r} is a {kind}, not a string.")
    return data


def load_predictions(path: str | Path) -> list[dict]:
    """Records of a predictions file: a JSON list or JSON lines of `{gt, pred, ...}` objects.

    Raises PredictionFileError for an unreadable, empty or malformed file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
        raise PredictionFileError(f"Cannot read {path}: {reason}.") from None
    if not text.strip():
        raise PredictionFileError(f"{path} is empty.")
    try:
        return _records(json.loads(text), str(path))
    except json.JSONDecodeError:
        pass
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise PredictionFileError(
                    f"{path} is neither JSON nor JSON lines (line {number} does not parse).") from None
    return _records(records, str(path))


EVALUATE_HELP = """\
Score a predictions file against its ground truth, as Uni-MuMER does.

The file is a JSON list (or JSON lines) of objects with string fields "gt" and "pred"
(space-tokenised LaTeX, e.g. "\\frac { 1 } { 2 }"; other fields are ignored), such as
`python -m unimumer predict` writes.

Metrics (token Levenshtein distance d over whitespace tokens):
  ExpRate, <=1, <=2, <=3   percent of expressions with d = 0, <= 1, <= 2, <= 3
  edit score               mean of (1 - d / max(len gt, len pred)), percent
  BLEU-4                   nltk corpus_bleu, smoothing method 4, percent
  CER                      upstream's definition: sum of d / sum of ground-truth characters

With --cdm, also CDM (UniMERNet's Character Detection Matching, see docs/cdm.md): both sides
rendered with TeX Live, one colour per token, token boxes matched by position and shape
  CDM F1                   mean per-sample F1 of the matched boxes (0..1, as upstream prints it)
  ExpRate@CDM              percent of expressions whose CDM F1 is 1 (renders the same)
A side that cannot be drawn scores 0; the reasons are counted. Renderings are cached
($UNIMUMER_CDM_CACHE, default ~/.cache/unimumer/cdm) and made by a pool of processes.

Exit status 2 for a malformed or empty file, 1 when --cdm lacks pdflatex or gs.
"""

_ROWS = (("exprate", "ExpRate", "%"), ("le1", "<= 1 error", "%"), ("le2", "<= 2 errors", "%"),
         ("le3", "<= 3 errors", "%"), ("edit_score", "edit score", "%"), ("bleu4", "BLEU-4", ""),
         ("cer", "CER*", ""), ("well_formed", "well formed", "%"), ("cdm_f1", "CDM F1", ""),
         ("exprate_cdm", "ExpRate@CDM", "%"))


def format_table(path: str, metrics: dict) -> str:
    """The human-readable report printed without --json."""
    lines = [f"{path}: {metrics['n']} expressions"]
    lines += [f"  {label:<12}{metrics[key]:>9.4f} {unit}".rstrip() for key, label, unit in _ROWS if key in metrics]
    lines.append("  * upstream's CER: sum of token edit distances / sum of ground-truth characters")
    if metrics.get("cdm_failed"):
        reasons = ", ".join(f"{reason} ({count})" for reason, count in metrics["cdm_failures"].items())
        lines.append(f"  CDM scored {metrics['cdm_failed']} expressions 0, a side could not be drawn: {reasons}")
    return "\n".join(lines)


def rounded(metrics: dict) -> dict:
    """Metrics as `evaluate --json` prints them: numbers to 4 decimals, counts as they are."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def add_cdm(metrics: dict, records: list[dict], workers: int | None = None, cache: bool | Path = True) -> dict:
    """`metrics` with cdm_f1, exprate_cdm, cdm_failed and cdm_failures of `records` added.

    Raises unimumer.cdm.RendererMissing without TeX Live / Ghostscript.
    """
    from unimumer.cdm import cdm_score

    summary, _ = cdm_score(records, workers=workers, cache_dir=cache)
    return {**metrics, **{k: summary[k] for k in ("cdm_f1", "exprate_cdm", "cdm_failed", "cdm_failures")}}


def run(args: argparse.Namespace) -> int:
    try:
        records = load_predictions(args.predictions)
        metrics = score(records)
    except PredictionFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.cdm:
        from unimumer.cdm import RendererMissing

        try:
            metrics = add_cdm(metrics, records, args.cdm_workers, args.cdm_cache or not args.no_cdm_cache)
        except RendererMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(rounded(metrics)))
    else:
        print(format_table(args.predictions, metrics))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m unimumer evaluate`; sets `run`."""
    parser.add_argument("predictions", metavar="PRED.json",
                        help="predictions file: JSON list or JSON lines of {gt, pred, ...}")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (n, exprate, le1, le2, le3, edit_score, bleu4, cer, and "
                             "well_formed when the file records it; with --cdm also cdm_f1, exprate_cdm, "
                             "cdm_failed, cdm_failures) instead of the table")
    parser.add_argument("--cdm", action="store_true",
                        help="also score CDM F1 and ExpRate@CDM (needs pdflatex and gs; see docs/cdm.md)")
    parser.add_argument("--cdm-workers", type=_positive, metavar="N",
                        help="processes rendering and matching for --cdm (default: the CPU count)")
    parser.add_argument("--cdm-cache", type=Path, metavar="DIR",
                        help="folder of cached renderings (default $UNIMUMER_CDM_CACHE or ~/.cache/unimumer/cdm)")
    parser.add_argument("--no-cdm-cache", action="store_true", help="render everything afresh and keep nothing")
    parser.set_defaults(run=run)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)
