r"""Render coloured formulas with TeX Live and read each token's box from the pixels of its colour.

Many formulas go into one pdflatex document, one tight page each (the page is sized to the
formula's box, so no page is mostly blank), and Ghostscript rasterises the whole PDF in one call
at 200 dpi without anti-aliasing: every pixel is then either white or exactly one token's colour,
and a token's box is the extent of its pixels. The formula is set as UniMERNet sets it (article
class at 12 pt, display style, amsmath/amssymb/xcolor), and boxes follow its conventions: the image
is cropped to the ink with an 8-pixel margin and a box is the token's pixel extent widened by one.

TeX errors that TeX recovers from (an undefined command) do not stop a formula, as with UniMERNet's
per-formula pdflatex runs; a formula after which TeX gives up entirely is reported as failed and
the document is restarted after it, so one bad prediction never costs the others their page.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unimumer.cdm.colour import LEVELS, STEP

__all__ = ["DPI", "RendererMissing", "Rendering", "check_tools", "render_batch"]

DPI = 200
CROP_PAD = 8  # pixels of margin kept around the ink, as UniMERNet crops
TEX_SECONDS_PER_FORMULA = 0.5  # timeout budget; a formula normally takes a few milliseconds
# Predictions are untrusted text: TeX may read and write files only under its working folder.
TEX_ENV = {**os.environ, "openin_any": "p", "openout_any": "p"}
PREAMBLE = r"""\documentclass[12pt]{article}
\usepackage{amsmath}
\usepackage{amssymb}
\usepackage{bm}
\usepackage{xcolor}
\pagestyle{empty}
\pdfhorigin=0pt
\pdfvorigin=0pt
\newsavebox\cdmbox
\newdimen\cdmpad \cdmpad=4pt
\newcommand\cdmship[1]{%
  \pdfpagewidth=\dimexpr\wd\cdmbox+2\cdmpad\relax
  \pdfpageheight=\dimexpr\ht\cdmbox+\dp\cdmbox+2\cdmpad\relax
  \shipout\vbox{\kern\cdmpad\hbox{\kern\cdmpad\usebox\cdmbox\kern\cdmpad}\kern\cdmpad}%
  \typeout{CDM-PAGE #1}%
  \setbox0\vbox{\leavevmode\par}}% ends a paragraph: TeX's count of errors restarts per formula
\begin{document}
"""
PAGE_MARK = re.compile(r"^CDM-PAGE (\d+)$", re.M)
BEGIN_MARK = re.compile(r"^CDM-BEGIN (\d+)$", re.M)


class RendererMissing(RuntimeError):
    """pdflatex or Ghostscript is not installed; str(e) says what to install."""


@dataclass
class Rendering:
    """One formula on the page: the cropped image size and a box (x0, y0, x1, y1) or None per visible token,
    or `error`, a short reason, when it could not be drawn."""

    size: tuple[int, int] = (0, 0)
    boxes: list[list[int] | None] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict:
        return {"error": self.error} if self.error else {"size": list(self.size), "boxes": self.boxes}

    @classmethod
    def from_json(cls, data: dict) -> "Rendering":
        if data.get("error"):
            return cls(error=data["error"])
        return cls(size=tuple(data["size"]), boxes=data["boxes"])


def check_tools() -> None:
    """Raise RendererMissing unless pdflatex and gs are on PATH and scipy is installed."""
    missing = [tool for tool in ("pdflatex", "gs") if shutil.which(tool) is None]
    if missing:
        raise RendererMissing(
            f"CDM needs {' and '.join(missing)}: install the Debian packages texlive-latex-base, "
            "texlive-latex-recommended and ghostscript (`make system-deps` does, as root).")
    if importlib.util.find_spec("scipy") is None:
        raise RendererMissing("CDM needs scipy: pip install -r requirements-dev.txt.")


def _document(formulas: list[str]) -> str:
    body = [rf"\typeout{{CDM-BEGIN {k}}}\sbox\cdmbox{{$\displaystyle {latex}$}}\cdmship{{{k}}}"
            for k, latex in enumerate(formulas)]
    return PREAMBLE + "\n".join(body) + "\n\\end{document}\n"


def _read_ppm_pages(data: bytes) -> list[np.ndarray]:
    """Split Ghostscript's concatenated binary PPM (P6) pages into H x W x 3 arrays."""
    pages, pos = [], 0
    header = re.compile(rb"P6\s+(?:#[^\n]*\n\s*)*(\d+)\s+(\d+)\s+(\d+)\s")  # Ghostscript adds a comment
    while pos < len(data):
        match = header.match(data, pos)
        if not match:
            break
        width, height = int(match.group(1)), int(match.group(2))
        start = match.end()
        end = start + width * height * 3
        pages.append(np.frombuffer(data[start:end], dtype=np.uint8).reshape(height, width, 3))
        pos = end
    return pages


def _rasterise(pdf: Path, timeout: float) -> list[np.ndarray]:
    command = ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=ppmraw", f"-r{DPI}",
               "-dTextAlphaBits=1", "-dGraphicsAlphaBits=1", "-sOutputFile=-", str(pdf)]
    done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    return _read_ppm_pages(done.stdout)


def boxes_of(image: np.ndarray, visible: int) -> Rendering:
    """The Rendering of one page: crop to the ink, then each token's box from its colour's pixels."""
    from scipy.ndimage import find_objects

    ink = (image != 255).any(axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return Rendering(error="renders nothing")
    top, left = rows[0] - CROP_PAD, cols[0] - CROP_PAD
    size = (int(cols[-1] - cols[0] + 2 * CROP_PAD), int(rows[-1] - rows[0] + 2 * CROP_PAD))
    level = (image.astype(np.int32) + STEP // 2) // STEP
    exact = (np.abs(image.astype(np.int32) - level * STEP) <= 2).all(axis=2) & (level < LEVELS).all(axis=2)
    codes = np.where(exact & ink, level[..., 0] * LEVELS ** 2 + level[..., 1] * LEVELS + level[..., 2], 0)
    boxes: list[list[int] | None] = [None] * visible
    for code, found in enumerate(find_objects(codes), start=1):
        index = code - 1
        if found is None or index >= visible:
            continue
        ys, xs = found
        boxes[index] = [int(xs.start - 1 - left), int(ys.start - 1 - top),
                        int(xs.stop - left), int(ys.stop - top)]  # stop is max + 1: the box is widened by one
    return Rendering(size=size, boxes=boxes)


def _tex(formulas: list[str], workdir: Path) -> tuple[Path | None, str]:
    tex = workdir / "cdm.tex"
    tex.write_text(_document(formulas), encoding="utf-8")
    try:
        subprocess.run(["pdflatex", "-interaction=batchmode", "-no-shell-escape", "cdm.tex"], cwd=workdir,
                       capture_output=True, env=TEX_ENV,
                       timeout=10 + TEX_SECONDS_PER_FORMULA * len(formulas), check=False)
    except subprocess.TimeoutExpired:
        pass
    log = (workdir / "cdm.log").read_text(encoding="latin-1") if (workdir / "cdm.log").exists() else ""
    pdf = workdir / "cdm.pdf"
    return (pdf if pdf.exists() else None), log


def render_batch(formulas: list[tuple[str, int]]) -> list[Rendering]:
    """Renderings of (coloured LaTeX, number of visible tokens) pairs, in order; never raises for bad LaTeX."""
    results: list[Rendering | None] = [None] * len(formulas)
    pending = list(range(len(formulas)))
    with tempfile.TemporaryDirectory(prefix="unimumer-cdm-") as tmp:
        workdir = Path(tmp)
        while pending:
            for stale in workdir.iterdir():
                stale.unlink()
            pdf, log = _tex([formulas[k][0] for k in pending], workdir)
            shipped = [int(k) for k in PAGE_MARK.findall(log)]
            pages = _rasterise(pdf, timeout=30 + 0.2 * len(pending)) if pdf and shipped else []
            for local, page in zip(shipped, pages):
                results[pending[local]] = boxes_of(page, formulas[pending[local]][1])
            left = [local for local in range(len(pending)) if results[pending[local]] is None]
            if not left:
                break
            begun = [int(k) for k in BEGIN_MARK.findall(log)]
            if not begun or not shipped and len(begun) == len(pending):
                for local in left:  # TeX never started, or drew nothing at all: give up on this lot
                    results[pending[local]] = Rendering(error="TeX did not run" if not begun else "TeX failed")
                break
            # TeX gave up on the formula it was on: that one fails alone, the rest are set again.
            culprit = begun[-1] if begun[-1] in left else left[0]
            results[pending[culprit]] = Rendering(error="TeX stopped on it")
            pending = [pending[local] for local in left if local != culprit]
    return [r if r is not None else Rendering(error="TeX did not run") for r in results]
