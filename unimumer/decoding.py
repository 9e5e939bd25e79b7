"""Decoding presets and per-pass token budgets (no torch: the CLI reads them before loading a model)."""
from __future__ import annotations

# Per-pass budgets that never cut a real answer. A byte-level BPE token holds at least one byte, so a
# target's length in characters bounds its tokens: over the 16,919 reference ground truths (CROHME
# 2014/16/19/23, MNE, MathWriting) the longest vanilla target has 705 characters, counting 897, the Tree-CoT
# 2,873 (1,091 tokens of the tiny LaTeX tokenizer); error_find is a candidate plus tags, error_fix a log
# plus the LaTeX. The tree budget is the training cutoff (2,048 tokens): nothing longer was learned. Greedy
# decoding stops at <|im_end|> and the loop guard stops repetition, so a budget only bounds a runaway.
MAX_NEW_TOKENS = {"vanilla": 1024, "tree": 2048, "count": 1024, "error_find": 1024, "error_fix": 1536}
# Upstream's evaluation sampling (vLLM): temperature 0.2, top-p 0.8, top-k 50.
SAMPLING = {"temperature": 0.2, "top_p": 0.8, "top_k": 50}
# `--decoding NAME`: greedy (the default), or upstream's evaluation as its README gives it (vLLM, sampling
# as above, max_tokens 2048 for every pass).
DECODING = {"greedy": {}, "paper": {"do_sample": True, **SAMPLING, "max_new_tokens": 2048}}


def decoding_options(name: str = "greedy", **given) -> dict:
    """GenerationOptions fields of the decoding preset `name` (see DECODING), then those of `given` that are
    not None (e.g. an explicit max_new_tokens). ValueError for an unknown preset."""
    if name not in DECODING:
        raise ValueError(f"Unknown decoding {name!r}; choose from {', '.join(DECODING)}.")
    return {**DECODING[name], **{key: value for key, value in given.items() if value is not None}}
