"""Generation settings shared by the transformers and vLLM backends: token budgets, sampling, loop guard."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig, StoppingCriteria

# Per-pass budgets. CROHME 2014 targets in the tiny LaTeX tokenizer: vanilla mean 17 / max 205 tokens,
# count 43 / 257, tree 51 / 577; Qwen's tokenizer needs ~1.3-2x as many (" \frac" and " 1" are two tokens
# there). Greedy decoding stops at <|im_end|> and the loop guard stops repetition, so a budget only
# bounds a runaway output.
MAX_NEW_TOKENS = {"vanilla": 512, "tree": 1536, "count": 1024, "error_find": 512, "error_fix": 512}
# Upstream's evaluation sampling (vLLM): temperature 0.2, top-p 0.8, top-k 50.
SAMPLING = {"temperature": 0.2, "top_p": 0.8, "top_k": 50}
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
        return GenerationConfig(
            max_new_tokens=self.budget(task),
            do_sample=self.do_sample,
            num_beams=1,
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


def looped(token_ids: list[int]) -> bool:
    """Whether a finished generation (without its end token) was cut by the loop guard."""
    return bool(token_ids) and bool(periodic_tail(torch.tensor([token_ids]))[0])


def chat_prompt(processor, prompt: str, system: str | None = None) -> str:
    """The ChatML text of one user turn (image first, then `prompt`) and the assistant's opening.

    The image appears as the single `<|image_pad|>` placeholder the processor expands. Whether a default
    system turn is added is the checkpoint's chat template's choice (the released model's adds one).
    """
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def image_size(processor, max_pixels: int) -> dict:
    """The processor's `size` argument that caps the image area at `max_pixels`.

    A Hub processor allows ~12.8 M pixels; training and inference both cap lower, the same way.
    """
    return {"shortest_edge": processor.image_processor.size["shortest_edge"], "longest_edge": max_pixels}
