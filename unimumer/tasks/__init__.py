"""The five Uni-MuMER task formats (DESIGN §3, docs/tasks.md): prompts, targets, parsers.

Pure Python, no torch: `from unimumer.tasks import tree_target, parse_output, ...`.
"""
from unimumer.tasks.count import count_symbols, count_target
from unimumer.tasks.edl import (
    DELETED, ERROR_END, ERROR_START, apply_corrections, correction_log, mark_errors, mark_tokens,
)
from unimumer.tasks.errors import CorrectionError, MalformedLatexError, MalformedTreeError
from unimumer.tasks.parse import ParsedOutput, consistency_warnings, parse_output
from unimumer.tasks.prompts import PREAMBLE, PROMPTS, TASKS, human_prompt, prompt_task, task_target
from unimumer.tasks.tree import tree_target, tree_text, tree_to_latex

__all__ = [
    "PREAMBLE", "TASKS", "PROMPTS", "human_prompt", "prompt_task", "task_target",
    "MalformedLatexError", "MalformedTreeError", "CorrectionError",
    "tree_text", "tree_target", "tree_to_latex",
    "count_symbols", "count_target",
    "ERROR_START", "ERROR_END", "DELETED", "mark_errors", "mark_tokens", "correction_log", "apply_corrections",
    "ParsedOutput", "parse_output", "consistency_warnings",
]
