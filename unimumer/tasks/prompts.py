"""The five tasks: their exact prompts and the gpt target each one trains."""
from __future__ import annotations

from unimumer.tasks.count import count_target
from unimumer.tasks.edl import correction_log, mark_errors
from unimumer.tasks.errors import MalformedLatexError
from unimumer.tasks.tree import tree_target

PREAMBLE = "I have an image of a handwritten mathematical expression. "
TASKS = ("vanilla", "tree", "count", "error_find", "error_fix")
PROMPTS: dict[str, str] = {
    "vanilla": PREAMBLE + "Please write out the expression of the formula in the image using LaTeX format.",
    "tree": PREAMBLE + "Please generate the abstract syntax tree (AST) of the formula in the image, "
    "and then provide its corresponding LaTeX format.",
    "count": PREAMBLE + "Please identify and count each distinct visible mathematical symbol in the image, "
    "and then provide its corresponding LaTeX format.",
    # The EDL prompts have no preamble (DESIGN §3).
    "error_find": "I have an image of a handwritten mathematical expression and its OCR recognition result. "
    "Please help me to detect possible errors in the recognition result and mark the places where errors "
    "occur with <error_start> <error_end> and <deleted>.\n\nerroneous formula: {candidate}\nMarked formula: ",
    "error_fix": "I have an image of a handwritten mathematical expression and a predicted formula with error "
    "tags, correct the formula by modifying the parts marked with <error_start> and <error_end> and inserting "
    "content where <deleted> are present. Output the modifications in a single string with the following "
    "format: REPLACE:old -> new for errors to be replaced. INSERT:content after position for missing content. "
    "DELETE:to_delete for parts to be removed.\n\nMarked formula: {marked}\nCorrection log: ",
}
_PLACEHOLDER = {"error_find": "candidate", "error_fix": "marked"}


def _check_task(task: str) -> None:
    if task not in PROMPTS:
        raise ValueError(f"Unknown task {task!r}; expected one of {', '.join(TASKS)}.")


def human_prompt(task: str, *, candidate: str | None = None, marked: str | None = None) -> str:
    """The filled human prompt of `task`, without the `<image>` marker."""
    _check_task(task)
    values = {"candidate": candidate, "marked": marked}
    needed = _PLACEHOLDER.get(task)
    for name, value in values.items():
        if name == needed and value is None:
            raise ValueError(f"The {task} prompt needs {name}=...")
        if name != needed and value is not None:
            raise ValueError(f"The {task} prompt takes no {name}.")
    if needed is None:
        return PROMPTS[task]
    return PROMPTS[task].replace("{" + needed + "}", " ".join(values[needed].split()))


def prompt_task(prompt: str) -> str | None:
    """The task whose human prompt `prompt` is (the EDL prompts filled in), or None for another prompt."""
    for task, text in PROMPTS.items():
        if prompt == text or (task in _PLACEHOLDER and prompt.startswith(text.split("{", 1)[0])):
            return task
    return None


def task_target(task: str, latex: str, *, candidate: str | None = None) -> str:
    """The gpt value of `task` for ground truth `latex` (error tasks: for the wrong `candidate`)."""
    _check_task(task)
    if (candidate is None) == (task in _PLACEHOLDER):
        raise ValueError(f"The {task} target {'needs' if task in _PLACEHOLDER else 'takes no'} candidate=...")
    if task == "vanilla":
        if not latex.split():
            raise MalformedLatexError("The LaTeX is empty.")
        return " ".join(latex.split())
    if task == "tree":
        return tree_target(latex)
    if task == "count":
        return count_target(latex)
    if task == "error_find":
        return mark_errors(candidate, latex)
    return correction_log(candidate, latex)
