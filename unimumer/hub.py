"""Which checkpoint to load: a folder, the bundled offline model, a Hugging Face Hub id or a short name.

Short names (`ZOO`) name the released Uni-MuMER checkpoints (upstream's README, "Model Zoo"): `3b`, `7b`,
`qwen3-vl-2b`, `qwen3-vl-4b`, `qwen3.5-2b`, `qwen3.5-4b`; `bundled` is the small offline model.

huggingface_hub retries for ~23 s per file when the Hub cannot be reached (139 s for a processor), so
`resolve_model` asks the Hub host's DNS first (milliseconds). Unreachable and nothing cached: the
default model falls back to the small offline model bundled with the package, with a plain notice;
a Hub id the user asked for explicitly is a `ModelLoadError` with one clear sentence.
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# The released checkpoints by short name, as upstream's README lists them (2026-04-13 release).
ZOO = {
    "3b": "phxember/Uni-MuMER-Qwen2.5-VL-3B",
    "7b": "phxember/Uni-MuMER-Qwen2.5-VL-7B",
    "qwen3-vl-2b": "phxember/Uni-MuMER-Qwen3-VL-2B",
    "qwen3-vl-4b": "phxember/Uni-MuMER-Qwen3-VL-4B",
    "qwen3.5-2b": "phxember/Uni-MuMER-Qwen3.5-2B",
    "qwen3.5-4b": "phxember/Uni-MuMER-Qwen3.5-4B",
}
DEFAULT_MODEL = ZOO["qwen3.5-2b"]  # why: README "Model zoo" and DESIGN-notes (accuracy, size, licence, speed)
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "bundled"
ENV_VAR = "UNIMUMER_MODEL"
BUNDLED = "bundled"
# Measured in the bundled model's card; said with every notice so users expect its many warnings.
_LESS_ACCURATE = ("it is much less accurate than the released models: its Tree-CoT and counts often disagree "
                  "with its answer, and its error correction spoils more readings than it fixes.")
BUNDLED_NOTICE = (
    "The Hugging Face Hub cannot be reached, so the small offline model bundled with Uni-MuMER is answering; "
    + _LESS_ACCURATE
)
BUNDLED_REQUESTED_NOTICE = "The small offline model bundled with Uni-MuMER is answering, as requested; " + _LESS_ACCURATE
TRAINING_RECORD = "unimumer_training.json"  # how this kit trained a checkpoint (train.finetune writes it)
# What a checkpoint needs: weights, configs, tokenizer, chat template (not the training states).
MODEL_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]  # includes TRAINING_RECORD
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ModelLoadError(RuntimeError):
    """The model cannot be found or loaded; str(error) is one sentence for the user."""


@dataclass(frozen=True)
class ModelChoice:
    """A resolved model: `path` is a local folder, or a Hub id still to download when `source == "hub"`."""

    name: str  # what was asked for (Hub id, folder, "bundled")
    path: str
    source: str  # "local", "bundled", "hub-cache" or "hub"
    notice: str | None = None  # plain sentence for the UI and logs

    @property
    def is_bundled(self) -> bool:
        return self.source == BUNDLED


def bundled_available() -> bool:
    return (BUNDLED_MODEL_DIR / "config.json").is_file()


def hub_reachable(timeout: float = 2.0) -> bool:
    """True when the Hub host (HF_ENDPOINT) resolves and accepts a connection within `timeout` seconds."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or _truthy(os.environ.get("HF_HUB_OFFLINE")):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    if not endpoint.hostname:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy knows; let huggingface_hub try
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    deadline = time.monotonic() + timeout
    addresses = _resolve(endpoint.hostname, port, timeout)
    for family, kind, proto, _, address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(remaining)
                sock.connect(address)
            return True
        except OSError:
            continue
    return False


def _resolve(host: str, port: int, timeout: float) -> list:
    """getaddrinfo with a timeout (it has none of its own): run it in a daemon thread."""
    found: list = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError:
            pass

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    return list(found)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def cached_snapshot(repo_id: str) -> str | None:
    """The local snapshot folder of a Hub model when config and all weights are cached, else None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=MODEL_FILES))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return str(folder) if is_checkpoint(folder) else None


def training_record(folder) -> dict | None:
    """The checkpoint's training record (what this kit's train.finetune wrote), or None: a released
    checkpoint has none, and an unreadable one counts as none."""
    path = Path(folder) / TRAINING_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def trained_on_crops(folder) -> bool:
    """Whether a checkpoint learned from images cropped to their ink: its training record says so, and
    records written before `crop_to_ink` existed come from runs that always cropped. Released checkpoints
    (no record) learned from whole images."""
    record = training_record(folder)
    return bool(record.get("crop_to_ink", True)) if record is not None else False


def trained_tasks(folder) -> frozenset[str] | None:
    """The task formats a checkpoint learned (its training record's `tasks`), or None when it does not say:
    the released checkpoints learned all five."""
    tasks = (training_record(folder) or {}).get("tasks")
    return frozenset(map(str, tasks)) if isinstance(tasks, list) else None


def short_name(name: str) -> str:
    """The zoo's short name of a Hub id (`phxember/Uni-MuMER-Qwen3.5-2B` -> `qwen3.5-2b`), else `name`."""
    return next((short for short, repo_id in ZOO.items() if repo_id == name), name)


def cached_models() -> list[str]:
    """Short names of the released models whose weights are all in the local Hub cache (no download)."""
    return [short for short, repo_id in ZOO.items() if cached_snapshot(repo_id)]


def is_checkpoint(folder: Path) -> bool:
    """A folder with a config and every weight file it names."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return False
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        return all((folder / shard).is_file() for shard in shards)
    return (folder / "model.safetensors").is_file()


def hub_id(name: str) -> str:
    """A short name of the zoo (any case) -> its Hub id; anything else unchanged."""
    return ZOO.get(name.strip().lower(), name)


def resolve_model(name: str | None = None) -> ModelChoice:
    """Decide what to load: `name`, else $UNIMUMER_MODEL, else the default released model (DEFAULT_MODEL).

    "bundled" is the offline model; an existing folder is used as is; a short name (ZOO) stands for its
    Hub id; a Hub id comes from the local cache when it is there, else from the Hub if it answers.
    Raises ModelLoadError (one sentence).
    """
    explicit = str(name) if name else os.environ.get(ENV_VAR) or None
    name = explicit or DEFAULT_MODEL
    if name.strip().lower() == BUNDLED:
        name = BUNDLED
    elif not Path(name).expanduser().exists():
        name = hub_id(name)
    if name == BUNDLED:
        if not bundled_available():
            raise ModelLoadError(
                "No bundled offline model is installed with this copy of Uni-MuMER; "
                "pass a checkpoint folder or a Hugging Face Hub id instead."
            )
        return ModelChoice(BUNDLED, str(BUNDLED_MODEL_DIR), BUNDLED, notice=BUNDLED_REQUESTED_NOTICE)
    path = Path(name).expanduser()
    if path.exists():
        if not is_checkpoint(path):
            raise ModelLoadError(f"{name} is not a model checkpoint folder (no config.json with its weights).")
        return ModelChoice(name, str(path), "local")
    if not _HUB_ID.match(name):
        raise ModelLoadError(
            f"{name!r} is neither an existing folder, a Hugging Face Hub model id (owner/name) nor a short name "
            f"({', '.join([*ZOO, BUNDLED])})."
        )
    cached = cached_snapshot(name)
    if cached:
        return ModelChoice(name, cached, "hub-cache")
    if hub_reachable():
        return ModelChoice(name, name, "hub")
    if explicit:
        raise ModelLoadError(
            f"The Hugging Face Hub cannot be reached and {name} is not in the local cache; "
            "connect to the internet, or pass a local checkpoint folder or 'bundled'."
        )
    if bundled_available():
        return ModelChoice(BUNDLED, str(BUNDLED_MODEL_DIR), BUNDLED, notice=BUNDLED_NOTICE)
    raise ModelLoadError(
        f"The Hugging Face Hub cannot be reached, {name} is not in the local cache and no bundled offline "
        "model is installed; connect to the internet or pass a local checkpoint folder."
    )


def download(choice: ModelChoice) -> str:
    """The local folder of `choice`, downloading it from the Hub first when needed (progress on stderr)."""
    if choice.source != "hub":
        return choice.path
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(choice.path, allow_patterns=MODEL_FILES)
    except Exception as error:  # huggingface_hub raises many types (HTTP, OS, repo not found)
        reason = _first_line(error)
        raise ModelLoadError(f"Could not download {choice.path} from the Hugging Face Hub: {reason}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
