"""ShareGPT training records and the on-disk layout of a built data folder.

A data folder `DIR` holds `DIR/<name>_<task>.jsonl` (one record per line, image paths relative to DIR),
the images, `dataset_info.json` (LLaMA-Factory's dataset registry, loadable as is with
`dataset_dir=DIR`) and `stats.json` (per dataset name: what was kept and what was skipped, by reason).
Several builds may share a folder: both JSON files are merged under a lock, never overwritten blindly.
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from unimumer.tasks import TASKS, human_prompt, mark_errors, task_target

# LLaMA-Factory's description of our records (its "sharegpt" formatting with ShareGPT role names).
SHAREGPT_FORMAT = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "images": "images"},
    "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
}
IMAGE_MARK = "<image>"
# Optional record key: the start of the gpt answer that the model is shown but not taught (train.dataset);
# LLaMA-Factory ignores it and learns the whole answer.
GIVEN = "given"


def dataset_name(entry: str) -> str:
    """The dataset of a records entry named `<dataset>_<task>` (`crohme_tree` -> `crohme`, `edl6_error_find`
    -> `edl6`); an entry whose name ends in no task is its own dataset."""
    for task in TASKS:
        if entry.endswith("_" + task):
            return entry[: -len(task) - 1]
    return entry


def sharegpt_record(task: str, image: str, latex: str, *, candidate: str | None = None) -> dict:
    """One training record: the task's prompt about `image` and its target for the ground truth `latex`.

    error_find / error_fix need the model's wrong `candidate`; the error_fix prompt shows it marked.
    Raises unimumer.tasks.MalformedLatexError when the tree or count target cannot be built.
    """
    if task == "error_find":
        prompt = human_prompt(task, candidate=candidate)
    elif task == "error_fix":
        prompt = human_prompt(task, marked=mark_errors(candidate, latex))
    else:
        prompt = human_prompt(task)
    target = task_target(task, latex, candidate=candidate)
    return {
        "images": [image],
        "messages": [{"from": "human", "value": IMAGE_MARK + prompt}, {"from": "gpt", "value": target}],
    }


def follow_record(task: str, image: str, reading: str) -> dict:
    """A tree or count record for `reading` whose chain (all but the final LaTeX line) is `given`: shown to the
    model at the start of its answer, not learned (train.dataset). Raises MalformedLatexError like
    sharegpt_record."""
    record = sharegpt_record(task, image, reading)
    answer = record["messages"][1]["value"]
    return {**record, GIVEN: answer[: answer.rindex("\n") + 1]}


def parse_record(record: dict) -> tuple[list, str, str]:
    """(images, human text, gpt text) of a ShareGPT record in either spelling.

    Accepts `messages` + `images` (ours, LLaMA-Factory) and `conversations` + `image` (the released
    parquet), roles `from`/`value` or `role`/`content`. Raises ValueError when it is not such a record.
    """
    if not isinstance(record, dict):
        raise ValueError("the record is not a JSON object")
    # `or`, not a default: a parquet table with both spellings has the absent one as None.
    messages = record.get("messages") or record.get("conversations")
    if not isinstance(messages, list):
        raise ValueError("the record has no messages / conversations list")
    human = gpt = None
    for message in messages:
        if not isinstance(message, dict):
            raise ValueError("a message is not an object")
        role = message.get("from") or message.get("role")
        text = message.get("value") if message.get("value") is not None else message.get("content")
        if role in ("human", "user") and human is None:
            human = text
        elif role in ("gpt", "assistant") and gpt is None:
            gpt = text
    if not isinstance(human, str) or not isinstance(gpt, str):
        raise ValueError("the record lacks a human or a gpt message")
    images = record.get("images") if record.get("images") is not None else record.get("image")
    images = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
    return images, human, gpt


def read_jsonl(path) -> list[dict]:
    """All records of a JSONL file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_atomic(path, data: str | bytes) -> None:
    """Write a whole file so that readers (and a kill) only ever see the old or the new content."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj) -> None:
    write_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path, records) -> int:
    """Write records as JSON Lines atomically; returns how many."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    write_atomic(path, "".join(lines))
    return len(lines)


@contextmanager
def _locked(out_dir: Path):
    """An exclusive lock on the folder's registry files (two builds may finish at once)."""
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _merge(path: Path, update: dict, drop: tuple[str, ...] = ()) -> None:
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        current = {}
    for key in drop:
        current.pop(key, None)
    current.update(update)
    write_json(path, dict(sorted(current.items())))


def register(out_dir, name: str, files: dict[str, str], stats: dict, stale: tuple[str, ...] = ()) -> None:
    """Record dataset `name` in DIR/dataset_info.json (one entry per task file) and DIR/stats.json.

    `files` maps a dataset entry name (e.g. `crohme_tree`) to its JSONL file name; `stale` lists entry
    names of an earlier build of `name` to remove.
    """
    out_dir = Path(out_dir)
    with _locked(out_dir):
        _merge(out_dir / "dataset_info.json", {k: {"file_name": f, **SHAREGPT_FORMAT} for k, f in files.items()},
               drop=stale)
        _merge(out_dir / "stats.json", {name: stats})
