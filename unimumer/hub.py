"""Which checkpoint to load: a folder, the bundled offline model, or a Hugging Face Hub id.

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

DEFAULT_MODEL = "phxember/Uni-MuMER-Qwen2.5-VL-3B"
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "bundled"
ENV_VAR = "UNIMUMER_MODEL"
BUNDLED = "bundled"
# Measured in the bundled model's card; said with every notice so users expect its many warnings.
_LESS_ACCURATE = ("it is much less accurate than the released 3B model: its Tree-CoT and counts often disagree "
                  "with its answer, and its error correction spoils more readings than it fixes.")
BUNDLED_NOTICE = (
    "The Hugging Face Hub cannot be reached, so the small offline model bundled with Uni-MuMER is answering; "
    + _LESS_ACCURATE
)
BUNDLED_REQUESTED_NOTICE = "The small offline model bundled with Uni-MuMER is answering, as requested; " + _LESS_ACCURATE
# What a checkpoint needs: weights, configs, tokenizer, chat template (not the training states).
MODEL_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
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


def resolve_model(name: str | None = None) -> ModelChoice:
    """Decide what to load: `name`, else $UNIMUMER_MODEL, else the released 3B model.

    "bundled" is the offline model; an existing folder is used as is; a Hub id comes from the local
    cache when it is there, else from the Hub if it answers. Raises ModelLoadError (one sentence).
    """
    explicit = name or os.environ.get(ENV_VAR) or None
    name = explicit or DEFAULT_MODEL
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
        raise ModelLoadError(f"{name!r} is neither an existing folder nor a Hugging Face Hub model id (owner/name).")
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
