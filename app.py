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

import html
import logging
import os
import textwrap
import time
from pathlib import Path

import gradio as gr

from unimumer import Recognizer
from unimumer import latex as latex_rules
from unimumer.generation import MAX_NEW_TOKENS
from unimumer.hub import BUNDLED, bundled_available, cached_models, short_name
from unimumer.recognizer import min_pixels, training_max_pixels
from unimumer.images import ImageError, prepare_image
from unimumer.latex import LatexError, normalize
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


def model_menu() -> gr.Dropdown:
    """The model menu, shown when there is a choice; on a CPU it says what a released model costs."""
    choices = model_choices()
    on_cpu = RECOGNIZER is None or RECOGNIZER.device == "cpu"
    info = (f"on this CPU a released 2 B model takes about {CPU_SECONDS_2B} s per expression" if on_cpu
            else "models this Space has in its cache")
    return gr.Dropdown(choices, value=choices[0] if choices else None, label="Model", info=info,
                       visible=len(choices) > 1, elem_id="model", interactive=True)
# ------------------------------------------------------------------------------------------------------


def gpu_seconds(image, modes, max_new_tokens, do_sample, temperature, model="") -> int:
    """ZeroGPU time to reserve for `generate` (same arguments): the token budgets of the passes the
    modes run at an assumed, conservative 40 tokens/s, plus start-up. A shorter request gets a
    better place in the GPU queue; the Space is billed for the time actually used."""
    tasks = [m for m in modes if m != "correct"] or ["vanilla"]
    if "correct" in modes:
        tasks += ["error_find", "error_fix"]
    tokens = sum(max_new_tokens or MAX_NEW_TOKENS[task] for task in tasks)
    return int(min(120, 10 + tokens / 40))


def generate(image, modes, max_new_tokens, do_sample, temperature, model=""):
    """The only GPU-bound step: the generate passes of the modes on an already prepared image."""
    return recognizer_for(model).recognize(image, mode=modes, max_new_tokens=max_new_tokens or None,
                                           do_sample=do_sample, temperature=temperature)


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


def pick_source(image, sketch, active: str):
    """The input the user means: the active tab's one, else whichever holds something."""
    drawn = sketch if has_ink(sketch) else None
    first, second = (drawn, image) if active == "sketch" else (image, drawn)
    return first if first is not None else second


def recognize(image, sketch=None, tree: bool = False, count: bool = False, correct: bool = False,
              max_new_tokens: int = 0, sample: bool = False, temperature: float = 0.2,
              max_pixels: int = 0, active: str = "sketch", model: str = ""):
    """Recognise the drawn or uploaded expression (with `model`, a name of the model menu; "" = the model
    loaded at start).

    Returns (latex, rendered markdown, tree, counts table, marked formula, correction log,
    warnings, timing line, the image the model saw).
    """
    if RECOGNIZER is None:
        raise gr.Error(f"The model is not available: {LOAD_ERROR}", print_exception=False)
    recognizer = recognizer_for(model)  # loaded here, off the GPU
    source = pick_source(image, sketch, active)
    if source is None:
        gr.Warning(NOTHING_DRAWN)
        return "", f"*{NOTHING_DRAWN}*", "", [], "", "", "", "", None
    try:
        # checked here, off the GPU; 0 = the resolution the model was trained at. The sketchpad's mostly
        # empty page is cropped to the ink; uploads are read whole, as the models were trained (Recognizer.crops).
        processor = recognizer.processor
        cap = max(int(max_pixels), min_pixels(processor)) if max_pixels else training_max_pixels(processor)
        prepared = prepare_image(source, max_pixels=cap, crop=recognizer.crops(source))
    except ImageError as exc:
        raise gr.Error(str(exc), title="Cannot use this image", print_exception=False) from None
    modes = [m for m, on in (("tree", tree), ("count", count), ("correct", correct)) if on] or ["vanilla"]
    try:
        result = generate(prepared, modes, int(max_new_tokens), bool(sample), float(temperature), model)
    except gr.Error:  # e.g. ZeroGPU's own "quota exceeded" message: the user should see it as is
        raise
    except Exception:
        log.exception("Recognition failed")
        raise gr.Error("The model failed on this image; the server log has the details.",
                       print_exception=False) from None
    warnings = "\n".join(f"- ⚠️ {w}" for w in result.warnings)
    return (result.latex, preview(result.latex), result.tree or "",
            [[tok, n] for tok, n in result.counts or []], result.marked or "", "\n".join(result.log or []),
            warnings, stats(result, modes), prepared)


def press_pad_button(label: str) -> str:
    """Browser-side code that presses a button of the sketchpad's own toolbar (by its aria-label)."""
    return f"(...args) => {{ document.querySelector(\"#sketch button[aria-label='{label}']\")?.click(); return args; }}"


def cleared():
    """Every input and output empty, the reasoning panes hidden (the pad is emptied in the browser)."""
    empty = gr.update(value=None)
    return (None, "", EMPTY_PREVIEW, "", [], gr.update(value="", visible=False), gr.update(value="", visible=False),
            "", "", empty, gr.update(visible=False), gr.update(visible=False))


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
                with gr.Row():
                    tree = gr.Checkbox(label="Tree-CoT reasoning", info="the expression's syntax tree first")
                    count = gr.Checkbox(label="Symbol counting", info="how many of each symbol first")
                    correct = gr.Checkbox(label="Error correction", info="self-check and fix the answer")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        max_new_tokens = gr.Slider(0, 2048, value=0, step=16, label="Max new tokens",
                                                   info="0 = automatic, by mode")
                        max_pixels = gr.Slider(0, MAX_PIXELS_LIMIT, value=0, step=1024,
                                               label="Max pixels",
                                               info="image area cap; 0 = the model's training size "
                                                    "(512×512 for Uni-MuMER)")
                    with gr.Row():
                        sample = gr.Checkbox(label="Sampling", info="off = greedy, the most likely answer")
                        temperature = gr.Slider(0.05, 1.5, value=0.2, step=0.05, label="Temperature",
                                                visible=False)
                with gr.Row():
                    undo = gr.Button("Undo", elem_id="undo", size="md")
                    clear = gr.Button("Clear", elem_id="clear")
                    run = gr.Button("Recognize", variant="primary", elem_id="recognize", scale=2)
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

        sketch_tab.select(lambda: "sketch", None, active, api_visibility="private")
        upload_tab.select(lambda: "upload", None, active, api_visibility="private")
        sample.change(lambda on: gr.update(visible=on), sample, temperature, api_visibility="private")
        outputs = [latex, rendered, tree_out, counts_out, marked_out, log_out, warnings, timing, seen]
        run.click(recognize,
                  [image, sketch, tree, count, correct, max_new_tokens, sample, temperature, max_pixels, active,
                   model],
                  outputs, api_name="recognize",
                  ).success(reveal, [tree_out, counts_out, marked_out, log_out],
                            [tree_box, counts_box, marked_out, log_out], api_visibility="private")
        latex.input(preview, latex, rendered, api_visibility="private", show_progress="hidden")
        # The pad's own toolbar buttons reset its stroke history; setting its value from outside does not
        # (Gradio 6.31: after a second outside reset the old strokes come back with the next drawing).
        undo.click(None, js=press_pad_button("Undo"), api_visibility="private")
        clear.click(cleared, None, [image, *outputs, tree_box, counts_box], js=press_pad_button("Clear canvas"),
                    api_visibility="private", show_progress="hidden")
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
