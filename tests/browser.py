"""Driving the app's page in headless Chromium (Debian's /usr/bin/chromium through Playwright).

Shared by tests/test_app_browser.py, tests/test_sketch_replay.py and
tests/benchmarks/bench_sketch_replay.py; plain functions, no pytest, so a benchmark script can use them.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
TIMEOUT = 60_000  # ms; the machine is shared and slow
PAGE = (800, 300)  # the sketchpad's drawing page (app.py's canvas_size)

# Pointer events for a whole stroke, sent from inside the page. Playwright's mouse waits for a repaint
# after every move (~0.3 s in software rendering), too slow for CROHME inks of hundreds of points; these
# events go to the same canvas listeners of Gradio's brush, a stroke at a time.
DISPATCH_STROKE = """points => {
  const canvas = document.querySelector('#sketch canvas');
  const send = (type, [x, y], buttons) => canvas.dispatchEvent(new PointerEvent(type, {
    clientX: x, clientY: y, bubbles: true, cancelable: true, composed: true, pointerId: 1,
    pointerType: 'mouse', isPrimary: true, button: 0, buttons}));
  send('pointerdown', points[0], 1);
  for (const point of points.slice(1)) send('pointermove', point, 1);
  send('pointerup', points[points.length - 1], 0);
  // the brush commits a stroke to the pad's value after a frame: the next stroke waits for it
  return new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
}"""


@contextlib.contextmanager
def open_page(url: str, sync_api):
    """A 1280x900 Chromium page on `url`, the sketchpad loaded; `sync_api` is playwright.sync_api."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900},
                                          permissions=["clipboard-read", "clipboard-write"])
            page = context.new_page()
            page.set_default_timeout(TIMEOUT)
            page.goto(url)
            page.wait_for_selector("#sketch canvas")
            yield page
        finally:
            browser.close()


def page_rectangle(page) -> tuple[float, float, float, float]:
    """Left, top, width and height on screen of the drawing page: Gradio centres it in the canvas element
    at the zoom its toolbar shows (e.g. "83%")."""
    box = page.locator("#sketch canvas").first.bounding_box()
    zoom = float(page.inner_text("#sketch .zoom-number").strip().rstrip("%")) / 100
    width, height = PAGE[0] * zoom, PAGE[1] * zoom
    return box["x"] + (box["width"] - width) / 2, box["y"] + (box["height"] - height) / 2, width, height


def draw(page, strokes, dispatch: bool = False) -> None:
    """Strokes on the pad; points are fractions (x, y) of the 800x300 drawing page (the white area).

    By default each point is a Playwright mouse move (trusted input, ~0.3 s a move); `dispatch=True`
    sends each stroke as pointer events from inside the page (~10 ms a point) for long replays."""
    page.get_by_role("tab", name="Draw").click()
    page.click("#sketch button[aria-label='Brush']")
    left, top, width, height = page_rectangle(page)
    for stroke in strokes:
        points = [(left + x * width, top + y * height) for x, y in stroke]
        if dispatch:
            page.evaluate(DISPATCH_STROKE, points)
            continue
        (x, y), rest = points[0], points[1:]
        page.mouse.move(x, y)
        page.mouse.down()
        for x, y in rest:  # few steps: every move repaints the canvas, ~0.3 s in software rendering
            page.mouse.move(x, y, steps=2)
        page.mouse.up()


TOGGLES = {"tree": "Tree-CoT reasoning", "count": "Symbol counting", "correct": "Error correction"}
MODE_STATS = {"tree": "Tree-CoT", "count": "counting", "correct": "self-check"}  # their names in the timing line


def shown_toggles(page) -> list[str]:
    """The toggles the page shows: it hides those of the modes the model never learned."""
    return [name for name in TOGGLES if page.locator(f"#{name}-toggle").is_visible()]


def set_toggles(page, **wanted: bool) -> None:
    shown = shown_toggles(page)
    assert {name for name, on in wanted.items() if on} <= set(shown), f"the page shows only {shown}"
    for name in shown:
        page.get_by_label(TOGGLES[name]).set_checked(wanted.get(name, False))


def recognize(page, modes: str) -> str:
    """Click Recognize, wait for the timing line of a run with `modes`, return the LaTeX box's text.

    The line is "0.12 s · 30 visual tokens · Tree-CoT"; while a run is pending Gradio overlays a
    timer on it, so the whole text must match. Consecutive calls use different `modes` (or `clear` between)."""
    page.click("#recognize")
    page.wait_for_function(
        "modes => new RegExp('^[0-9.]+ s · [0-9]+ visual tokens · ' + modes + '$')"
        ".test(document.querySelector('#stats').innerText.trim())", arg=modes)
    return page.input_value("#latex textarea")


def clear(page) -> None:
    """Press Clear and wait until the answer, the model's view and the timing line are gone."""
    page.click("#clear")
    page.wait_for_function("document.querySelector('#latex textarea').value === ''"
                           " && document.querySelector('#model-input img') === null"
                           " && document.querySelector('#stats').innerText.trim() === ''")


def model_input_size(page) -> tuple[int, int]:
    """Width and height of the image the model saw (the "What the model saw" pane)."""
    page.wait_for_function("document.querySelector('#model-input img')?.naturalWidth > 0")
    return tuple(page.evaluate("() => { const i = document.querySelector('#model-input img');"
                               " return [i.naturalWidth, i.naturalHeight]; }"))


def model_input_source(page) -> str:
    """The address of the image in the "What the model saw" pane (a new one for every recognition)."""
    model_input_size(page)
    return page.get_attribute("#model-input img", "src")


def model_input_ink_box(page) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1, exclusive) of the dark pixels of the image the model saw."""
    model_input_size(page)
    return tuple(page.evaluate("""() => {
      const img = document.querySelector('#model-input img');
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      const context = canvas.getContext('2d');
      context.drawImage(img, 0, 0);
      const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let x0 = canvas.width, y0 = canvas.height, x1 = 0, y1 = 0;
      for (let y = 0; y < canvas.height; y++) for (let x = 0; x < canvas.width; x++) {
        if (data[4 * (y * canvas.width + x)] < 128) {
          x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1);
        }
      }
      return [x0, y0, x1, y1];
    }"""))
