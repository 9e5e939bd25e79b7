"""Uni-MuMER: handwritten mathematical expression recognition with fine-tuned Qwen vision-language models.

Light modules (`tasks`, `latex`, `metrics`, `images`, `ink`) import without torch;
`Recognizer` is imported lazily so `from unimumer.tasks import ...` stays fast.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Recognizer", "RecognitionResult", "__version__"]


def __getattr__(name: str):
    if name in ("Recognizer", "RecognitionResult"):
        from unimumer import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'unimumer' has no attribute {name!r}")
