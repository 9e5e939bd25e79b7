"""CDM, UniMERNet's Character Detection Matching: a visual score of predicted LaTeX (see docs/cdm.md).

Each side is rendered with one colour per token (TeX Live + Ghostscript), each token's box is read
from its colour's pixels, the two box sets are matched (Hungarian assignment, then a layout
consistency check) and recall / precision / F1 follow. `cdm_score(records)` scores a predictions file.
"""
from unimumer.cdm.render import RendererMissing
from unimumer.cdm.score import CDM_KEYS, cdm_score

__all__ = ["CDM_KEYS", "RendererMissing", "cdm_score"]
