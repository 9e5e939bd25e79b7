"""unimumer.hub: choosing the checkpoint, and failing fast when the Hub cannot be reached."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unimumer import hub
from unimumer.hub import (
    BUNDLED_NOTICE, BUNDLED_REQUESTED_NOTICE, DEFAULT_MODEL, ModelLoadError, hub_reachable, resolve_model,
)

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://hub.invalid"  # .invalid never resolves (RFC 2606): no traffic leaves the machine


@pytest.fixture
def no_bundled(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "BUNDLED_MODEL_DIR", tmp_path / "no-bundled-model")
    monkeypatch.delenv(hub.ENV_VAR, raising=False)


@pytest.fixture
def bundled(monkeypatch, tiny_model_dir):
    monkeypatch.setattr(hub, "BUNDLED_MODEL_DIR", tiny_model_dir)
    monkeypatch.delenv(hub.ENV_VAR, raising=False)


def _fake_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """A huggingface_hub cache entry for `repo_id` at one commit, as snapshot_download leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_local_folder(tiny_model_dir, no_bundled):
    choice = resolve_model(str(tiny_model_dir))
    assert (choice.path, choice.source, choice.notice, choice.is_bundled) == (str(tiny_model_dir), "local", None, False)


def test_env_var_names_the_model(tiny_model_dir, no_bundled, monkeypatch):
    monkeypatch.setenv(hub.ENV_VAR, str(tiny_model_dir))
    assert resolve_model(None).path == str(tiny_model_dir)


def test_folder_without_checkpoint(tmp_path, no_bundled):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="not a model checkpoint folder"):
        resolve_model(str(tmp_path))


def test_not_a_model_name(no_bundled):
    with pytest.raises(ModelLoadError, match="neither an existing folder, a Hugging Face Hub model id"):
        resolve_model("no such thing")


def test_bundled_missing_is_said_clearly(no_bundled):
    with pytest.raises(ModelLoadError, match="No bundled offline model is installed"):
        resolve_model("bundled")


def test_bundled(bundled, tiny_model_dir):
    choice = resolve_model("bundled")
    assert choice.is_bundled and choice.path == str(tiny_model_dir) and choice.notice == BUNDLED_REQUESTED_NOTICE


def test_offline_default_falls_back_to_bundled(bundled):
    start = time.perf_counter()
    choice = resolve_model(None)  # conftest sets HF_HUB_OFFLINE=1
    assert time.perf_counter() - start < 2
    assert choice.is_bundled and choice.notice == BUNDLED_NOTICE


def test_offline_default_without_bundled(no_bundled):
    with pytest.raises(ModelLoadError, match="cannot be reached.*no bundled offline model"):
        resolve_model(None)


def test_offline_explicit_hub_id_is_an_error(bundled):
    with pytest.raises(ModelLoadError, match=f"cannot be reached and {DEFAULT_MODEL} is not in the local cache"):
        resolve_model(DEFAULT_MODEL)


def test_cached_hub_model_needs_no_network(no_bundled, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    files = {"config.json": b"{}", "model.safetensors.index.json": json.dumps(index).encode(),
             "model-00001-of-00002.safetensors": b"x"}
    snapshot = _fake_cache(tmp_path, "owner/model", files)
    assert hub.cached_snapshot("owner/model") is None  # a shard is missing: not usable
    (snapshot / "model-00002-of-00002.safetensors").write_bytes(b"x")
    choice = resolve_model("owner/model")
    assert (choice.source, Path(choice.path)) == ("hub-cache", snapshot)


def test_hub_reachable_honours_offline_flag_and_endpoint(monkeypatch):
    from huggingface_hub import constants

    assert hub_reachable() is False  # HF_HUB_OFFLINE=1 from conftest
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    start = time.perf_counter()
    assert hub_reachable(timeout=2.0) is False
    assert time.perf_counter() - start < 3


def test_unreachable_hub_returns_within_ten_seconds(tmp_path):
    """Acceptance: no HF_HUB_OFFLINE and no network: `predict` says so in one sentence within 10 s
    (not minutes of download retries). Timed after the imports, in a fresh process."""
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64), "white").save(image)
    script = (
        "import sys, time\n"
        "import unimumer.recognizer\n"
        "from unimumer.cli import main\n"
        "start = time.perf_counter()\n"
        f"code = main(['predict', {str(image)!r}, '--model', {DEFAULT_MODEL!r}])\n"
        "print(code, round(time.perf_counter() - start, 3))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", hub.ENV_VAR)}
    env.update(HF_ENDPOINT=UNREACHABLE, HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    code, seconds = done.stdout.split()
    assert code == "1" and float(seconds) < 10, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: The Hugging Face Hub cannot be reached and {DEFAULT_MODEL} is not in the local cache; "
        "connect to the internet, or pass a local checkpoint folder or 'bundled'."
    )


def test_short_names_stand_for_the_released_models(no_bundled, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    files = {"config.json": b"{}", "model.safetensors": b"x"}
    snapshot = _fake_cache(tmp_path, hub.ZOO["qwen3.5-2b"], files)
    for name in ("qwen3.5-2b", "Qwen3.5-2B", " qwen3.5-2b "):
        choice = resolve_model(name)
        assert (choice.name, choice.source, Path(choice.path)) == (hub.ZOO["qwen3.5-2b"], "hub-cache", snapshot)
    monkeypatch.setenv(hub.ENV_VAR, "qwen3.5-2b")
    assert resolve_model(None).name == hub.ZOO["qwen3.5-2b"]
    assert hub.cached_models() == ["qwen3.5-2b"] and hub.short_name(hub.ZOO["qwen3.5-2b"]) == "qwen3.5-2b"
    assert set(hub.ZOO) == {"3b", "7b", "qwen3-vl-2b", "qwen3-vl-4b", "qwen3.5-2b", "qwen3.5-4b"}
    assert all(repo.startswith("phxember/Uni-MuMER-") for repo in hub.ZOO.values())
    assert hub.DEFAULT_MODEL in hub.ZOO.values()
    with pytest.raises(ModelLoadError, match=f"cannot be reached and {hub.ZOO['7b']} is not in the local cache"):
        resolve_model("7B")  # a short name is an explicit choice: no silent fallback
    with pytest.raises(ModelLoadError, match="short name"):
        resolve_model("qwen9")


def test_a_folder_named_like_a_short_name_is_the_folder(tiny_model_dir, no_bundled, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    (tiny_model_dir.parent / "3b").symlink_to(tiny_model_dir)
    assert resolve_model("3b").source == "local"
