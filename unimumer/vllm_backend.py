"""Optional vLLM backend for large evaluations on GPUs (`predict --backend vllm`).

vLLM pins its own torch and transformers versions, so it is never a default requirement: install it in
a separate GPU environment (`pip install vllm`). Same modes, prompts and results as `Recognizer`; only
the generate call differs (vLLM schedules the batches itself, so `batch_size` only sets how many
requests are submitted at once).
"""
from __future__ import annotations

import math
import time

from unimumer.confidence import Reading, sequence_score
from unimumer.generation import GenerationOptions, chat_prompt, image_size, looped, visual_token_count
from unimumer.hub import ModelLoadError, download, resolve_model
from unimumer.processor import load_processor
from unimumer.recognizer import Recognizer, _Pass, training_max_pixels

MISSING_VLLM = (
    "The vLLM backend needs the optional vllm package (GPU only), which is not installed; "
    "install it with `pip install vllm` in a separate environment or use --backend transformers."
)


def import_vllm():
    """The vllm module, or ModelLoadError with one clear sentence."""
    try:
        import vllm
    except ImportError:
        raise ModelLoadError(MISSING_VLLM) from None
    return vllm


def build_requests(processor, images, prompts: list[str]) -> list[dict]:
    """vLLM prompts: the ChatML text with the image placeholder, and the image as multi-modal data."""
    return [
        {"prompt": chat_prompt(processor, prompt), "multi_modal_data": {"image": image}}
        for image, prompt in zip(images, prompts)
    ]


def sampling_kwargs(settings: GenerationOptions, task: str, stop_token_ids: list[int]) -> dict:
    """`vllm.SamplingParams` arguments equivalent to `settings` (temperature 0 is greedy in vLLM)."""
    kwargs = {
        "max_tokens": settings.budget(task),
        "temperature": settings.temperature if settings.do_sample else 0.0,
        "stop_token_ids": list(stop_token_ids),
        "skip_special_tokens": True,
        "repetition_penalty": settings.repetition_penalty or 1.0,
    }
    if settings.do_sample:
        kwargs.update(top_p=settings.top_p, top_k=settings.top_k)
    if settings.scored:  # logprobs=0: the chosen token's own log-probability only
        kwargs.update(logprobs=0, n=settings.readings(task))
        if kwargs["n"] > 1 and not settings.do_sample:
            raise ValueError("The vLLM backend gives alternatives only when sampling; use the transformers backend.")
    return kwargs


def engine_kwargs(path: str, size: dict, **overrides) -> dict:
    """`vllm.LLM` arguments: one image and no video per prompt, the processor `size` of the transformers
    backend (`unimumer.generation.image_size`), a context that holds a prompt and the longest answer."""
    kwargs = {
        "model": path,
        "dtype": "bfloat16",
        "limit_mm_per_prompt": {"image": 1, "video": 0},
        "mm_processor_kwargs": {"size": size},
        "max_model_len": 4096,  # Qwen3.5 declares 262,144 positions; a prompt + 2,048 new tokens fit in 4,096
        "seed": 0,
    }
    kwargs.update(overrides)
    return kwargs


class VllmRecognizer(Recognizer):
    """`Recognizer` whose generate calls go to a `vllm.LLM` engine."""

    @classmethod
    def from_pretrained(
        cls, model: str | None = None, max_pixels: int | None = None, **overrides
    ) -> "VllmRecognizer":
        """Load with vLLM; `overrides` go to `vllm.LLM` (e.g. tensor_parallel_size, gpu_memory_utilization)."""
        vllm = import_vllm()  # before any download: fail fast when the extra is missing
        choice = resolve_model(model)
        path = download(choice)
        processor = load_processor(path)
        max_pixels = max_pixels or training_max_pixels(processor)
        llm = vllm.LLM(**engine_kwargs(path, image_size(processor, max_pixels), **overrides))
        return cls(
            llm,
            processor,
            model_name=choice.name,
            max_pixels=max_pixels,
            notice=choice.notice,
            is_bundled=choice.is_bundled,
        )

    @property
    def device(self) -> str:
        return "cuda"

    def save_pretrained(self, out_dir):
        raise NotImplementedError("Save checkpoints with the transformers backend (Recognizer).")

    def visual_tokens(self, image) -> int:
        """As the engine's processor counts them: its `size` is fixed for every request."""
        return visual_token_count(self.processor, image.width, image.height, self.max_pixels)

    def _generate(self, task, images, prompts, settings: GenerationOptions) -> list[_Pass]:
        from vllm import SamplingParams

        start = time.perf_counter()
        params = SamplingParams(**sampling_kwargs(settings, task, self.eos_token_ids))
        outputs = self.model.generate(build_requests(self.processor, images, prompts), params, use_tqdm=False)
        share = (time.perf_counter() - start) / max(1, len(images))
        passes = []
        for image, output in zip(images, outputs):
            readings = sorted((_reading(c) for c in output.outputs), key=lambda r: -r.score) if settings.scored else []
            completion = output.outputs[0]
            cut = completion.finish_reason == "length" and looped(list(completion.token_ids))
            text = readings[0].text if readings else completion.text.strip()
            passes.append(_Pass(text, share, self.visual_tokens(image), cut, readings=readings))
        return passes


def _reading(completion) -> Reading:
    """A vLLM completion with per-token log-probabilities (logprobs=0) as a scored Reading."""
    chosen = [step[token] for step, token in zip(completion.logprobs, completion.token_ids)]
    logprobs = [entry.logprob for entry in chosen]
    pieces = [(entry.decoded_token or "", math.exp(entry.logprob)) for entry in chosen]
    return Reading(completion.text.strip(), pieces, round(sequence_score(logprobs), 4))
