"""Recognizer end to end with a random `unimumer.tiny` model: every mode, odd images, batching, round trip."""
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from unimumer.generation import REPETITION_WARNING, GenerationOptions, periodic_tail
from unimumer.images import ImageError, visual_tokens
from unimumer.recognizer import KEEP_CANDIDATE_WARNING, MODES, Recognizer, _Pass, normalize_modes

from conftest import shared_path

FEW = {"max_new_tokens": 8}  # garbage from a random model: a few tokens prove the path


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir):
    return Recognizer.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="module")
def handwriting():
    """Real handwriting: CROHME 2014 ink rendered by unimumer.ink."""
    from unimumer.ink import parse_inkml, render_ink

    folder = shared_path("crohme", "inkml", "2014")
    return [render_ink(parse_inkml(path)) for path in sorted(folder.glob("*.inkml"))[:3]]


def _scribble(width=240, height=90, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        draw.line([tuple(rng.integers(8, (width - 8, height - 8))) for _ in range(3)], fill="black", width=3)
    return image if mode == "RGB" else image.convert(mode)


def _passes_of(mode) -> set[str]:
    modes = normalize_modes(mode)
    readings = {m for m in ("vanilla", "tree", "count") if m in modes} or {"vanilla"}
    return readings | ({"error_find"} if "correct" in modes else set())


@pytest.mark.parametrize("mode", [*MODES, ["tree", "count", "correct"]])
def test_every_mode_on_real_handwriting(recognizer, handwriting, mode):
    result = recognizer.recognize(handwriting[0], mode=mode, **FEW)
    assert isinstance(result.latex, str) and result.error is None
    assert result.mode == "+".join(normalize_modes(mode))
    assert _passes_of(mode) <= set(result.raw) == set(result.timings)
    assert 0 < result.visual_tokens <= 512 * 512 // 28**2
    assert result.seconds >= sum(result.timings.values()) > 0
    if "correct" in normalize_modes(mode):
        assert result.candidate is not None
    json.dumps(result.to_dict())


def test_sampled_garbage_parses_in_every_mode(recognizer, handwriting):
    torch.manual_seed(0)
    results = recognizer.recognize_batch(handwriting, mode=list(MODES), max_new_tokens=24, do_sample=True)
    assert [r.mode for r in results] == ["vanilla+tree+count+correct"] * 3
    for result in results:
        assert all(isinstance(w, str) and w for w in result.warnings)
        json.dumps(result.to_dict())


@pytest.mark.parametrize("mode", ["CMYK", "P", "I;16", "LA", "L", "1"])
def test_odd_image_modes(recognizer, mode):
    image = _scribble(mode=mode)
    assert image.mode == mode
    result = recognizer.recognize(image, **FEW)
    assert result.visual_tokens > 0


def test_transparent_sketch_and_numpy_input(recognizer):
    sketch = Image.new("RGBA", (300, 120), (0, 0, 0, 0))
    ImageDraw.Draw(sketch).line((20, 20, 280, 100), fill=(0, 0, 0, 255), width=5)
    assert recognizer.recognize(sketch, **FEW).visual_tokens > 0  # black ink on a page that is not black
    assert recognizer.recognize(np.asarray(_scribble()), **FEW).visual_tokens > 0


@pytest.mark.parametrize("mode", ["RGBA", "RGB"])
def test_small_drawing_on_a_big_canvas_costs_few_visual_tokens(recognizer, mode):
    """Upstream's preprocessing keeps a 1200x400 canvas whole: 602 visual tokens. A sketch is cropped to the ink."""
    canvas = Image.new(mode, (1200, 400), (0, 0, 0, 0) if mode == "RGBA" else "white")
    ink = (0, 0, 0, 255) if mode == "RGBA" else "black"
    draw = ImageDraw.Draw(canvas)
    draw.line((540, 170, 600, 230, 660, 170), fill=ink, width=5)
    draw.ellipse((560, 180, 640, 220), outline=ink, width=5)
    result = recognizer.recognize(canvas, crop=True, **FEW)
    assert 0 < result.visual_tokens <= 602 // 3
    prepared = recognizer.prepare(canvas, crop=True)  # the processor's count agrees with unimumer.images' arithmetic
    arithmetic = visual_tokens(*prepared.size, factor=28, min_pixels=56 * 56, max_pixels=512 * 512)
    assert result.visual_tokens == recognizer.visual_tokens(prepared) == arithmetic
    assert recognizer.recognize(canvas, **FEW).visual_tokens > 3 * result.visual_tokens  # an upload: whole


def test_blank_page_is_refused(recognizer):
    with pytest.raises(ImageError):
        recognizer.recognize(Image.new("RGB", (400, 200), "white"))
    blank = Image.new("RGB", (400, 200), "white")
    results = recognizer.recognize_batch([blank, _scribble()], raise_errors=False, **FEW)
    assert results[0].error and results[0].latex == ""
    assert results[1].error is None and results[1].visual_tokens > 0


def test_batches_give_the_same_results_in_input_order(recognizer):
    images = [_scribble(120 + 90 * (i % 4), 60 + 30 * (i % 3), seed=i) for i in range(7)]
    alone = [recognizer.recognize(image, max_new_tokens=12, loop_guard=False) for image in images]
    batched = recognizer.recognize_batch(images, batch_size=4, max_new_tokens=12, loop_guard=False)
    assert [r.visual_tokens for r in batched] == [r.visual_tokens for r in alone]
    assert len({r.visual_tokens for r in alone}) > 3  # sizes differ, so a shuffled order would show
    assert [r.raw for r in batched] == [r.raw for r in alone]


def test_save_pretrained_round_trip_is_identical(recognizer, handwriting, tmp_path):
    recognizer.save_pretrained(tmp_path)
    again = Recognizer.from_pretrained(str(tmp_path))
    images = handwriting + [_scribble()]
    first = recognizer.recognize_batch(images, mode="tree", max_new_tokens=24, loop_guard=False)
    second = again.recognize_batch(images, mode="tree", max_new_tokens=24, loop_guard=False)
    assert [r.raw for r in first] == [r.raw for r in second]
    assert any(r.raw["tree"] for r in first)  # the random model does emit tokens (nothing trivially equal)


def test_loop_guard_stops_repetition(recognizer):
    unguarded = recognizer.recognize(_scribble(), max_new_tokens=160, loop_guard=False)
    guarded = recognizer.recognize(_scribble(), max_new_tokens=160)
    if REPETITION_WARNING not in guarded.warnings:
        pytest.skip("this random model does not loop on this image")
    assert len(guarded.raw["vanilla"]) < len(unguarded.raw["vanilla"])
    assert unguarded.raw["vanilla"].startswith(guarded.raw["vanilla"])


def test_periodic_tail():
    rows = torch.tensor([[5] * 20, [1, 2] * 10, list(range(20)), [7, 8, 9] * 5 + [1] * 5])
    assert periodic_tail(rows).tolist() == [True, True, False, False]
    assert periodic_tail(torch.tensor([[1, 2] * 5])).tolist() == [False]  # too short to call it a loop


def test_generation_options():
    greedy = GenerationOptions().config("tree", eos_token_id=[2, 0], pad_token_id=0)
    assert (greedy.do_sample, greedy.max_new_tokens, greedy.eos_token_id) == (False, 2048, [2, 0])
    sampled = GenerationOptions(do_sample=True, max_new_tokens=7).config("vanilla", [2], 0)
    assert (sampled.temperature, sampled.top_p, sampled.top_k, sampled.max_new_tokens) == (0.2, 0.8, 50, 7)
    per_task = GenerationOptions(max_new_tokens={"tree": 300})
    assert (per_task.budget("tree"), per_task.budget("count")) == (300, 1024)


def test_stops_at_im_end(recognizer):
    tokenizer = recognizer.processor.tokenizer
    assert recognizer.eos_token_ids == tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])


def test_unknown_mode():
    with pytest.raises(ValueError, match="Unknown mode bogus"):
        normalize_modes("tree+bogus")
    assert normalize_modes(["correct", "tree"]) == ("tree", "correct")


class Scripted(Recognizer):
    """The real pipeline with the model's answers written out per task (checks the mode logic)."""

    def __init__(self, base: Recognizer, answers: dict[str, str]):
        super().__init__(base.model, base.processor)
        self.answers, self.prompts = answers, {}

    def _generate(self, task, images, prompts, settings):
        self.prompts[task] = prompts
        return [_Pass(self.answers[task], 0.01, 5, looped=False) for _ in images]


def test_correct_mode_fixes_the_marked_place(recognizer):
    scripted = Scripted(recognizer, {
        "vanilla": "x ^ { z }",
        "error_find": "x ^ { <error_start> z <error_end> }",
        "error_fix": "REPLACE:z -> 2\nx ^ { 2 }",
    })
    result = scripted.recognize(_scribble(), mode="correct")
    assert (result.latex, result.candidate, result.log) == ("x ^ { 2 }", "x ^ { z }", ["REPLACE:z -> 2"])
    assert result.marked == "x ^ { <error_start> z <error_end> }" and result.warnings == []
    assert "erroneous formula: x ^ { z }\n" in scripted.prompts["error_find"][0]
    assert "Marked formula: x ^ { <error_start> z <error_end> }\n" in scripted.prompts["error_fix"][0]


def test_correct_mode_stops_when_nothing_is_marked(recognizer):
    scripted = Scripted(recognizer, {"vanilla": "x ^ { 2 }", "error_find": "x ^ { 2 }"})
    result = scripted.recognize(_scribble(), mode="correct")
    assert result.latex == "x ^ { 2 }" and "error_fix" not in result.raw and result.log is None


def test_correct_mode_keeps_the_reading_when_the_fix_is_garbage(recognizer):
    scripted = Scripted(recognizer, {"vanilla": "x + 1", "error_find": "x <error_start> + <error_end> 1",
                                     "error_fix": "REPLACE:z\nfoo\nbar"})
    result = scripted.recognize(_scribble(), mode="correct")
    assert result.latex == "x + 1" and KEEP_CANDIDATE_WARNING in result.warnings


def test_combined_modes_take_the_first_well_formed_reading(recognizer):
    scripted = Scripted(recognizer, {
        "tree": "garbage (no tree)",
        "count": "x: 1, +: 1, 1: 1\nx + 1",
        "error_find": "x + 1",
    })
    result = scripted.recognize(_scribble(), mode=["tree", "count", "correct"])
    assert result.latex == "x + 1" and result.candidate == "x + 1" and result.structured
    assert result.counts == [("x", 1), ("+", 1), ("1", 1)] and result.tree is None
    assert any("syntax tree" in w for w in result.warnings)


def test_tree_and_count_extras_and_warnings(recognizer):
    tree = "\\frac\n\ta (above)\n\tb (below)\n\\frac { a } { b }"
    scripted = Scripted(recognizer, {"tree": tree, "count": "x: 2\nx"})
    result = scripted.recognize(_scribble(), mode=["tree", "count"])
    assert result.tree == "\\frac\n\ta (above)\n\tb (below)" and result.latex == "\\frac { a } { b }"
    assert result.counts == [("x", 2)]
    assert any("counts disagree" in w for w in result.warnings)


def test_max_pixels_defaults_to_the_checkpoints_training_resolution(tmp_path):
    from unimumer.tiny import build_tiny

    small = build_tiny(tmp_path / "small-images", seed=1, max_pixels=40_000)
    assert Recognizer.from_pretrained(str(small)).max_pixels == 40_000
    assert Recognizer.from_pretrained(str(small), max_pixels=90_000).max_pixels == 90_000


def test_a_checkpoint_says_which_modes_it_was_never_trained_for(tiny_model_dir, tmp_path):
    """The training record lists the task formats a run learned; a mode needing others gets a warning."""
    import shutil

    assert Recognizer.from_pretrained(str(tiny_model_dir)).untrained_modes(MODES) == ()  # no record: all
    folder = shutil.copytree(tiny_model_dir, tmp_path / "no-error-tasks")
    (folder / "unimumer_training.json").write_text(json.dumps({"tasks": ["count", "tree", "vanilla"]}))
    partial = Recognizer.from_pretrained(str(folder))
    assert partial.untrained_modes("tree+count+correct") == ("correct",)
    assert partial.untrained_note("vanilla") is None
    note = partial.untrained_note("correct")
    assert note.startswith("This model was not trained for error correction (it learned count, tree, vanilla)")
    assert note in partial.recognize(_scribble(), mode="count+correct", **FEW).warnings
    assert note not in partial.recognize(_scribble(), mode="tree", **FEW).warnings
    assert note in partial.fix(_scribble(), "x <deleted>", **FEW).warnings


def test_alternatives_come_best_first_with_scores_and_token_confidence(recognizer):
    result = recognizer.recognize(_scribble(), alternatives=3, **FEW)
    scores = [a.score for a in result.alternatives]
    assert 1 <= len(result.alternatives) <= 3 and scores == sorted(scores, reverse=True)
    assert all(0 < s <= 1 for s in scores) and len({a.latex for a in result.alternatives}) == len(scores)
    assert result.latex == result.alternatives[0].latex
    assert [t for t, _ in result.confidence] == result.latex.split()
    assert all(0 < p <= 1 for _, p in result.confidence)
    plain = recognizer.recognize(_scribble(), **FEW)
    assert plain.confidence is None and plain.alternatives is None  # only when asked for
    json.dumps(result.to_dict())


def test_alternatives_by_sampling_and_their_limit(recognizer):
    result = recognizer.recognize(_scribble(), alternatives=2, do_sample=True, temperature=1.0, **FEW)
    assert 1 <= len(result.alternatives) <= 2
    for bad in (0, 6):
        with pytest.raises(ValueError, match="from 1 to 5"):
            recognizer.recognize(_scribble(), alternatives=bad)


def test_fix_runs_error_fix_on_the_marked_places(recognizer):
    scripted = Scripted(recognizer, {"error_fix": "REPLACE:z -> 2\nx ^ { 2 }"})
    result = scripted.fix(_scribble(), "x ^ { <error_start> z <error_end> }")
    assert (result.latex, result.candidate, result.mode) == ("x ^ { 2 }", "x ^ { z }", "fix")
    assert result.log == ["REPLACE:z -> 2"]
    assert "Marked formula: x ^ { <error_start> z <error_end> }\n" in scripted.prompts["error_fix"][0]
    assert list(scripted.prompts) == ["error_fix"] and result.warnings == []


def test_fix_refuses_a_reading_without_marks_in_one_sentence(recognizer):
    for marked, message in (("x ^ { z }", "Mark the wrong part"), ("x <error_start> z", "never closed")):
        with pytest.raises(ValueError, match=message):
            recognizer.fix(_scribble(), marked)
    assert recognizer.fix(_scribble(), "x <deleted>", **FEW).candidate == "x"  # the real model runs


def test_an_inkml_file_is_recognised_as_its_drawn_ink(recognizer, tmp_path):
    from unimumer.images import ink_image
    from unimumer.ink import write_inkml

    path = tmp_path / "x.inkml"
    path.write_bytes(write_inkml([[(0, 0), (10, 10)], [(10, 0), (0, 10)]]))
    result = recognizer.recognize(path, **FEW)
    assert result.visual_tokens == recognizer.visual_tokens(recognizer.prepare(ink_image(path)))
    path.write_text("<ink>")
    with pytest.raises(ImageError, match="is not valid XML"):
        recognizer.recognize(path)
