"""The optional vLLM backend, tested without vLLM: request building, settings, and the pipeline on a fake engine."""
import sys
import types
from types import SimpleNamespace

import pytest
from PIL import Image, ImageDraw

from unimumer.generation import GenerationOptions, image_size
from unimumer.hub import ModelLoadError
from unimumer.processor import load_processor
from unimumer.tasks import human_prompt
from unimumer.vllm_backend import (
    MISSING_VLLM,
    VllmRecognizer,
    build_requests,
    engine_kwargs,
    import_vllm,
    sampling_kwargs,
)


def _scribble(width=260, height=90):
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).line((12, 70, 80, 15, 150, 75, width - 12, 20), fill="black", width=4)
    return image


def test_requests_carry_the_chat_prompt_and_the_image(tiny_model_dir):
    processor = load_processor(tiny_model_dir)
    images = [_scribble(), _scribble(400, 120)]
    prompt = human_prompt("tree")
    requests = build_requests(processor, images, [prompt, prompt])
    assert [r["multi_modal_data"]["image"] for r in requests] == images
    assert requests[0]["prompt"] == (
        f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_sampling_settings():
    greedy = sampling_kwargs(GenerationOptions(), "count", [2, 0])
    assert greedy == {"max_tokens": 1024, "temperature": 0.0, "stop_token_ids": [2, 0], "skip_special_tokens": True,
                      "repetition_penalty": 1.0}
    sampled = sampling_kwargs(GenerationOptions(do_sample=True, max_new_tokens=9, repetition_penalty=1.05), "tree", [2])
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.2, 0.8, 50)
    assert (sampled["max_tokens"], sampled["repetition_penalty"]) == (9, 1.05)


def test_engine_settings():
    size = {"shortest_edge": 65536, "longest_edge": 16777216}
    kwargs = engine_kwargs("/m", size, tensor_parallel_size=2)
    assert kwargs["mm_processor_kwargs"] == {"size": size} and "trust_remote_code" not in kwargs
    assert kwargs["limit_mm_per_prompt"] == {"image": 1, "video": 0} and kwargs["tensor_parallel_size"] == 2


def test_missing_vllm_is_one_clear_sentence(monkeypatch, tiny_model_dir, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    with pytest.raises(ModelLoadError) as error:
        import_vllm()
    assert str(error.value) == MISSING_VLLM
    from unimumer.cli import main

    _scribble().save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "x.png"), "--backend", "vllm", "--model", str(tiny_model_dir)]) == 1
    assert MISSING_VLLM in capsys.readouterr().err


class FakeLLM:
    """Stands in for vllm.LLM: records the requests, answers per task like a model would."""

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []

    def generate(self, requests, params, use_tqdm=True):
        self.calls.append((requests, params))
        answers = []
        for request in requests:
            text = "x ^ { <error_start> z <error_end> }" if "Marked formula: <|" in request["prompt"] else "x ^ { z }"
            if "Correction log" in request["prompt"]:
                text = "REPLACE:z -> 2\nx ^ { 2 }"
            completion = SimpleNamespace(text=text, token_ids=[5, 6], finish_reason="stop")
            answers.append(SimpleNamespace(outputs=[completion]))
        return answers


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def test_pipeline_runs_on_the_engine(fake_vllm, tiny_model_dir):
    recognizer = VllmRecognizer.from_pretrained(str(tiny_model_dir), max_pixels=200_000)
    engine = recognizer.model
    assert engine.kwargs["model"] == str(tiny_model_dir)
    assert engine.kwargs["mm_processor_kwargs"]["size"] == image_size(recognizer.processor, 200_000)
    results = recognizer.recognize_batch([_scribble(), _scribble(500, 100)], mode="correct", batch_size=2)
    assert [r.latex for r in results] == ["x ^ { 2 }"] * 2
    assert results[0].candidate == "x ^ { z }" and results[0].log == ["REPLACE:z -> 2"]
    assert [len(requests) for requests, _ in engine.calls] == [2, 2, 2]  # vanilla, error_find, error_fix
    assert engine.calls[0][1]["temperature"] == 0.0 and engine.calls[0][1]["max_tokens"] == 1024
    expected = [recognizer.visual_tokens(recognizer.prepare(image)) for image in (_scribble(), _scribble(500, 100))]
    assert [r.visual_tokens for r in results] == expected and expected[0] > 0


def test_scores_and_alternatives_ask_the_engine_for_logprobs():
    scored = sampling_kwargs(GenerationOptions(token_scores=True), "vanilla", [2])
    assert (scored["logprobs"], scored["n"]) == (0, 1)
    sampled = sampling_kwargs(GenerationOptions(alternatives=3, do_sample=True), "tree", [2])
    assert sampled["n"] == 3 and sampling_kwargs(GenerationOptions(alternatives=3, do_sample=True), "error_fix", [2])["n"] == 1
    with pytest.raises(ValueError, match="only when sampling"):
        sampling_kwargs(GenerationOptions(alternatives=3), "vanilla", [2])
