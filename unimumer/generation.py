"""Generation settings shared by the transformers and vLLM backends: token budgets, sampling, loop guard."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, StoppingCriteria

from unimumer.confidence import MAX_ALTERNATIVES
from unimumer.decoding import MAX_NEW_TOKENS, SAMPLING

READING_TASKS = ("vanilla", "tree", "count")  # the passes that read the image from scratch
REPETITION_WARNING = "The model started repeating itself, so its output was cut short; the reading is unreliable."


@dataclass
class GenerationOptions:
    """How to decode. Greedy by default; `do_sample=True` uses upstream's evaluation sampling."""

    max_new_tokens: int | dict[str, int] | None = None  # one cap for every pass, or per task; else MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = SAMPLING["temperature"]
    top_p: float = SAMPLING["top_p"]
    top_k: int = SAMPLING["top_k"]
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    loop_guard: bool = True  # stop a sequence stuck repeating an n-gram (see RepetitionGuard)
    # Readings per reading pass (vanilla, tree, count): beams when greedy, samples when sampling; the
    # correction passes always give one.
    alternatives: int = 1
    token_scores: bool = False  # keep each generated token's probability (implied by alternatives > 1)
    cancel: threading.Event | None = None  # once set, generation stops (the app's stale live runs)

    def __post_init__(self):
        if not isinstance(self.alternatives, int) or not 1 <= self.alternatives <= MAX_ALTERNATIVES:
            raise ValueError(f"alternatives must be a whole number from 1 to {MAX_ALTERNATIVES}.")

    def readings(self, task: str) -> int:
        """How many readings the pass of `task` returns."""
        return self.alternatives if task in READING_TASKS else 1

    @property
    def scored(self) -> bool:
        return self.token_scores or self.alternatives > 1

    def budget(self, task: str) -> int:
        if isinstance(self.max_new_tokens, dict):
            return self.max_new_tokens.get(task) or MAX_NEW_TOKENS[task]
        return self.max_new_tokens or MAX_NEW_TOKENS[task]

    def config(self, task: str, eos_token_id: list[int], pad_token_id: int) -> GenerationConfig:
        """A fresh config: nothing is inherited from a checkpoint's generation_config.json sampling defaults."""
        extra = {}
        if self.do_sample:
            extra = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        if self.repetition_penalty:
            extra["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size:
            extra["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        readings = self.readings(task)
        if self.scored:  # the raw logits give the model's own probabilities, before any sampling warper
            extra.update(return_dict_in_generate=True, output_logits=True)
        return GenerationConfig(
            max_new_tokens=self.budget(task),
            do_sample=self.do_sample,
            num_beams=1 if self.do_sample else readings,
            num_return_sequences=readings,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **extra,
        )


def periodic_tail(tokens: torch.Tensor, max_period: int = 32, repeats: int = 6, min_span: int = 16) -> torch.Tensor:
    """Rows (of a [batch, length] tensor) whose end is one n-gram repeated: n <= max_period, covering at
    least max(min_span, repeats * n) tokens. A real formula rarely repeats a chunk six times in a row."""
    looped = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    for period in range(1, max_period + 1):
        span = max(min_span, repeats * period)
        if tokens.shape[1] < span:
            break
        tail = tokens[:, -span:]
        looped |= (tail[:, period:] == tail[:, :-period]).all(dim=1)
    return looped


class RepetitionGuard(StoppingCriteria):
    """Stops rows whose generated tokens end in a loop (random or confused models otherwise run to the budget)."""

    def __init__(self, prompt_length: int):
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        return periodic_tail(input_ids[:, self.prompt_length :])


class Cancelled(StoppingCriteria):
    """Stops every row once `event` is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def looped(token_ids: list[int]) -> bool:
    """Whether a finished generation (without its end token) was cut by the loop guard."""
    return bool(token_ids) and bool(periodic_tail(torch.tensor([token_ids]))[0])


ASSISTANT_OPENING = "<|im_start|>assistant\n"


def chat_prompt(processor, prompt: str, system: str | None = None) -> str:
    """The ChatML text of one user turn (image first, then `prompt`) and the assistant's opening, as the
    checkpoint was trained with.

    The image appears as the single `<|image_pad|>` placeholder the processor expands. The system turn is
    the checkpoint's chat template's choice: Qwen2.5-VL's adds "You are a helpful assistant.", as
    LLaMA-Factory's `qwen2_vl` template did in training; Qwen3-VL's and Qwen3.5's add none, like
    `qwen3_vl_nothink` / `qwen3_5_nothink`. Those templates never opened a think block either, so whatever
    a template writes after the assistant's opening (Qwen3.5's `<think>\n`) is cut.
    """
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    head, opening, _ = text.rpartition(ASSISTANT_OPENING)
    return head + opening if opening else text


def image_size(processor, max_pixels: int) -> dict:
    """The processor's `size` argument for images of at most `max_pixels` already prepared to that cap.

    The processor rounds with its own limits (as in training: a released checkpoint's processor allows
    ~12.8-16.8 M pixels, one trained by this kit records its cap); only an image above its own cap (when
    asked for more than the checkpoint was trained at) raises the cap to `max_pixels`.
    """
    size = processor.image_processor.size
    return {"shortest_edge": size["shortest_edge"], "longest_edge": max(size["longest_edge"], max_pixels)}


def visual_token_count(processor, width: int, height: int, max_pixels: int) -> int:
    """Visual tokens `processor` spends on a width x height image prepared to at most `max_pixels`, as the
    processor itself counts them (sides rounded to its patch_size x merge_size, area within its limits)."""
    size = image_size(processor, max_pixels)
    limits = {"min_pixels": size["shortest_edge"], "max_pixels": size["longest_edge"]}
    image_processor = processor.image_processor
    return image_processor.get_number_of_image_patches(height, width, limits) // image_processor.merge_size**2
