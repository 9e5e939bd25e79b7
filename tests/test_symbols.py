"""train.symbols: one record per segmented CROHME symbol, context-only symbols left out, resumable CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import ROOT, shared_path
from train.readers import Sample, Skip
from train.records import parse_record, read_jsonl
from train.symbols import file_strings, file_symbols

INK = """<ink xmlns="http://www.w3.org/2003/InkML">
<annotation type="truth">$\\sqrt{x}&lt;1.$</annotation>
<trace id="0">0 0, 4 10, 8 -12, 30 -12</trace>
<trace id="1">12 0, 20 8</trace>
<trace id="2">20 0, 12 8</trace>
<trace id="3">36 0, 30 4, 36 8</trace>
<trace id="4">44 0, 44 9</trace>
<trace id="5">47 9</trace>
<traceGroup id="g">
  <annotation type="truth">Segmentation</annotation>
  <traceGroup id="g0"><annotation type="truth">\\sqrt</annotation><traceView traceDataRef="0"/></traceGroup>
  <traceGroup id="g1"><annotation type="truth">x</annotation>
    <traceView traceDataRef="1"/><traceView traceDataRef="2"/></traceGroup>
  <traceGroup id="g2"><annotation type="truth">\\lt</annotation><traceView traceDataRef="3"/></traceGroup>
  <traceGroup id="g3"><annotation type="truth">1</annotation><traceView traceDataRef="4"/></traceGroup>
  <traceGroup id="g4"><annotation type="truth">.</annotation><traceView traceDataRef="5"/></traceGroup>
</traceGroup>
</ink>
"""


def test_symbols_of_one_ink(tmp_path):
    path = tmp_path / "e1.inkml"
    path.write_text(INK)
    samples = file_symbols(path)
    assert all(isinstance(s, Sample) for s in samples)
    # \sqrt (content elsewhere) and the dot (meaningless alone) are left out; \lt is normalised.
    assert [(s.id, s.latex) for s in samples] == [("e1_s1", "x"), ("e1_s2", "<"), ("e1_s3", "1")]
    assert [len(s.ink.traces) for s in samples] == [2, 1, 1]
    assert samples[0].ink.traces[0].tolist() == [[12, 0], [20, 8]]


def test_symbol_strings_of_one_ink(tmp_path):
    path = tmp_path / "e1.inkml"
    path.write_text(INK)
    strings = file_strings(path, 4, seed=3)
    again = file_strings(path, 4, seed=3)
    assert [s.id for s in strings] == [f"e1_t{n}" for n in range(4)]
    assert [s.latex for s in strings] == [s.latex for s in again]  # the same seed, the same strings
    assert all(np.array_equal(a, b) for s, t in zip(strings, again) for a, b in zip(s.ink.traces, t.ink.traces))
    for string in strings:
        tokens = string.latex.split()
        assert 2 <= len(tokens) <= 3 and len(set(tokens)) == len(tokens) and set(tokens) <= {"x", "<", "1"}
        # left to right in answer order: each symbol's ink starts right of where the previous one ended
        widths = {"x": 2, "<": 1, "1": 1}  # traces per symbol
        spans, start = [], 0
        for token in tokens:
            points = np.concatenate(string.ink.traces[start:start + widths[token]])
            spans.append((points[:, 0].min(), points[:, 0].max()))
            start += widths[token]
        assert start == len(string.ink.traces)
        assert all(right < next_left for (_, right), (next_left, _) in zip(spans, spans[1:]))
    (tmp_path / "one.inkml").write_text(INK.replace('<traceGroup id="g1">', '<traceGroup id="g1x">')
                                        .replace("<annotation type=\"truth\">x</annotation>", "")
                                        .replace("\\lt", "\\sqrt").replace(">1<", ">\\sqrt<"))
    assert file_strings(tmp_path / "one.inkml", 4) == []  # fewer than two usable symbols: no strings


def test_unreadable_ink_is_a_skip(tmp_path):
    path = tmp_path / "broken.inkml"
    path.write_text(INK[:-20])
    [skip] = file_symbols(path)
    assert isinstance(skip, Skip) and skip.reason == "bad_ink"


def run_cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "train.symbols", *map(str, args), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def real_inks(folder: Path, n: int) -> Path:
    """A folder with the first n CROHME training inks of one collection."""
    folder.mkdir()
    for file in sorted(shared_path("crohme", "inkml", "train", "KAIST").glob("*.inkml"))[:n]:
        (folder / file.name).write_bytes(file.read_bytes())
    return folder


def test_cli_on_real_crohme_ink_and_rerun(tmp_path):
    folder = real_inks(tmp_path / "ink", 12)
    out = tmp_path / "out"
    first = run_cli(folder, "--out", out, "--workers", "2")
    assert first.returncode == 0, first.stderr
    records = read_jsonl(out / "crohme_symbols_vanilla.jsonl")
    assert len(records) > 12 and f"crohme_symbols: {len(records)} symbols" in first.stdout
    for record in records:
        images, prompt, target = parse_record(record)
        assert target.split() and target not in {".", ",", "\\sqrt"}
        with Image.open(out / images[0]) as image:
            assert image.height <= 64 + 2 * 8 + 3 and image.getextrema()[0] < 64  # the symbol's ink is there
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["crohme_symbols_vanilla"]["file_name"] == "crohme_symbols_vanilla.jsonl"
    again = run_cli(folder, "--out", out, "--workers", "1")
    assert again.returncode == 0 and read_jsonl(out / "crohme_symbols_vanilla.jsonl") == records


def test_cli_strings(tmp_path):
    result = run_cli(real_inks(tmp_path / "ink", 6), "--out", tmp_path / "out", "--strings", "2", "--workers", "1")
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "out" / "crohme_strings_vanilla.jsonl")
    assert len(records) == 12 and "12 symbol strings" in result.stdout
    assert all(2 <= len(parse_record(r)[2].split()) for r in records)


def test_cli_missing_folder_is_a_usage_error(tmp_path):
    result = run_cli(tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.returncode == 2 and "does not exist" in result.stderr
