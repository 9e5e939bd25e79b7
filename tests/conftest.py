"""Test-wide setup. Runs before any test module imports torch or huggingface_hub.

HF_HUB_OFFLINE is read once, when huggingface_hub is imported, so it must be set
here; one OpenMP thread because two spinning threads on this 2-core machine made
steps ~50x slower under load.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; the calling test is skipped when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A randomly initialised `unimumer.tiny` checkpoint, built once per session."""
    from unimumer.tiny import build_tiny

    out = tmp_path_factory.mktemp("tiny-model")
    build_tiny(out, seed=0)
    return out


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    """A random `unimumer.tiny` checkpoint of every released family (Qwen2.5-VL, Qwen3-VL, Qwen3.5)."""
    from unimumer.tiny import FAMILIES, build_tiny

    return {family: build_tiny(tmp_path_factory.mktemp(f"tiny-{family}"), seed=0, family=family) for family in FAMILIES}
