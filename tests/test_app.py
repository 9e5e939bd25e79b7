"""The Space app end to end: `python app.py` in a subprocess, as a user starts it, driven through gradio_client.

The server gets a random `unimumer.tiny` model through UNIMUMER_MODEL, no HF_HUB_OFFLINE and a Hub
address that cannot resolve, so it has to come up without the network. `serve_app` is shared with
tests/test_app_browser.py.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from unimumer.hub import bundled_available  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START_LIMIT = 60  # seconds from `python app.py` to HTTP 200 (the acceptance criterion)


RETURNS = ["LaTeX", "Preview", "Tree-CoT", "Symbol counts", "Self-check: suspected errors",
           "Self-check: correction log", "Warnings", "Timing", "What the model saw",
           "Confidence and alternatives"]  # /recognize's outputs


def named(outputs) -> dict:
    """/recognize's outputs by label."""
    return dict(zip(RETURNS, outputs))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(model: str | None, log_path: Path, **env: str):
    """Run `python app.py` on a free port; yields (url, seconds until the page answered 200)."""
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "UNIMUMER_MODEL")}
    child_env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
                     HF_ENDPOINT="http://hub.invalid", GRADIO_ANALYTICS_ENABLED="False",
                     OMP_NUM_THREADS="1", **env)
    if model:
        child_env["UNIMUMER_MODEL"] = str(model)
    url = f"http://127.0.0.1:{port}/"
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=child_env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            while True:
                elapsed = time.monotonic() - start
                if proc.poll() is not None or elapsed > START_LIMIT:
                    pytest.fail(f"app.py did not serve within {START_LIMIT} s (exit code {proc.returncode}):\n"
                                + log_path.read_text(errors="replace")[-3000:])
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.25)
            yield url, elapsed
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def config_value(url: str, elem_id: str):
    """The initial value of the component with `elem_id`, from the page's /config."""
    with urllib.request.urlopen(url + "config", timeout=10) as response:
        config = json.load(response)
    values = [c["props"].get("value") for c in config["components"] if c["props"].get("elem_id") == elem_id]
    assert values, f"no component #{elem_id}"
    return values[0]


def handwriting(path: Path, size=(360, 120)) -> Path:
    """A dark-on-white drawing of `x + 1` (strokes, like a scanned note)."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for line in ([(30, 30), (90, 95)], [(90, 30), (30, 95)], [(140, 62), (200, 62)], [(170, 32), (170, 92)],
                 [(250, 45), (275, 25), (275, 98)]):
        draw.line(line, fill="black", width=6)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    with serve_app(tiny_model_dir, tmp_path_factory.mktemp("app") / "app.log") as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def formula(tmp_path_factory) -> Path:
    return handwriting(tmp_path_factory.mktemp("images") / "formula.png")


def test_starts_offline_within_a_minute(server, tiny_model_dir):
    url, seconds = server
    assert seconds < START_LIMIT
    info = config_value(url, "model-info")
    assert str(tiny_model_dir) in info and "cpu" in info  # which checkpoint and device answer


def test_api_takes_the_image_first_and_defaults_for_the_rest(client):
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/recognize"]
    params = endpoint["parameters"]
    assert params[0]["parameter_name"] == "image"
    assert not params[0]["parameter_has_default"]
    assert all(p["parameter_has_default"] for p in params[1:]), [p["parameter_name"] for p in params]
    assert [r["label"] for r in endpoint["returns"]] == RETURNS


def test_recognize_an_image_file(client, formula):
    out = named(client.predict(handle_file(str(formula)), api_name="/recognize"))
    latex, rendered, tree, marked, log, timing = (out[k] for k in (
        "LaTeX", "Preview", "Tree-CoT", "Self-check: suspected errors", "Self-check: correction log", "Timing"))
    assert isinstance(latex, str) and latex.strip()
    assert "$$" in rendered  # KaTeX input, canonical or verbatim
    assert "visual tokens" in timing and "plain" in timing
    assert tree == "" and marked == "" and log == ""  # those modes did not run


def test_every_mode_through_the_api(client, formula):
    out = named(client.predict(handle_file(str(formula)), tree=True, count=True, correct=True, max_new_tokens=24,
                               api_name="/recognize"))
    latex, counts, timing = out["LaTeX"], out["Symbol counts"], out["Timing"]
    assert isinstance(latex, str)
    assert "Tree-CoT + counting + self-check" in timing
    assert isinstance(counts, dict) and counts["headers"] == ["Symbol", "Count"]


def test_a_sketch_through_the_api(client, tmp_path):
    page = Image.new("RGBA", (400, 150), "white")
    ink = Image.new("RGBA", (400, 150), (0, 0, 0, 0))
    ImageDraw.Draw(ink).line([(40, 40), (360, 110)], fill="black", width=8)
    composite = page.copy()
    composite.alpha_composite(ink)
    files = {}
    for name, image in (("background", page), ("layer", ink), ("composite", composite)):
        image.save(tmp_path / f"{name}.png")
        files[name] = handle_file(str(tmp_path / f"{name}.png"))
    sketch = {"background": files["background"], "layers": [files["layer"]], "composite": files["composite"]}
    out = named(client.predict(None, sketch, api_name="/recognize"))
    assert isinstance(out["LaTeX"], str) and "visual tokens" in out["Timing"]


def test_nothing_drawn_is_a_friendly_message_without_a_model_call(client):
    out = named(client.predict(None, api_name="/recognize"))
    assert out["LaTeX"] == "" and out["Timing"] == ""
    assert "Draw an expression" in out["Preview"]


def test_twelve_concurrent_calls_all_succeed(server, formula):
    def call(_):
        return Client(server[0], verbose=False).predict(handle_file(str(formula)), api_name="/recognize")

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(12)))
    assert len(results) == 12 and all(isinstance(r[0], str) and "visual tokens" in named(r)["Timing"] for r in results)
    assert len({r[0] for r in results}) == 1  # greedy: the same image gives the same answer


def test_a_text_file_named_png_is_a_clear_error_and_the_server_keeps_serving(client, formula, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image\n")
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(fake)), api_name="/recognize")
    message = str(caught.value)
    assert "Traceback" not in message and 'File "' not in message
    assert "image" in message.lower() and "\n" not in message.strip() and len(message) < 300
    assert "visual tokens" in named(client.predict(handle_file(str(formula)), api_name="/recognize"))["Timing"]


def test_an_oversized_image_is_refused_in_one_sentence(client, tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("1", (12000, 12000), 1).save(huge)  # 144 megapixels, a few kB on disk
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(huge)), api_name="/recognize")
    message = str(caught.value)
    assert "Traceback" not in message and "\n" not in message.strip() and len(message) < 300


def test_an_unreachable_hub_starts_in_seconds_and_says_so(tmp_path):
    """No model configured, nothing cached, HF_HUB_OFFLINE unset, the Hub unreachable: the bundled model
    answers within the start limit, and the page and the log say that this small offline model answers."""
    assert bundled_available()
    with serve_app(None, tmp_path / "app.log", HF_HOME=str(tmp_path / "hf-home")) as (url, seconds):
        assert seconds < START_LIMIT
        info = config_value(url, "model-info")
        assert "banner" in info and "cannot be reached" in info and "small offline model" in info
        latex, *_ = Client(url, verbose=False).predict(handle_file(str(ROOT / "examples" / "quadratic.png")),
                                                        api_name="/recognize")
        assert latex.strip()
    assert "small offline model" in (tmp_path / "app.log").read_text()


def test_a_model_that_cannot_load_is_shown_on_the_page(tmp_path):
    missing = tmp_path / "no-such-model"
    with serve_app(missing, tmp_path / "app.log") as (url, seconds):
        info = config_value(url, "model-info")
        assert "could not be loaded" in info and "no-such-model" in info
        with pytest.raises(AppError) as caught:
            Client(url, verbose=False).predict(None, api_name="/recognize")
        assert "model is not available" in str(caught.value)
    log = (tmp_path / "app.log").read_text()
    assert "Could not load the model" in log and "Traceback" not in log


def test_the_model_menu_offers_what_loads_here_and_answers_with_it(server, client, formula, tiny_model_dir):
    with urllib.request.urlopen(server[0] + "config", timeout=10) as response:
        config = json.load(response)
    menu = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "model")
    names = [choice[1] for choice in menu["choices"]]
    assert names[0] == menu["value"] == str(tiny_model_dir) and "bundled" in names and menu["visible"]
    assert "2 B model takes about" in menu["info"]  # on a CPU the menu says what a released model costs
    out = named(client.predict(handle_file(str(formula)), model="bundled", api_name="/recognize"))
    assert "visual tokens" in out["Timing"]
    with pytest.raises(AppError):
        client.predict(handle_file(str(formula)), model="qwen9", api_name="/recognize")


def test_recognize_with_alternatives_and_token_confidence(client, formula):
    out = named(client.predict(handle_file(str(formula)), alternatives=3, max_new_tokens=8, api_name="/recognize"))
    readings = out["Confidence and alternatives"]
    alternatives = readings["alternatives"]
    assert 1 <= len(alternatives) <= 3 and alternatives[0]["latex"] == out["LaTeX"]
    scores = [a["score"] for a in alternatives]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert [t for t, _ in readings["confidence"]] == out["LaTeX"].split()
    latex, rendered = client.predict(readings, len(alternatives) - 1, api_name="/alternative")
    assert latex == alternatives[-1]["latex"] and "$$" in rendered
    with pytest.raises(AppError, match=f"There is no alternative 7: this reading has {len(alternatives)}"):
        client.predict(readings, 7, api_name="/alternative")
    with pytest.raises(AppError, match="greater than maximum value 5"):  # the slider's own sentence
        client.predict(handle_file(str(formula)), alternatives=9, api_name="/recognize")


def test_fix_by_marked_spans_or_marks_in_the_reading(client, formula):
    latex, rendered, marked, log, warnings, timing, readings = client.predict(
        handle_file(str(formula)), latex="x ^ { z } + 1", spans=[[3, 4], [7, 7]], max_new_tokens=8,
        api_name="/fix")
    assert marked == "x ^ { <error_start> z <error_end> } + 1 <deleted>"
    assert isinstance(latex, str) and latex.strip() and "fix" in timing and "visual tokens" in timing
    again = client.predict(handle_file(str(formula)), latex="x <deleted> + 1", max_new_tokens=8, api_name="/fix")
    assert again[2] == "x <deleted> + 1" and "fix" in again[5]  # the marks as written


@pytest.mark.parametrize("latex, spans, message", [
    ("x + 1", [], "Select the wrong part"),
    ("  ", [[0, 1]], "no reading to fix"),
    ("x + 1", [[2, 9]], "outside the reading"),
])
def test_fix_refuses_bad_marks_in_one_sentence(client, formula, latex, spans, message):
    with pytest.raises(AppError, match=message) as caught:
        client.predict(handle_file(str(formula)), latex=latex, spans=spans, api_name="/fix")
    assert "\n" not in str(caught.value).strip()


def test_an_inkml_file_through_the_api(client, tmp_path):
    from unimumer.ink import write_inkml

    good, bad = tmp_path / "plus.inkml", tmp_path / "bad.inkml"
    good.write_bytes(write_inkml([[(0, 5), (10, 5)], [(5, 0), (5, 10)]]))
    bad.write_text("<ink><trace>1 2, 3 4</trace>")
    out = named(client.predict(None, ink=handle_file(str(good)), api_name="/recognize"))
    assert "visual tokens" in out["Timing"]
    with pytest.raises(AppError, match="The InkML file 'bad.inkml' is not valid XML"):
        client.predict(None, ink=handle_file(str(bad)), api_name="/recognize")


@pytest.fixture(scope="module")
def no_error_tasks(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with a training record that lists no error-correction tasks (as the ConvMer run's)."""
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("partial") / "model")
    (folder / "unimumer_training.json").write_text(json.dumps({"tasks": ["count", "tree", "vanilla"]}))
    return folder


def config_props(url: str, elem_id: str) -> dict:
    with urllib.request.urlopen(url + "config", timeout=10) as response:
        config = json.load(response)
    return next(c["props"] for c in config["components"] if c["props"].get("elem_id") == elem_id)


def test_a_model_not_trained_for_error_correction_has_no_such_toggle(no_error_tasks, tmp_path):
    with serve_app(no_error_tasks, tmp_path / "app.log") as (url, _):
        assert config_props(url, "correct-toggle")["visible"] is False
        assert config_props(url, "tree-toggle")["visible"] is True
        assert config_props(url, "tokens")["label"] == "Tokens: shaded = the model is unsure"  # no Fix to explain
        note = config_props(url, "untrained")
        assert note["visible"] and note["value"].startswith("Error correction is hidden: this model was not "
                                                            "trained for it (it learned count, tree, vanilla)")
        # the API still takes the mode, and the answer says what to expect
        out = named(Client(url, verbose=False).predict(handle_file(str(handwriting(tmp_path / "x.png"))),
                                                       correct=True, api_name="/recognize"))
        assert "not trained for error correction" in out["Warnings"]


def test_the_toggles_follow_the_model_chosen_in_the_menu(tiny_model_dir, no_error_tasks, monkeypatch):
    sys.path.insert(0, str(ROOT))
    import app
    from unimumer import Recognizer

    monkeypatch.setattr(app, "RECOGNIZER", Recognizer.from_pretrained(str(tiny_model_dir)))
    monkeypatch.setattr(app, "OTHER_RECOGNIZERS", {})
    monkeypatch.setenv(app.MODELS_VAR, str(no_error_tasks))
    tree, count, correct, fix_row, tokens, note = app.menu_abilities(str(no_error_tasks))
    assert (tree["visible"], count["visible"], correct["visible"], fix_row["visible"]) == (True, True, False, False)
    assert correct["value"] is False and note["visible"] and "Error correction is hidden" in note["value"]
    assert "Fix" not in tokens["label"]
    for model in (str(tiny_model_dir), "qwen9"):  # back to a model that learned all, or one that cannot load
        tree, count, correct, fix_row, tokens, note = app.menu_abilities(model)
        assert [u["visible"] for u in (tree, count, correct, fix_row, note)] == [True, True, True, True, False]
        assert tokens["label"].endswith("then Fix")
