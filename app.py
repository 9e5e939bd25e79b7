"""Uni-MuMER in the browser: draw or upload a handwritten expression, get its LaTeX.

The Hugging Face Space entry point (`python app.py`). The model is loaded once, at start:
`UNIMUMER_MODEL` picks it (a Hub id, a short name such as `qwen3.5-2b` or a local folder; default
unimumer's default released model, with the small bundled model as the offline fallback). A "Model"
menu offers the others this machine can load without a download (cached released models, the folders
in `UNIMUMER_MODELS`, the bundled model), each loaded on first use. Gradio itself reads `GRADIO_SERVER_NAME` and
`GRADIO_SERVER_PORT`. On a ZeroGPU Space only the generate call holds a GPU (`spaces.GPU`, a
no-op elsewhere), for a time that grows with the number of passes the chosen modes need.

The `/recognize` API takes the image first; every other parameter has a default, and the first
output is the LaTeX string (see docs/app.md for a gradio_client example).
"""
from __future__ import annotations

try:  # ZeroGPU: `spaces` has to be imported before torch to patch CUDA initialisation
    import spaces
except ImportError:  # plain CPU / CUDA machines do not need it
    spaces = None

import hashlib
import html
import logging
import os
import re
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import gradio as gr

from unimumer import Recognizer
from unimumer import latex as latex_rules
from unimumer.generation import MAX_NEW_TOKENS
from unimumer.hub import BUNDLED, bundled_available, cached_models, short_name
from unimumer.recognizer import min_pixels, mode_names, training_max_pixels
from unimumer.images import ImageError, prepare_image
from unimumer.confidence import DOUBTFUL, MAX_ALTERNATIVES, UNSURE
from unimumer.export import IMAGE_FORMATS, ExportError, canonical, delimited, render_formula, to_mathml
from unimumer.latex import LatexError, normalize
from unimumer.tasks import CorrectionError, mark_tokens
from unimumer.tasks.edl import TAGS
from unimumer.tiny import LATEX_SYMBOLS

log = logging.getLogger("unimumer.app")

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "examples"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
PAPER = "https://arxiv.org/abs/2505.23566"
EMPTY_PREVIEW = "*The rendered formula appears here.*"
NOTHING_DRAWN = "Draw an expression on the pad or choose an image first."
MAX_UPLOAD = "25mb"  # a bigger file is refused before it is stored; the pixel cap is checked too
PREVIEW_CHARS, PREVIEW_WIDTH = 200, 48  # how much of an untypesettable output the preview shows, per line
# Text-mode escapes for showing any string in KaTeX; escaped braces also keep KaTeX's auto-render
# from mistaking an unbalanced `{` for a formula that never ends.
TEXT_ESCAPES = {"\\": r"\textbackslash ", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
                "%": r"\%", "_": r"\_", "^": r"\textasciicircum ", "~": r"\textasciitilde "}
# Commands of the project's LaTeX vocabulary and normalisation rules; KaTeX typesets all of them.
TYPESET_COMMANDS = frozenset(LATEX_SYMBOLS) | latex_rules.ONE_ARG | latex_rules.TWO_ARGS | latex_rules.INFIX
# The app sizes each image itself (the "Max pixels" slider), so the processor must not cap below this.
MAX_PIXELS_LIMIT = 1024 * 1024


def pass_path_through(image: gr.Image) -> gr.Image:
    """Make `image` hand the function the uploaded file's path without opening it.

    `gr.Image` decodes every upload itself, so a text file named `.png` fails inside Gradio with
    PIL's message; `unimumer.images` checks the header and the pixel count first and says what is
    wrong in one sentence. (Gradio has already checked that the path is in its upload cache.)
    """
    decode = image.preprocess
    image.preprocess = lambda payload: payload.path if payload is not None and payload.path else decode(payload)
    return image


# --------------------------------------------------------------------------------------------
# The model, loaded once


def load_recognizer(model: str | None = None):
    """(recognizer, None) or (None, a one-sentence reason); never raises, so the page always comes up."""
    start = time.perf_counter()
    try:
        recognizer = Recognizer.from_pretrained(model, max_pixels=MAX_PIXELS_LIMIT)  # default: $UNIMUMER_MODEL
    except Exception as exc:  # any failure becomes a banner on the page and one line in the log
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.error("Could not load the model: %s", reason)
        return None, reason
    log.info("Loaded %s on %s in %.1f s", recognizer.model_name, recognizer.device,
             time.perf_counter() - start)
    if recognizer.notice:
        log.warning(recognizer.notice)
    return recognizer, None


RECOGNIZER = None  # set by main(); the event handlers read it
LOAD_ERROR: str | None = None

# ---- the model menu (issue 20) ----------------------------------------------------------------------
MODELS_VAR = "UNIMUMER_MODELS"  # more checkpoint folders (or Hub ids) to offer, comma separated
# bench_cpu_zoo.py on a 2-core x86 CPU (README, "Model zoo"): a 2 B model in float32, one 30-token expression
CPU_SECONDS_2B = 10
OTHER_RECOGNIZERS: dict = {}  # models chosen in the menu, loaded on first use, by menu name


def model_choices() -> list[str]:
    """The menu: the model loaded at start first, then what loads here without a download."""
    offered = [RECOGNIZER.model_name] if RECOGNIZER is not None else []
    offered += cached_models() + [m.strip() for m in os.environ.get(MODELS_VAR, "").split(",") if m.strip()]
    offered += [BUNDLED] if bundled_available() else []
    return list(dict.fromkeys(short_name(m) for m in offered))


def recognizer_for(model: str):
    """The Recognizer of a menu entry ("" = the model loaded at start); gr.Error for anything else."""
    if not model or RECOGNIZER is not None and model == short_name(RECOGNIZER.model_name):
        return RECOGNIZER
    if model not in OTHER_RECOGNIZERS:
        if model not in model_choices():
            raise gr.Error(f"{model!r} is not one of the models this app offers.", print_exception=False)
        recognizer, error = load_recognizer(model)
        if recognizer is None:
            raise gr.Error(f"The model {model} could not be loaded: {error}", print_exception=False)
        OTHER_RECOGNIZERS[model] = recognizer
    return OTHER_RECOGNIZERS[model]


ABILITIES = ("tree", "count", "correct")  # the toggles, by mode
TOKENS_LABEL = "Tokens: shaded = the model is unsure"
TOKENS_FIX_HINT = "; click the wrong ones (or select them in the LaTeX box), then Fix"


def untrained_abilities(recognizer) -> tuple[tuple[str, ...], str]:
    """The toggles' modes this model was never trained for (its training record says so), and a sentence
    for the page saying which and why ("" when it learned them all)."""
    untrained = recognizer.untrained_modes(ABILITIES) if recognizer is not None else ()
    if not untrained:
        return (), ""
    one = len(untrained) == 1
    names = mode_names(untrained)
    return untrained, (f"{names[0].upper() + names[1:]} {'is' if one else 'are'} hidden: this model was not "
                       f"trained for {'it' if one else 'them'} (it learned {', '.join(sorted(recognizer.tasks))}), "
                       "so the answers would be worse than the plain ones.")


def tokens_label(fixable: bool) -> str:
    """The tokens pane's label: how to mark and Fix tokens only where the model can correct them."""
    return TOKENS_LABEL + (TOKENS_FIX_HINT if fixable else "")


def abilities(recognizer) -> list:
    """Updates for the three toggles (an untrained one hidden and switched off), the Fix buttons (they run
    error correction) and the tokens pane's label that explains them, and the note."""
    untrained, note = untrained_abilities(recognizer)
    toggles = [gr.update(visible=False, value=False) if m in untrained else gr.update(visible=True)
               for m in ABILITIES]
    fixable = "correct" not in untrained
    return [*toggles, gr.update(visible=fixable), gr.update(label=tokens_label(fixable)),
            gr.update(value=note, visible=bool(note))]


def menu_abilities(model: str) -> list:
    """`abilities` of the model chosen in the menu (loaded now, as its first recognition would)."""
    try:
        return abilities(recognizer_for(model))
    except gr.Error:  # the recognition itself says why it cannot load
        return abilities(None)


def model_menu() -> gr.Dropdown:
    """The model menu, shown when there is a choice; on a CPU it says what a released model costs."""
    choices = model_choices()
    on_cpu = RECOGNIZER is None or RECOGNIZER.device == "cpu"
    info = (f"on this CPU a released 2 B model takes about {CPU_SECONDS_2B} s per expression" if on_cpu
            else "models this Space has in its cache")
    return gr.Dropdown(choices, value=choices[0] if choices else None, label="Model", info=info,
                       visible=len(choices) > 1, elem_id="model", interactive=True)
# ------------------------------------------------------------------------------------------------------


def gpu_seconds(image, modes, max_new_tokens, do_sample, temperature, model="", alternatives=1, marked=None,
                cancel=None) -> int:
    """ZeroGPU time to reserve for `generate` (same arguments): the token budgets of the passes the
    modes run at an assumed, conservative 40 tokens/s (a reading pass once per alternative), plus
    start-up. A shorter request gets a better place in the GPU queue; the Space is billed for the time
    actually used."""
    if marked is not None:
        tasks = ["error_fix"]
    else:
        tasks = ([m for m in modes if m != "correct"] or ["vanilla"]) * max(1, int(alternatives))
    if "correct" in modes:
        tasks += ["error_find", "error_fix"]
    tokens = sum(max_new_tokens or MAX_NEW_TOKENS[task] for task in tasks)
    return int(min(120, 10 + tokens / 40))


def generate(image, modes, max_new_tokens, do_sample, temperature, model="", alternatives=1, marked=None,
             cancel=None):
    """The only GPU-bound step: the generate passes of the modes on an already prepared image (with
    `marked`, the error_fix pass on that marked reading instead). Token confidence is always kept: one
    image's probabilities are cheap."""
    options = dict(max_new_tokens=max_new_tokens or None, do_sample=do_sample, temperature=temperature,
                   token_scores=True, cancel=cancel)
    if marked is not None:
        return recognizer_for(model).fix(image, marked, **options)
    return recognizer_for(model).recognize(image, mode=modes, alternatives=int(alternatives), **options)


if spaces is not None:
    generate = spaces.GPU(duration=gpu_seconds)(generate)


# --------------------------------------------------------------------------------------------
# Presentation helpers


def untypesettable(latex: str) -> str | None:
    """Why KaTeX would fail on canonical LaTeX, or None: a command outside the project's LaTeX
    vocabulary (random or confused models glue tokens into ones like `\\tfracend`), or an `&`
    outside a matrix."""
    depth = 0
    for token in latex.split():
        if token.startswith("\\begin{"):
            depth += 1
        elif token.startswith("\\end{"):
            depth -= 1
        elif token == "&" and depth <= 0:
            return "'&' outside a matrix."
        elif token[1:].isalpha() and token.startswith("\\") and token not in TYPESET_COMMANDS:
            return f"`{token}` is not a LaTeX command the preview knows."
    return None


def preview(latex: str) -> str:
    """Markdown for the rendered pane.

    LaTeX that parses is typeset by KaTeX in its canonical form. Anything else (models can emit
    unbalanced braces or made-up commands) is typeset verbatim with a note, so the pane never
    shows KaTeX's red error text, and editing the LaTeX box updates the formula.
    """
    text = " ".join((latex or "").split())
    if not text:
        return EMPTY_PREVIEW
    try:
        canonical = normalize(text)
        problem = untypesettable(canonical)
    except LatexError as exc:
        problem = str(exc)
    if problem is None:
        return f"$$\n{canonical}\n$$"
    shown = text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + " …"
    lines = [r"{\scriptsize\texttt{" + "".join(TEXT_ESCAPES.get(c, c) for c in line) + "}}"
             for line in textwrap.wrap(shown, PREVIEW_WIDTH, break_long_words=True)]
    verbatim = r" \\ ".join(lines)
    return f"⚠️ Not valid LaTeX, shown as written: {html.escape(problem, quote=False)}\n\n$$\n{verbatim}\n$$"


def model_info() -> str:
    if RECOGNIZER is None:
        return (f"<div class='banner error'>⚠️ The model could not be loaded: {html.escape(LOAD_ERROR or '')} "
                "Recognition is unavailable; see the server log.</div>")
    parts = [f"Model <code>{html.escape(RECOGNIZER.model_name)}</code> on <b>{html.escape(RECOGNIZER.device)}</b>"]
    if RECOGNIZER.notice:
        parts.insert(0, f"<div class='banner'>ℹ️ {html.escape(RECOGNIZER.notice)}</div>")
    return "\n".join(parts)


def stats(result, modes: list[str]) -> str:
    names = {"vanilla": "plain", "tree": "Tree-CoT", "count": "counting", "correct": "self-check"}
    return (f"{result.seconds:.2f} s · {result.visual_tokens} visual tokens · "
            f"{' + '.join(names.get(m, m) for m in modes)}")


# --------------------------------------------------------------------------------------------
# Event handlers


def has_ink(sketch) -> bool:
    """True when a layer of the pad holds a visible pixel (a blank pad's layers are transparent)."""
    layers = (sketch or {}).get("layers") or []
    return any(layer is not None and layer.getbbox(alpha_only=True) for layer in layers)


def pick_source(image, sketch, active: str, ink=None):
    """The input the user means: the active tab's one, else whichever holds something."""
    drawn = sketch if has_ink(sketch) else None
    order = {"sketch": (drawn, image, ink), "upload": (image, drawn, ink), "ink": (ink, drawn, image)}
    return next((source for source in order.get(active, order["sketch"]) if source is not None), None)


def prepared_input(recognizer, image, sketch, active: str, ink, max_pixels: int = 0):
    """The model's view of the chosen input, checked here, off the GPU; None when nothing is given.
    max_pixels 0 = the resolution the model was trained at. The sketchpad's mostly empty page is cropped
    to the ink; uploads and ink files are read whole, as the models were trained (Recognizer.crops)."""
    source = pick_source(image, sketch, active, ink)
    if source is None:
        return None
    processor = recognizer.processor
    cap = max(int(max_pixels), min_pixels(processor)) if max_pixels else training_max_pixels(processor)
    try:
        return prepare_image(source, max_pixels=cap, crop=recognizer.crops(source))
    except ImageError as exc:
        raise gr.Error(str(exc), title="Cannot use this image", print_exception=False) from None


def run_model(*args, **kwargs):
    """`generate`, with any failure but Gradio's own messages as one sentence."""
    try:
        return generate(*args, **kwargs)
    except gr.Error:  # e.g. ZeroGPU's own "quota exceeded" message: the user should see it as is
        raise
    except Exception:
        log.exception("Recognition failed")
        raise gr.Error("The model failed on this image; the server log has the details.",
                       print_exception=False) from None


def readings_of(result) -> dict:
    """The "Confidence and alternatives" output: the LaTeX's per-token confidence and the top readings."""
    return {"confidence": [[t, p] for t, p in result.confidence or []] or None,
            "alternatives": [{"latex": a.latex, "score": a.score, "confidence": a.confidence}
                             for a in result.alternatives or []]}


def recognize(image, sketch=None, tree: bool = False, count: bool = False, correct: bool = False,
              max_new_tokens: int = 0, sample: bool = False, temperature: float = 0.2,
              max_pixels: int = 0, active: str = "sketch", model: str = "", alternatives: int = 1,
              ink=None, cancel=None):
    """Recognise the drawn, uploaded or ink-file expression (with `model`, a name of the model menu;
    "" = the model loaded at start; `alternatives`: how many top readings, 1 to 5).

    Returns (latex, rendered markdown, tree, counts table, marked formula, correction log,
    warnings, timing line, the image the model saw, confidence and alternatives).
    """
    if RECOGNIZER is None:
        raise gr.Error(f"The model is not available: {LOAD_ERROR}", print_exception=False)
    if not 1 <= int(alternatives or 1) <= MAX_ALTERNATIVES:
        raise gr.Error(f"alternatives must be from 1 to {MAX_ALTERNATIVES}.", print_exception=False)
    recognizer = recognizer_for(model)  # loaded here, off the GPU
    prepared = prepared_input(recognizer, image, sketch, active, ink, max_pixels)
    if prepared is None:
        gr.Warning(NOTHING_DRAWN)
        return "", f"*{NOTHING_DRAWN}*", "", [], "", "", "", "", None, NO_READINGS
    modes = [m for m, on in (("tree", tree), ("count", count), ("correct", correct)) if on] or ["vanilla"]
    result = run_model(prepared, modes, int(max_new_tokens), bool(sample), float(temperature), model,
                       int(alternatives or 1), cancel=cancel)
    warnings = "\n".join(f"- ⚠️ {w}" for w in result.warnings)
    return (result.latex, preview(result.latex), result.tree or "",
            [[tok, n] for tok, n in result.counts or []], result.marked or "", "\n".join(result.log or []),
            warnings, stats(result, modes), prepared, readings_of(result))


# ---- alternatives, confidence and fixing by pointing (issue 22) ---------------------------------------
NO_READINGS = {"confidence": None, "alternatives": []}
RECOGNIZE_OUTPUTS = 10
# Token classes of the LaTeX token view; the colours say how sure the model was, or that the user marked it.
TOKEN_COLOURS = {"marked": "#ef4444", "unsure": "#f59e0b", "doubtful": "#fde68a"}


def token_view(latex: str, confidence, spans) -> list[tuple[str, str | None]]:
    """The LaTeX's tokens for the token view: marked by the user, or shaded by the model's confidence
    (when `confidence` belongs to this LaTeX; after an edit it does not)."""
    tokens = (latex or "").split()
    probabilities = [None] * len(tokens)
    if confidence and [t for t, _ in confidence] == tokens:
        probabilities = [p for _, p in confidence]
    marked = {i for start, end in spans or [] for i in range(int(start), int(end))}
    view = []
    for i, (token, p) in enumerate(zip(tokens, probabilities)):
        kind = ("marked" if i in marked else "unsure" if p is not None and p < UNSURE
                else "doubtful" if p is not None and p < DOUBTFUL else None)
        view.append((f" {token} ", kind))
    return view


def show_readings(readings, latex: str):
    """After a recognition: the alternatives list (when there is a choice), the token view, no marks."""
    readings = readings or NO_READINGS
    choices = [(f"{a['score']:.3g} · {a['latex']}", i) for i, a in enumerate(readings["alternatives"])]
    confidence = readings["confidence"]
    return (gr.update(choices=choices, value=0 if choices else None, visible=len(choices) > 1),
            token_view(latex, confidence, []), [], confidence)


def choose_alternative(readings, index):
    """The LaTeX of alternative `index` (0 = the best) of a /recognize answer's "Confidence and alternatives".

    Returns (latex, rendered markdown, its token confidence)."""
    alternatives = (readings or {}).get("alternatives") or []
    try:
        chosen = alternatives[int(index)] if int(index) >= 0 else None
    except (TypeError, ValueError, IndexError):
        chosen = None
    if chosen is None:
        count = len(alternatives)
        listed = f"this reading has {count} (0 to {count - 1})" if count else "this reading has none"
        raise gr.Error(f"There is no alternative {index!s}: {listed}.", print_exception=False)
    return chosen["latex"], preview(chosen["latex"]), chosen["confidence"]


def span_of_selection(latex: str, start: int, end: int) -> list[int] | None:
    """The token span [first, last + 1] that a character selection of the LaTeX box touches."""
    touched = [i for i, m in enumerate(re.finditer(r"\S+", latex or "")) if m.start() < end and m.end() > start]
    return [touched[0], touched[-1] + 1] if touched else None


def toggle_mark(spans, index: int) -> list:
    """Mark token `index`, or unmark it when it is marked."""
    spans = [list(span) for span in spans or []]
    hit = [span for span in spans if span[0] <= index < span[1]]
    if not hit:
        return spans + [[index, index + 1]]
    span = hit[0]
    spans.remove(span)
    return spans + [piece for piece in ([span[0], index], [index + 1, span[1]]) if piece[1] > piece[0]]


def mark_clicked_token(latex: str, confidence, spans, event: gr.SelectData):
    spans = toggle_mark(spans, int(event.index))
    return spans, token_view(latex, confidence, spans)


def mark_selected_text(latex: str, confidence, spans, event: gr.SelectData):
    start, end = event.index if isinstance(event.index, (list, tuple)) else (event.index, event.index)
    span = span_of_selection(latex, int(start), int(end))
    spans = (spans or []) + ([span] if span and span not in (spans or []) else [])
    return spans, token_view(latex, confidence, spans)


def fix(image, sketch=None, latex: str = "", spans=None, active: str = "sketch", model: str = "",
        max_new_tokens: int = 0, ink=None):
    """Correct the marked places of a reading (Uni-MuMER's error_fix pass). `spans`: token positions
    [start, end] (end exclusive; start == end: something is missing there) of `latex`'s wrong parts, or
    none when `latex` already holds <error_start> <error_end> / <deleted> marks.

    Returns (latex, rendered markdown, marked formula, correction log, warnings, timing line,
    confidence and alternatives).
    """
    if RECOGNIZER is None:
        raise gr.Error(f"The model is not available: {LOAD_ERROR}", print_exception=False)
    reading = " ".join((latex or "").split())
    try:
        marked = reading if not spans and set(reading.split()) & set(TAGS) else mark_tokens(reading, spans)
    except CorrectionError as exc:
        raise gr.Error(str(exc), title="Nothing to fix", print_exception=False) from None
    recognizer = recognizer_for(model)
    prepared = prepared_input(recognizer, image, sketch, active, ink)
    if prepared is None:
        raise gr.Error(NOTHING_DRAWN, print_exception=False)
    result = run_model(prepared, ["fix"], int(max_new_tokens), False, 0.2, model, marked=marked)
    warnings = "\n".join(f"- ⚠️ {w}" for w in result.warnings)
    timing = f"{result.seconds:.2f} s · {result.visual_tokens} visual tokens · fix"
    return (result.latex, preview(result.latex), marked, "\n".join(result.log or []), warnings, timing,
            readings_of(result))
# -------------------------------------------------------------------------------------------------------


# ---- outputs to paste elsewhere -------------------------------------------------------------------------
EXPORT_DIR = Path(tempfile.mkdtemp(prefix="unimumer-exports-"))  # Gradio serves the files from its cache


def exports(latex: str):
    """The LaTeX as $…$, as \\[…\\] and as MathML, PNG and SVG files of the formula, and a note on what
    could not be made (LaTeX that does not parse, or that the image export cannot draw)."""
    forms = delimited(latex)
    mathml, files, problems = "", [None] * len(IMAGE_FORMATS), []
    if forms["raw"]:
        try:
            problem = untypesettable(canonical(latex))
            if problem:  # what KaTeX cannot typeset, MathML and the pictures would show wrongly too
                raise ExportError(f"Not valid LaTeX, so not exported: {problem}")
            mathml = to_mathml(latex)
            stem = EXPORT_DIR / f"formula-{hashlib.sha1(forms['raw'].encode()).hexdigest()[:12]}"
            for i, fmt in enumerate(IMAGE_FORMATS):
                path = stem.with_suffix(f".{fmt}")
                path.write_bytes(render_formula(latex, fmt))
                files[i] = str(path)
        except ExportError as exc:
            problems.append(str(exc))
    note = " ".join(f"⚠️ {p}" for p in problems)
    return (forms["inline"], forms["display"], mathml,
            *[gr.update(value=f, interactive=f is not None) for f in files], note)


# ---- live recognition: after a pause of the pen, one run in flight per user -----------------------------
LIVE_PAUSE_MS = 700
LIVE_RUNS: dict[str, threading.Event] = {}  # browser session -> the stop signal of its live run in flight
# Every stroke: tell a run in flight to stop (it reads a drawing that has changed), and (re)start the timer.
LIVE_JS = f"""() => {{
  if (!document.querySelector('#live input')?.checked) return;
  document.querySelector('#live-stop')?.click();
  clearTimeout(window.unimumerLive);
  window.unimumerLive = setTimeout(() => document.querySelector('#live-run')?.click(), {LIVE_PAUSE_MS});
}}"""


def recognize_live(*args, request: gr.Request = None):
    """`recognize` for the pen's pause, on the pad only; a run that a newer stroke stopped shows nothing."""
    sketch = args[1]
    if not has_ink(sketch):
        return [gr.skip()] * RECOGNIZE_OUTPUTS
    session = request.session_hash if request is not None else ""
    stop = threading.Event()
    LIVE_RUNS[session] = stop
    try:
        result = recognize(*args[:9], "sketch", *args[10:], cancel=stop)
    finally:
        if LIVE_RUNS.get(session) is stop:
            del LIVE_RUNS[session]
    return [gr.skip()] * RECOGNIZE_OUTPUTS if stop.is_set() else result


def stop_live(request: gr.Request = None) -> None:
    stop = LIVE_RUNS.pop(request.session_hash if request is not None else "", None)
    if stop is not None:
        stop.set()


# ---- this session's history --------------------------------------------------------------------------
HISTORY_SIZE = 24
THUMBNAIL = (240, 96)


def remember(history, seen, latex: str):
    """Put the latest recognition (what the model saw, its LaTeX) first in the session's history."""
    if seen is None or not (latex or "").strip():
        return history, gr.skip()
    thumbnail = seen.copy()
    thumbnail.thumbnail(THUMBNAIL)
    history = [(thumbnail, latex)] + list(history or [])[: HISTORY_SIZE - 1]
    return history, [(image, text) for image, text in history]


def reopen(history, event: gr.SelectData):
    """A history entry back in the LaTeX box and preview (its token confidence is not kept)."""
    image, latex = history[event.index]
    return latex, preview(latex), image, token_view(latex, None, []), [], None


def press_pad_button(label: str) -> str:
    """Browser-side code that presses a button of the sketchpad's own toolbar (by its aria-label)."""
    return f"(...args) => {{ document.querySelector(\"#sketch button[aria-label='{label}']\")?.click(); return args; }}"


def cleared():
    """Every input and output empty, the reasoning panes hidden (the pad is emptied in the browser)."""
    empty = gr.update(value=None)
    return (None, "", EMPTY_PREVIEW, "", [], gr.update(value="", visible=False), gr.update(value="", visible=False),
            "", "", empty, NO_READINGS, gr.update(visible=False), gr.update(visible=False))


def reveal(tree: str, counts, marked: str, correction: str):
    """Show the reasoning panes that have something in them."""
    has_counts = counts is not None and len(counts) > 0
    return [gr.update(visible=bool(shown)) for shown in (tree, has_counts, marked, correction)]


def example_images() -> list[str]:
    """Images in examples/ (made by the project itself); none is fine."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# --------------------------------------------------------------------------------------------
# Layout

CSS = """
#title {text-align: center; margin-bottom: 0}
#title h1 {margin-bottom: .2em}
#model-info {text-align: center; font-size: .9em; opacity: .85}
.banner {padding: .5em .8em; margin: .3em auto; border-radius: 8px; max-width: 52em;
         background: var(--color-accent-soft); border: 1px solid var(--border-color-accent)}
.banner.error {background: #fde8e8; border-color: #f5a3a3; color: #7a1111}
#rendered {min-height: 7em; padding: .6em 1em; overflow-x: auto;
           border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
           background: var(--background-fill-primary)}
#rendered .katex-display > .katex {font-size: 1.7em}
#stats {font-size: .85em; opacity: .8}
"""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Uni-MuMER: handwritten math to LaTeX") as demo:
        gr.Markdown(
            "# ✍️ Uni-MuMER: handwritten math → LaTeX\n"
            "Draw or upload a handwritten expression and a fine-tuned Qwen vision-language model writes its LaTeX. "
            f"Switch on the three abilities of [Uni-MuMER]({PAPER}): Tree-CoT reasoning, "
            "symbol counting and a self-check that corrects its own first answer.",
            elem_id="title")
        gr.Markdown(model_info(), elem_id="model-info")
        model = model_menu()
        active = gr.State("sketch")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                with gr.Tabs() as tabs:
                    with gr.Tab("Draw", id="sketch") as sketch_tab:
                        sketch = gr.Sketchpad(
                            elem_id="sketch", type="pil", image_mode="RGBA", canvas_size=(800, 300),
                            brush=gr.Brush(colors=["#000000"], default_color="#000000", color_mode="fixed",
                                           default_size=5),
                            layers=False, transforms=(), show_label=False, container=False,
                            buttons=[])
                    with gr.Tab("Image", id="upload") as upload_tab:
                        image = pass_path_through(gr.Image(
                            elem_id="upload", type="filepath", sources=["upload", "webcam", "clipboard"],
                            label="Handwritten expression (upload, webcam or paste)", height=300,
                            buttons=["fullscreen"]))
                    with gr.Tab("Ink file", id="ink") as ink_tab:
                        ink = gr.File(label="Online handwriting (.inkml, e.g. CROHME or MathWriting)",
                                      file_types=[".inkml"], type="filepath", elem_id="ink", height=300)
                untrained, note = untrained_abilities(RECOGNIZER)
                fixable = "correct" not in untrained  # the Fix buttons run error correction
                with gr.Row():
                    tree = gr.Checkbox(label="Tree-CoT reasoning", info="the expression's syntax tree first",
                                       elem_id="tree-toggle", visible="tree" not in untrained)
                    count = gr.Checkbox(label="Symbol counting", info="how many of each symbol first",
                                        elem_id="count-toggle", visible="count" not in untrained)
                    correct = gr.Checkbox(label="Error correction", info="self-check and fix the answer",
                                          elem_id="correct-toggle", visible="correct" not in untrained)
                untrained_note = gr.Markdown(note, visible=bool(note), elem_id="untrained")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        max_new_tokens = gr.Slider(0, 2048, value=0, step=16, label="Max new tokens",
                                                   info="0 = automatic, by mode")
                        max_pixels = gr.Slider(0, MAX_PIXELS_LIMIT, value=0, step=1024,
                                               label="Max pixels",
                                               info="image area cap; 0 = the model's training size "
                                                    "(512×512 for Uni-MuMER)")
                    with gr.Row():
                        n_alternatives = gr.Slider(1, MAX_ALTERNATIVES, value=3, step=1, label="Alternatives",
                                                   elem_id="n-alternatives",
                                                   info="top readings to choose from (beam search)")
                        sample = gr.Checkbox(label="Sampling", info="off = greedy, the most likely answer")
                        temperature = gr.Slider(0.05, 1.5, value=0.2, step=0.05, label="Temperature",
                                                visible=False)
                with gr.Row():
                    undo = gr.Button("Undo", elem_id="undo", size="md")
                    clear = gr.Button("Clear", elem_id="clear")
                    run = gr.Button("Recognize", variant="primary", elem_id="recognize", scale=2)
                on_gpu = RECOGNIZER is not None and RECOGNIZER.device != "cpu"
                live = gr.Checkbox(label="Live", elem_id="live", value=on_gpu,
                                   info=f"recognise when the pen pauses ({LIVE_PAUSE_MS / 1000:.1f} s)")
                live_run = gr.Button("live run", elem_id="live-run", visible="hidden")
                live_stop = gr.Button("live stop", elem_id="live-stop", visible="hidden")
                examples = example_images()
                if examples:
                    gallery = gr.Examples(examples, inputs=image, label="Examples (click one)",
                                          examples_per_page=12, elem_id="examples")
                    gallery.dataset.click(lambda: (gr.Tabs(selected="upload"), "upload"), None,
                                          [tabs, active], api_visibility="private")
            with gr.Column(scale=2):
                latex = gr.Textbox(label="LaTeX", elem_id="latex", lines=2, buttons=["copy"],
                                   placeholder="The recognised LaTeX appears here; edit it to fix the preview.")
                rendered = gr.Markdown(EMPTY_PREVIEW, label="Preview", elem_id="rendered",
                                       latex_delimiters=[{"left": "$$", "right": "$$", "display": True}])
                tokens = gr.HighlightedText(label=tokens_label(fixable),
                                            elem_id="tokens", color_map=TOKEN_COLOURS, combine_adjacent=False,
                                            show_legend=True, show_inline_category=False)
                with gr.Row(visible=fixable) as fix_row:
                    fix_run = gr.Button("Fix the marked tokens", elem_id="fix", size="md")
                    unmark = gr.Button("Unmark all", elem_id="unmark", size="md")
                alternatives = gr.Radio(label="Alternatives (score = the model's own probability)",
                                        elem_id="alternatives", visible=False, type="value")
                readings = gr.JSON(label="Confidence and alternatives", visible="hidden", elem_id="readings")
                spans = gr.JSON([], label="Marked spans", visible="hidden", elem_id="spans")
                chosen = gr.Number(label="Alternative", precision=0, visible="hidden")
                confidence = gr.State(None)
                timing = gr.Markdown(label="Timing", elem_id="stats")
                warnings = gr.Markdown(label="Warnings", elem_id="warnings")
                with gr.Row(equal_height=True):
                    with gr.Column(visible=False, min_width=200) as tree_box:
                        tree_out = gr.Code(label="Tree-CoT", elem_id="tree", lines=6, max_lines=14,
                                           interactive=False)
                    with gr.Column(visible=False, min_width=160) as counts_box:
                        counts_out = gr.Dataframe(headers=["Symbol", "Count"], datatype=["str", "number"],
                                                  label="Symbol counts", elem_id="counts", interactive=False,
                                                  max_height=300)
                marked_out = gr.Textbox(label="Self-check: suspected errors", elem_id="marked", lines=1,
                                        buttons=["copy"], visible=False)
                log_out = gr.Textbox(label="Self-check: correction log", elem_id="correction-log", lines=2,
                                     visible=False)
                seen = gr.Image(label="What the model saw", elem_id="model-input", type="pil", height=120,
                                interactive=False, buttons=["download"])
                with gr.Accordion("Copy or download", open=True):
                    inline = gr.Textbox(label="Inline LaTeX ($…$)", elem_id="latex-inline", buttons=["copy"])
                    display = gr.Textbox(label="Display LaTeX (\\[…\\])", elem_id="latex-display", buttons=["copy"])
                    mathml = gr.Textbox(label="MathML", elem_id="mathml", lines=2, max_lines=6, buttons=["copy"])
                    with gr.Row():
                        png = gr.DownloadButton("PNG", elem_id="png", size="sm", interactive=False)
                        svg = gr.DownloadButton("SVG", elem_id="svg", size="sm", interactive=False)
                    export_note = gr.Markdown(elem_id="export-note")
        history = gr.State([])
        history_view = gr.Gallery(label="This session's recognitions (click one to reopen it)", elem_id="history",
                                  columns=8, height="auto", allow_preview=False, object_fit="scale-down")

        sketch_tab.select(lambda: "sketch", None, active, api_visibility="private")
        upload_tab.select(lambda: "upload", None, active, api_visibility="private")
        ink_tab.select(lambda: "ink", None, active, api_visibility="private")
        sample.change(lambda on: gr.update(visible=on), sample, temperature, api_visibility="private")
        model.change(menu_abilities, model, [tree, count, correct, fix_row, tokens, untrained_note],
                     api_visibility="private")
        outputs = [latex, rendered, tree_out, counts_out, marked_out, log_out, warnings, timing, seen, readings]
        inputs = [image, sketch, tree, count, correct, max_new_tokens, sample, temperature, max_pixels, active,
                  model, n_alternatives, ink]
        panes = [tree_box, counts_box, marked_out, log_out]
        view = [alternatives, tokens, spans, confidence]

        def after_reading(event):
            """What every new reading updates: the reasoning panes, the alternatives and tokens, the history."""
            event.success(reveal, [tree_out, counts_out, marked_out, log_out], panes, api_visibility="private"
                          ).success(show_readings, [readings, latex], view, api_visibility="private"
                                    ).success(remember, [history, seen, latex], [history, history_view],
                                              api_visibility="private")

        after_reading(run.click(recognize, inputs, outputs, api_name="recognize"))
        live_event = live_run.click(recognize_live, inputs, outputs, api_visibility="private",
                                    trigger_mode="always_last", show_progress="minimal")
        after_reading(live_event)
        live_stop.click(stop_live, None, None, cancels=[live_event], api_visibility="private",
                        concurrency_limit=None, show_progress="hidden")
        sketch.input(None, None, None, js=LIVE_JS, api_visibility="private", show_progress="hidden")

        fixed = fix_run.click(fix, [image, sketch, latex, spans, active, model, max_new_tokens, ink],
                              [latex, rendered, marked_out, log_out, warnings, timing, readings], api_name="fix")
        after_reading(fixed)
        # /alternative takes any index (a wrong one gets its sentence); the list's choice goes through `chosen`
        alternatives.input(lambda index: index, alternatives, chosen, api_visibility="private",
                           show_progress="hidden").then(
            choose_alternative, [readings, chosen], [latex, rendered, confidence], api_name="alternative").success(
            lambda text, sure: (token_view(text, sure, []), []), [latex, confidence], [tokens, spans],
            api_visibility="private")
        tokens.select(mark_clicked_token, [latex, confidence, spans], [spans, tokens], api_visibility="private",
                      show_progress="hidden")
        latex.select(mark_selected_text, [latex, confidence, spans], [spans, tokens], api_visibility="private",
                     show_progress="hidden")
        unmark.click(lambda text, sure: ([], token_view(text, sure, [])), [latex, confidence], [spans, tokens],
                     api_visibility="private", show_progress="hidden")
        latex.input(lambda text, sure: (preview(text), token_view(text, sure, []), []), [latex, confidence],
                    [rendered, tokens, spans], api_visibility="private", show_progress="hidden")
        latex.change(exports, latex, [inline, display, mathml, png, svg, export_note], api_visibility="private",
                     show_progress="hidden")
        history_view.select(reopen, history, [latex, rendered, seen, tokens, spans, confidence],
                            api_visibility="private")
        # The pad's own toolbar buttons reset its stroke history; setting its value from outside does not
        # (Gradio 6.31: after a second outside reset the old strokes come back with the next drawing).
        undo.click(None, js=press_pad_button("Undo"), api_visibility="private")
        clear.click(cleared, None, [image, *outputs, tree_box, counts_box], js=press_pad_button("Clear canvas"),
                    api_visibility="private", show_progress="hidden"
                    ).then(lambda: (None, gr.update(choices=[], value=None, visible=False), [], [], None), None,
                           [ink, *view], api_visibility="private", show_progress="hidden")
    return demo


def main() -> None:
    global RECOGNIZER, LOAD_ERROR
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    RECOGNIZER, LOAD_ERROR = load_recognizer()
    on_cpu = RECOGNIZER is None or RECOGNIZER.device == "cpu"
    demo = build_demo()
    # A CPU has no spare cores for a second generate; a GPU batches a few requests well.
    demo.queue(default_concurrency_limit=1 if on_cpu else 4, max_size=64)
    demo.launch(css=CSS, theme=gr.themes.Soft(), max_file_size=MAX_UPLOAD, show_error=True)


if __name__ == "__main__":
    main()
