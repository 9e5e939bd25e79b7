"""train.build_data: layout, targets, skips by reason, multiprocessing, and resuming without duplicates."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, shared_path
from test_readers import png_bytes, write_ink_folder
from train import build_data
from train.build_data import build
from train.readers import Sample, Skip, read_source
from train.records import SHAREGPT_FORMAT, parse_record, read_jsonl
from unimumer.ink import Ink, parse_inkml
from unimumer.tasks import count_target, human_prompt, tree_target

TASKS = ("vanilla", "tree", "count")


def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "train.build_data", *map(str, args), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)


def check_folder(out: Path, name: str, tasks=TASKS) -> dict[str, list[dict]]:
    """Every record well-formed, its image opening, its targets equal to the task functions'; no duplicates."""
    records = {t: read_jsonl(out / f"{name}_{t}.jsonl") for t in tasks}
    for task, rows in records.items():
        images = [r["images"][0] for r in rows]
        assert len(images) == len(set(images)), f"duplicate {task} records"
        for record in rows:
            images, prompt, target = parse_record(record)
            assert prompt == "<image>" + human_prompt(task)
            latex = target.rsplit("\n", 1)[-1]
            expected = {"vanilla": latex, "tree": tree_target(latex), "count": count_target(latex)}[task]
            assert target == expected
    for image in {r["images"][0] for rows in records.values() for r in rows}:
        if image.endswith(".inkml"):  # --ink: the ink itself, drawn at training time
            assert parse_inkml(out / image).traces
            continue
        with Image.open(out / image) as im:
            im.load()
    return records


def test_build_fixture_folder(tmp_path):
    folder = write_ink_folder(tmp_path / "ink")
    out = tmp_path / "out"
    stats = build(read_source("crohme", folder), out, "ink", workers=1, progress=False)
    assert stats["kept"] == 2 and stats["inputs"] == 7
    assert stats["skipped"] == {"bad_xml": 1, "no_traces": 1, "bad_points": 1, "missing_truth": 1, "bad_latex": 1}
    records = check_folder(out, "ink")
    assert [r["images"][0] for r in records["vanilla"]] == ["images/ink/a_good.png", "images/ink/b_nested.png"]
    info = json.loads((out / "dataset_info.json").read_text())
    assert info == {f"ink_{t}": {"file_name": f"ink_{t}.jsonl", **SHAREGPT_FORMAT} for t in TASKS}
    saved = json.loads((out / "stats.json").read_text())["ink"]
    assert saved["skipped"]["bad_xml"] == 1 and saved["records"] == {"vanilla": 2, "tree": 2, "count": 2}
    assert "c_badxml" in saved["examples"]["bad_xml"][0]
    image = np.asarray(Image.open(out / "images/ink/a_good.png"))
    assert image.ndim == 2 and image.max() == 255 and image.min() < 64  # white page, dark strokes


def test_malformed_latex_keeps_vanilla(tmp_path):
    folder = write_ink_folder(tmp_path / "ink")
    labels = {"a_good": "\\frac { 1 } { 2", "b_nested": "{ x"}  # unbalanced: no tree / count target
    stats = build(read_source("crohme", folder, labels=labels), tmp_path / "out", "m", workers=1, progress=False)
    assert stats["kept"] == 2 and stats["records"]["vanilla"] == 2 and "tree" not in stats["records"]
    assert stats["records_skipped"]["tree"] == {"malformed_latex": 2}
    assert len(read_jsonl(tmp_path / "out/m_tree.jsonl")) == 0
    stats = build(read_source("crohme", folder, labels=labels), tmp_path / "out2", "m", tasks=("tree",),
                  workers=1, progress=False)
    assert stats["kept"] == 0 and stats["skipped"]["malformed_latex"] == 2


def synthetic_inks(n: int, seed: int = 0):
    """In-memory Ink samples (as train.synth makes them), with a duplicate id and a reader Skip mixed in."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        if i == 5:
            yield Skip("s5", "bad_entry", "made up")
            continue
        traces = [np.cumsum(rng.normal(size=(12, 2)), axis=0) for _ in range(1 + i % 3)]
        yield Sample(id=f"s{i if i != 7 else 6}", latex=f"x ^ {{ {i % 10} }}", ink=Ink(traces=traces))


def test_in_memory_inks_in_worker_processes(tmp_path):
    stats = build(synthetic_inks(150), tmp_path / "out", "syn", workers=2, progress=False, height=64)
    assert stats["inputs"] == 150 and stats["kept"] == 148
    assert stats["skipped"] == {"bad_entry": 1, "duplicate_id": 1}
    records = check_folder(tmp_path / "out", "syn")
    assert [r["images"][0] for r in records["vanilla"]][:3] == [f"images/syn/s{i}.png" for i in range(3)]
    assert Image.open(tmp_path / "out/images/syn/s0.png").height < 100  # height option reached render_ink


def test_resume_after_failure_truncates_torn_tail(tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    build(synthetic_inks(300), clean, "syn", workers=1, progress=False)
    out = tmp_path / "out"
    real, calls = build_data.process_chunk, []

    def dying(job, items):  # the third chunk never comes back, like a killed run
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job, items)

    monkeypatch.setattr(build_data, "process_chunk", dying)
    with pytest.raises(KeyboardInterrupt):
        build(synthetic_inks(300), out, "syn", workers=1, progress=False)
    monkeypatch.setattr(build_data, "process_chunk", real)
    assert not (out / "dataset_info.json").exists()  # registered only when complete
    state = json.loads((out / ".build/syn.json").read_text())
    assert state["inputs"] == 2 * build_data.CHUNK
    with open(out / "syn_tree.jsonl", "a") as f:
        f.write('{"images": ["images/syn/torn')  # half a record, as a kill mid-write leaves
    stats = build(synthetic_inks(300), out, "syn", workers=1, progress=False)
    assert stats["inputs"] == 300 and stats["kept"] == 298
    for task in TASKS:
        assert (out / f"syn_{task}.jsonl").read_bytes() == (clean / f"syn_{task}.jsonl").read_bytes()


def test_limit_extends_and_options_restart(tmp_path):
    out = tmp_path / "out"
    assert build(synthetic_inks(300), out, "syn", workers=1, limit=100, progress=False)["inputs"] == 100
    stats = build(synthetic_inks(300), out, "syn", workers=1, limit=200, progress=False)
    assert stats["inputs"] == 200 and len(read_jsonl(out / "syn_vanilla.jsonl")) == 198
    check_folder(out, "syn")
    stats = build(synthetic_inks(300), out, "syn", tasks=("vanilla",), workers=1, limit=50, progress=False)
    assert stats["inputs"] == 50 and stats["records"] == {"vanilla": 48}
    assert not (out / "syn_tree.jsonl").exists()
    assert set(json.loads((out / "dataset_info.json").read_text())) == {"syn_vanilla"}


def test_image_sources_copy_and_check(tmp_path):
    src = tmp_path / "hme"
    (src / "img").mkdir(parents=True)
    (src / "img" / "ok.jpg").write_bytes(png_bytes())  # content checked by decoding, suffix kept
    (src / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (src / "img" / "gone.png").write_bytes(png_bytes())
    (src / "caption.txt").write_text("ok\tx ^ { 2 }\ncorrupt\ty\ngone\tz\n")
    samples = list(read_source("hme100k", src))
    (src / "img" / "gone.png").unlink()  # vanishes between listing and building
    stats = build(samples, tmp_path / "out", "hme", workers=1, progress=False)
    assert stats["kept"] == 1 and stats["skipped"] == {"bad_image": 1, "missing_image": 1}
    assert (tmp_path / "out/images/hme/ok.jpg").read_bytes() == png_bytes()
    check_folder(tmp_path / "out", "hme")


def test_sharegpt_output_reads_back(tmp_path):
    out = tmp_path / "out"
    build(synthetic_inks(20), out, "syn", workers=1, progress=False)
    again = build(read_source("sharegpt", out), tmp_path / "again", "again", workers=1, progress=False)
    assert again["kept"] == 18 and again["skipped"] == {"not_vanilla": 36}
    assert [r["messages"][1] for r in read_jsonl(tmp_path / "again/again_count.jsonl")] == \
        [r["messages"][1] for r in read_jsonl(out / "syn_count.jsonl")]


def test_cli_crohme_limit_300_and_rerun(tmp_path):
    inks = shared_path("crohme", "inkml", "train")
    out = tmp_path / "crohme"
    args = ("crohme", inks, "--out", out, "--tasks", "vanilla,tree,count", "--limit", 300)
    start = time.perf_counter()
    first = run_cli(*args)
    first_seconds = time.perf_counter() - start
    assert first.returncode == 0, first.stderr
    stats = json.loads((out / "stats.json").read_text())["crohme"]
    assert stats["inputs"] == 300 and stats["kept"] >= 250
    records = check_folder(out, "crohme")
    assert all(len(rows) == stats["kept"] for rows in records.values())
    start = time.perf_counter()
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert time.perf_counter() - start < first_seconds / 2
    assert check_folder(out, "crohme") == records


def test_cli_kill_and_resume(tmp_path):
    """SIGKILL a real 2-process build mid-way; the re-run gives exactly the records of an uninterrupted build."""
    inks = shared_path("crohme", "inkml", "train", "KAIST")
    out, clean = tmp_path / "out", tmp_path / "clean"
    args = ("crohme", inks, "--tasks", "vanilla,count", "--limit", 384, "--workers", 2)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "train.build_data", *map(str, args), "--out", str(out),
                             "--no-progress"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    state = out / ".build" / "crohme.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["inputs"] >= 128:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 128 <= json.loads(state.read_text())["inputs"] < 384
    assert run_cli(*args, "--out", out).returncode == 0
    assert run_cli(*args, "--out", clean).returncode == 0
    for task in ("vanilla", "count"):
        assert (out / f"crohme_{task}.jsonl").read_text() == (clean / f"crohme_{task}.jsonl").read_text()
    assert json.loads((out / "stats.json").read_text())["crohme"]["inputs"] == 384
    check_folder(out, "crohme", ("vanilla", "count"))


def test_cli_errors_are_one_line(tmp_path):
    result = run_cli("crohme", tmp_path / "absent", "--out", tmp_path / "o")
    assert result.returncode == 2 and result.stderr.strip().startswith("error:") and "Traceback" not in result.stderr
    result = run_cli("crohme", tmp_path, "--out", tmp_path / "o", "--tasks", "vanilla,error_fix")
    assert result.returncode == 2 and "Tasks must be among" in result.stderr


def test_mathwriting_excerpt_builds(tmp_path):
    stats = build(read_source("mathwriting", shared_path("mathwriting_excerpt")), tmp_path, "mw", workers=1,
                  progress=False)
    assert stats["kept"] == 11 and not stats["skipped"]
    check_folder(tmp_path, "mw")


def test_ink_option_keeps_inkml_that_the_dataset_draws_as_sketches(tmp_path):
    import random

    from train.sketch import sketch_image
    from unimumer.images import prepare_image
    from unimumer.ink import SKETCH_PAGE

    samples = [s for s in synthetic_inks(12) if isinstance(s, Sample)][:8]
    stats = build(iter(samples), tmp_path / "out", "syn", workers=0, progress=False, keep_ink=True)
    assert stats["kept"] == 7  # the duplicate id is skipped
    records = check_folder(tmp_path / "out", "syn")
    first = tmp_path / "out" / records["vanilla"][0]["images"][0]
    assert first.suffix == ".inkml"
    ink = parse_inkml(first)
    assert np.allclose(np.concatenate(ink.traces), np.concatenate(samples[0].ink.traces), atol=0.006)
    plain = sketch_image(ink, random.Random(0), augment=False)
    varied = {sketch_image(ink, random.Random(seed)).tobytes() for seed in range(3)}
    assert plain.size == SKETCH_PAGE and len(varied) == 3
    crop = prepare_image(plain, max_pixels=32768, crop=True)
    assert crop.width * crop.height <= 32768 and crop.size != SKETCH_PAGE
