"""A folder of renderings keyed by what was rendered, so a second evaluation renders nothing twice.

One small JSON file per coloured formula, under a two-letter shard; the key hashes the renderer's
version with the coloured LaTeX, so a change to how formulas are set or read starts afresh.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from unimumer.cdm.render import Rendering

__all__ = ["RENDERER_VERSION", "RenderCache", "default_cache_dir"]

RENDERER_VERSION = "cdm-tex-2"  # bump when render.py or colour.py change what a formula renders to


def default_cache_dir() -> Path:
    """$UNIMUMER_CDM_CACHE, else $XDG_CACHE_HOME/unimumer/cdm, else ~/.cache/unimumer/cdm."""
    if os.environ.get("UNIMUMER_CDM_CACHE"):
        return Path(os.environ["UNIMUMER_CDM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "unimumer" / "cdm"


class RenderCache:
    """get / put Renderings by coloured LaTeX; `folder=None` keeps nothing."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    def _path(self, latex: str) -> Path:
        key = hashlib.sha256(f"{RENDERER_VERSION}\n{latex}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.json"

    def get(self, latex: str) -> Rendering | None:
        if self.folder is None:
            return None
        try:
            return Rendering.from_json(json.loads(self._path(latex).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):  # absent, or a file cut short: render again
            return None

    def put(self, latex: str, rendering: Rendering) -> None:
        if self.folder is None:
            return
        path = self._path(latex)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(rendering.to_json()), encoding="utf-8")
            temporary.replace(path)  # atomic: parallel evaluations never read half a file
        except OSError:
            pass  # a read-only or full disk costs speed, not the result
