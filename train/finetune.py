"""Full-parameter fine-tuning of a Qwen-VL model (Qwen2.5-VL, Qwen3-VL, Qwen3.5) on Uni-MuMER records.

    python -m train.finetune --config train/configs/tiny-cpu.yaml --data DIR [DIR ...] [--output_dir OUT]
    python -m train.finetune --config train/configs/uni-mumer-3b.yaml --data DIR ... --resume
    accelerate launch --config_file train/configs/accelerate_multi_gpu.yaml -m train.finetune --config ...

The YAML holds defaults for every flag below (any TrainingArguments field too); flags given on the
command line override it. Every `*.jsonl` in the --data folders is mixed (or --mix FILE gives per-file
weights). The vision tower, the merger and the language model are all trained; only the answer tokens
count in the loss. `--model tiny` builds a fresh random unimumer.tiny model into OUT/base. `--resume`
continues from the newest OUT/checkpoint-* and ends at the same step as an uninterrupted run.
`--time_budget_minutes M` trains for M minutes of wall time instead, the cosine following the clock. The final
model and processor are saved to OUT (loadable by unimumer.Recognizer), the learning curve to
OUT/learning_curve.jsonl and a record of the run to OUT/unimumer_training.json. See docs/training.md.
"""
from __future__ import annotations

import os

# Before torch is imported: respect OMP_NUM_THREADS, else share the cores among this machine's ranks.
os.environ.setdefault(
    "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402
from torch.optim.lr_scheduler import LambdaLR  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForImageTextToText,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices  # noqa: E402
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR  # noqa: E402

from train.curve import CURVE_NAME  # noqa: E402
from train.dataset import (  # noqa: E402
    Collator,
    RecordError,
    SFTDataset,
    data_files,
    grouping_keys,
    mix_examples,
    read_jsonl,
    read_mix,
)
from train.evaluate import vanilla_items  # noqa: E402
from unimumer.hub import TRAINING_RECORD  # noqa: E402
from unimumer.images import DEFAULT_MAX_PIXELS  # noqa: E402
from unimumer.processor import load_processor  # noqa: E402
from unimumer.tasks import prompt_task  # noqa: E402

logger = logging.getLogger("train.finetune")
TINY = "tiny"
RECORD_NAME = TRAINING_RECORD
STATUS_NAME = "status.json"


@dataclass
class RunArguments:
    config: str | None = field(default=None, metadata={"help": "YAML file with defaults for any flag"})
    resume: bool = field(
        default=False, metadata={"help": "continue from the newest checkpoint-* in --output_dir"}
    )
    time_budget_minutes: float | None = field(
        default=None,
        metadata={"help": "train for this many minutes of wall time, counted over --resume too: after the warm-up "
                  "the cosine follows the time spent and reaches zero when it is all spent, then the run saves and "
                  "ends; --max_steps stays an upper bound. For a machine whose speed is not known in advance"},
    )


@dataclass
class ModelArguments:
    model: str = field(
        default="Qwen/Qwen2.5-VL-3B-Instruct",
        metadata={"help": "base model: Hub id or folder; 'tiny' builds a random unimumer.tiny (Qwen2.5-VL), 'convmer' "
                  "a random unimumer.convmer (the bundled model's design), into OUT/base"},
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "attention kernel: sdpa, flash_attention_2, eager (default: transformers')"}
    )
    rope_theta: float | None = field(
        default=None,
        metadata={"help": "set the language model's RoPE base (saved with the model). Qwen's 1e6 leaves the "
                  "image-width positions of a small head (mrope's lowest frequencies) nearly invisible"},
    )


@dataclass
class DataArguments:
    data: list[str] = field(
        default_factory=list, metadata={"help": "built data folders (train.build_data) or JSONL files"}
    )
    mix: str | None = field(
        default=None, metadata={"help": "YAML/JSON mapping JSONL file -> weight (instead of --data)"}
    )
    cutoff_len: int = field(default=2048, metadata={"help": "longest training sequence in tokens"})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={"help": "image area cap (512*512)"})
    augment: bool = field(
        default=False, metadata={"help": "random scale/rotation/stroke width/elastic warp of training images"}
    )
    crop_to_ink: bool = field(
        default=False,
        metadata={"help": "crop training images to their ink, as sketches are at inference (the bundled model's "
                  "recipe); default: whole images scaled to the cap, as upstream trained and uploads are read"},
    )
    eval_data: str | None = field(
        default=None,
        metadata={"help": "held-out folder (its *_vanilla.jsonl) or JSONL scored for ExpRate every --exprate_steps"},
    )
    exprate_steps: int = field(default=0, metadata={"help": "score ExpRate every N steps (0: never)"})
    exprate_limit: int = field(default=50, metadata={"help": "held-out images scored each time"})


def parse_args(argv: list[str] | None = None):
    """YAML defaults (--config), overridden by command-line flags."""
    parser = HfArgumentParser(
        (RunArguments, ModelArguments, DataArguments, TrainingArguments),
        prog="python -m train.finetune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config = pre.parse_known_args(argv)[0].config
    if config:
        parser.set_defaults(**load_config(config, {a.dest for a in parser._actions}))
    return parser.parse_args_into_dataclasses(argv)


def load_config(path: str | Path, known: set[str]) -> dict:
    """A training YAML; a `deepspeed:` path is relative to the YAML's folder."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"Config file not found: {path}")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(f"{path}: unknown keys {', '.join(unknown)} (see python -m train.finetune --help).")
    deepspeed = values.get("deepspeed")
    if isinstance(deepspeed, str) and not Path(deepspeed).is_absolute():
        values["deepspeed"] = str((path.parent / deepspeed).resolve())
    return values


def base_model(model_args: ModelArguments, training_args: TrainingArguments) -> str:
    """The model to start from; `tiny` (a random unimumer.tiny Qwen2.5-VL) or `convmer` (a random
    unimumer.convmer, the bundled model's design) is built once into OUT/base (main process first)."""
    if model_args.model not in NEW_MODELS:
        return model_args.model
    base = Path(training_args.output_dir) / "base"
    with training_args.main_process_first(desc=f"build a random {model_args.model}"):
        if not (base / "config.json").is_file():
            partial = base.with_name("base.partial")
            shutil.rmtree(partial, ignore_errors=True)
            NEW_MODELS[model_args.model](partial, seed=training_args.seed)
            partial.rename(base)  # atomic: a killed build never looks finished
    return str(base)


def _build_tiny(out: Path, seed: int) -> None:
    from unimumer.tiny import build_tiny

    build_tiny(out, seed=seed)


def _build_convmer(out: Path, seed: int) -> None:
    from unimumer.convmer.build import build_convmer

    build_convmer(out, seed=seed)


NEW_MODELS = {TINY: _build_tiny, "convmer": _build_convmer}


def load_examples(data_args: DataArguments, seed: int) -> list:
    if data_args.mix:
        return mix_examples(read_mix(Path(data_args.mix)), seed=seed)
    if not data_args.data:
        raise SystemExit("No training data: pass --data DIR (built by python -m train.build_data) or --mix FILE.")
    return [example for path in data_files(data_args.data) for example in read_jsonl(path)]


class EpochLengthSampler(LengthGroupedSampler):
    """Batches of alike records (by `lengths`, sort keys), drawn from (seed, epoch): the same on every rank
    and after a resume. Sorted within megabatches of up to 200 batches (more alike than the stock 50), and
    the batches then shuffled, so that training does not walk from the longest records to the shortest."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # called by the Trainer / accelerate every epoch
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        megabatches = max(1, min(200, len(self.lengths) // (4 * self.batch_size)))
        order = get_length_grouped_indices(self.lengths, self.batch_size, megabatches, generator)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return (i for b in torch.randperm(len(batches), generator=generator).tolist() for i in batches[b])


class TimeBudget(TrainerCallback):
    """A learning-rate schedule over wall time, and the stop at its end (--time_budget_minutes).

    Called by LambdaLR, it gives the factor of the peak rate: a linear warm-up over `warmup_steps`, then a
    cosine over the time spent, zero when `budget_s` is spent; the run then saves and stops. LambdaLR keeps
    this object's fields in the checkpoint, so a resumed run goes on with the time that is left.
    """

    def __init__(self, budget_s: float, warmup_steps: int):
        self.budget_s = budget_s
        self.warmup_steps = warmup_steps
        self.spent_s = 0.0  # counted at every step's end
        self.clock = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, self.spent_s / self.budget_s)))

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock = time.monotonic()  # a resumed run's saved clock is another process's: start anew

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        self.spent_s += now - self.clock
        self.clock = now
        if self.spent_s >= self.budget_s:
            logger.info("The time budget (%.1f minutes) is spent at step %d: saving and stopping.",
                        self.budget_s / 60, state.global_step)
            control.should_training_stop = control.should_save = True


class UniMuMERTrainer(Trainer):
    """Trainer with cheap length-grouping, a resume that really restores Qwen2.5-VL weights, and an optional
    schedule over wall time (`time_budget`, a TimeBudget also added as a callback)."""

    time_budget: TimeBudget | None = None

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.time_budget is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        self.lr_scheduler = LambdaLR(optimizer or self.optimizer, self.time_budget)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def _get_train_sampler(self, train_dataset=None):
        # The stock sampler would encode every record (decoding every image) just to measure it.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and isinstance(dataset, SFTDataset):
            megabatch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            keys = grouping_keys(dataset.lengths, dataset.aspects)
            return EpochLengthSampler(megabatch, keys, self.args.data_seed or self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Reload resumed weights through from_pretrained, which knows Qwen2.5-VL's key renaming.

        save_pretrained writes the legacy key names (`visual.*`, `model.layers.*`); the stock resume
        loads them with load_state_dict(strict=False), silently skipping every weight
        (huggingface/transformers#43701). DeepSpeed and FSDP resume through their own formats.
        """
        if model is not None or self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(self.model).from_pretrained(resume_from_checkpoint, dtype=self.model.dtype)
        self.model.load_state_dict(saved.state_dict())  # strict: a mismatch is an error, not a warning

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """Resume the optimizer and schedule, at this run's --learning_rate.

        The saved schedule carries the first session's peak rate (its base_lrs), which would silently
        override a --learning_rate given on resume; the schedule's shape follows this run's max_steps.
        """
        budget = self.time_budget and (self.time_budget.budget_s, self.time_budget.warmup_steps)
        super()._load_optimizer_and_scheduler(checkpoint)
        if budget:  # the checkpoint brings the time spent; the budget and the warm-up are this run's
            self.time_budget.budget_s, self.time_budget.warmup_steps = budget
        scheduler = getattr(self.lr_scheduler, "base_lrs", None)
        if checkpoint is None or scheduler is None or self.is_deepspeed_enabled:
            return
        if any(abs(rate - self.args.learning_rate) > 1e-12 for rate in scheduler):
            logger.info("Resuming at learning rate %g (the checkpoint's schedule peaked at %g).",
                        self.args.learning_rate, scheduler[0])
            self.lr_scheduler.base_lrs = [self.args.learning_rate] * len(scheduler)
            factors = getattr(self.lr_scheduler, "lr_lambdas", None)  # LambdaLR: every stock schedule
            for i, group in enumerate(self.optimizer.param_groups):
                group["initial_lr"] = self.args.learning_rate
                if factors:  # the first resumed step too, not only those after the schedule's next step
                    group["lr"] = self.args.learning_rate * factors[i](self.lr_scheduler.last_epoch)


class LearningCurveCallback(TrainerCallback):
    """Appends {step, loss, learning_rate, ...} and ExpRate results to OUT/learning_curve.jsonl."""

    KEYS = ("loss", "learning_rate", "grad_norm", "epoch", "exprate", "exprate_le1", "exprate_n")

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        # On resume, forget what was logged after the checkpoint: those steps are trained again.
        if state.is_world_process_zero and self.path.is_file():
            lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
            kept = [line for line in lines if json.loads(line)["step"] <= state.global_step]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(self.path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        entry = {key: logs[key] for key in self.KEYS if logs and key in logs}
        if state.is_world_process_zero and ("loss" in entry or "exprate" in entry):
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"step": state.global_step, **entry}) + "\n")


class StatusCallback(TrainerCallback):
    """OUT/status.json, rewritten at every log and save: where the run is, for a person or a script.

    {"state": "training" | "finished" | "stopped", "step", "max_steps", "epoch", "loss", "exprate",
    "checkpoint", "wall_hours", "cpu_hours", and "error" when stopped}; the hours add up over resumed sessions
    (CPU time of this process and its data workers). "stopped": the run ended early (an error, Ctrl-C,
    SIGTERM);
    `--resume` continues from "checkpoint".
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.status: dict = {}

    def on_train_begin(self, args, state, control, **kwargs):
        previous = {}
        if self.path.is_file():
            try:
                previous = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError:
                pass
        self.wall_before = previous.get("wall_hours", 0.0) if state.global_step else 0.0
        self.cpu_before = previous.get("cpu_hours", 0.0) if state.global_step else 0.0
        self.started = time.monotonic()
        self.cpu_started = _cpu_seconds()
        kept = ("loss", "exprate", "checkpoint") if state.global_step else ()
        self.status = {key: previous[key] for key in kept if key in previous}  # no stale "error"
        self._write(state, "training")

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "exprate"):
            if logs and key in logs:
                self.status[key] = logs[key]
        self._write(state, "training")

    def on_save(self, args, state, control, **kwargs):
        self._write(state, "training", checkpoint=f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        self._write(state, "finished")

    def stopped(self, state, error: BaseException) -> None:
        """Record that the run ended before max_steps, and why (one line)."""
        self.status["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        self._write(state, "stopped")

    def _write(self, state, phase: str, checkpoint: str | None = None) -> None:
        if not state.is_world_process_zero:
            return
        if checkpoint:
            self.status["checkpoint"] = checkpoint
        self.status.update(
            state=phase, step=state.global_step, max_steps=state.max_steps, epoch=round(state.epoch or 0.0, 3),
            wall_hours=round(self.wall_before + (time.monotonic() - self.started) / 3600, 5),
            cpu_hours=round(self.cpu_before + (_cpu_seconds() - self.cpu_started) / 3600, 5),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def _terminated(signum, frame) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (data workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class ExpRateCallback(TrainerCallback):
    """Every `every` steps, greedy-decode `limit` held-out images and log ExpRate (main process only).

    Not for ZeRO-3 (parameters are sharded, generation would need every rank).
    """

    def __init__(self, trainer: Trainer, items: list[dict], every: int, limit: int, max_pixels: int, crop: bool):
        self.trainer = trainer
        self.items = items[:limit]  # {img_id, image_path, gt} as train.evaluate reads them
        self.every = every
        self.max_pixels = max_pixels
        self.crop = crop

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 and state.is_world_process_zero:
            should_log = control.should_log  # Trainer.log resets it, which would drop this step's loss
            self.trainer.log(self.score())
            control.should_log = should_log

    def score(self) -> dict:
        from unimumer.metrics import score
        from unimumer.recognizer import Recognizer

        model = self.trainer.model
        was_training = model.training
        recognizer = Recognizer(model, self.trainer.processing_class, max_pixels=self.max_pixels)
        try:
            results = recognizer.recognize_batch([i["image_path"] for i in self.items], mode="vanilla", crop=self.crop)
        finally:
            model.train(was_training)
        metrics = score({"gt": i["gt"], "pred": r.latex} for i, r in zip(self.items, results))
        return {"exprate": metrics["exprate"], "exprate_le1": metrics["le1"], "exprate_n": metrics["n"]}


def checkpoints(out: Path) -> list[Path]:
    """OUT/checkpoint-N folders, oldest first."""
    found = [p for p in out.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def newest_complete(found: list[Path]) -> Path | None:
    """The newest checkpoint whose trainer_state.json (the Trainer writes it last) is whole."""
    for path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
        except (OSError, ValueError, KeyError):
            continue
        return path
    return None


def discard_partial(found: list[Path], last: Path | None, training_args: TrainingArguments) -> None:
    """Delete checkpoints newer than `last`: a killed save left them incomplete; they are redone."""
    if not training_args.should_save:
        return
    for path in found:
        if last is None or int(path.name.split("-")[-1]) > int(last.name.split("-")[-1]):
            logger.warning("Removing the incomplete %s (the run was interrupted while saving it).", path)
            shutil.rmtree(path)


def cpu_bf16_is_native() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX). Elsewhere autocast emulates it: a ConvMer step
    took ~30 s in bf16 against ~3 s in float32 on an AVX2-only EPYC (docs/training.md)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def fit_precision(training_args: TrainingArguments) -> None:
    """bf16 autocast asked for on a CPU without bf16 arithmetic: train in float32 instead, and say so."""
    if training_args.bf16 and training_args.use_cpu and not training_args.deepspeed and not cpu_bf16_is_native():
        logger.warning(
            "This CPU has no bf16 arithmetic (AVX512-BF16 or AMX), so bf16 autocast would be emulated, several "
            "times slower: training in float32 instead."
        )
        training_args.bf16 = False
        training_args.mixed_precision = "no"


def write_record(path: Path, examples: list, model_args, data_args, training_args) -> None:
    """What the model card needs later (train.push): base model, data files and their sizes, recipe."""
    record = {
        "base_model": f"unimumer.{model_args.model} (random init)" if model_args.model in NEW_MODELS else model_args.model,
        "data": dict(Counter(e.source for e in examples)),
        "tasks": sorted({prompt_task(e.prompt) for e in examples} - {None}),
        "cutoff_len": data_args.cutoff_len,
        "max_pixels": data_args.max_pixels,
        "augment": data_args.augment,
        "crop_to_ink": data_args.crop_to_ink,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": str(training_args.lr_scheduler_type.value),
        "warmup_steps": training_args.warmup_steps,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "effective_batch_size": training_args.train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size,
        "precision": "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32",
        "deepspeed": Path(training_args.deepspeed).name if isinstance(training_args.deepspeed, str) else None,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    run_args, model_args, data_args, training_args = parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    fit_precision(training_args)
    budget = run_args.time_budget_minutes
    if budget is not None and (budget <= 0 or training_args.max_steps <= 0):
        raise SystemExit("--time_budget_minutes needs a positive number of minutes and --max_steps (an upper bound).")
    if budget is not None and training_args.world_size > 1:  # each rank's clock would stop it at another step
        raise SystemExit("--time_budget_minutes trains in one process; give several processes --max_steps instead.")
    out = Path(training_args.output_dir)

    existing = checkpoints(out)
    if existing and not run_args.resume:
        raise SystemExit(
            f"{out} already has {existing[-1].name}: pass --resume to continue it, or another --output_dir."
        )
    last = newest_complete(existing) if run_args.resume else None
    if run_args.resume:
        if last is None:
            logger.warning("No complete checkpoint in %s: starting from the beginning.", out)
        discard_partial(existing, last, training_args)

    try:
        examples = load_examples(data_args, training_args.seed)
        held_out = vanilla_items(Path(data_args.eval_data)) if data_args.eval_data else []
    except (RecordError, OSError) as error:
        raise SystemExit(str(error)) from None
    if not examples:
        raise SystemExit("The training data has no records.")

    base = base_model(model_args, training_args)
    processor = load_processor(base)
    # the saved processor carries the area cap trained at, which inference then uses (training_max_pixels);
    # the processor rounds within it (LLaMA-Factory kept the base's 16.8 M cap: see docs/training.md)
    size = processor.image_processor.size
    processor.image_processor.size = {"shortest_edge": size["shortest_edge"], "longest_edge": data_args.max_pixels}
    # bf16 weights only under DeepSpeed, which keeps fp32 master copies; otherwise the Trainer's autocast
    # computes in bf16 on fp32 weights (a 1e-5 step vanishes in bf16 weights).
    dtype = torch.bfloat16 if training_args.bf16 and training_args.deepspeed else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(
        base, dtype=dtype, attn_implementation=model_args.attn_implementation, **rope_override(base, model_args)
    )
    model.requires_grad_(True)  # full fine-tuning: vision tower, merger and language model
    model.config.use_cache = False
    log_parameters(model)

    dataset = SFTDataset(
        examples, processor, cutoff_len=data_args.cutoff_len, max_pixels=data_args.max_pixels,
        augment=data_args.augment, crop=data_args.crop_to_ink,
    )
    logger.info(
        "%d training records from %d files; effective batch %d (%d per device x %d accumulation x %d processes)",
        len(dataset), len({e.source for e in examples}),
        training_args.train_batch_size * training_args.gradient_accumulation_steps * training_args.world_size,
        training_args.train_batch_size, training_args.gradient_accumulation_steps, training_args.world_size,
    )
    training_args.remove_unused_columns = False  # the collator's pixel/grid/mm-type columns are all needed
    status = StatusCallback(out / STATUS_NAME)
    trainer = UniMuMERTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=Collator(pad_token_id=processor.tokenizer.pad_token_id),
        processing_class=processor,
        callbacks=[LearningCurveCallback(out / CURVE_NAME), status],
    )
    if budget is not None:
        trainer.time_budget = TimeBudget(60 * budget, training_args.get_warmup_steps(training_args.max_steps))
        trainer.add_callback(trainer.time_budget)
    if data_args.exprate_steps and held_out:
        trainer.add_callback(
            ExpRateCallback(trainer, held_out, data_args.exprate_steps, data_args.exprate_limit, data_args.max_pixels,
                            data_args.crop_to_ink)
        )
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        write_record(out / RECORD_NAME, examples, model_args, data_args, training_args)

    # A session's end (SIGTERM) unwinds like an error, so status.json says "stopped", not "training".
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        trainer.train(resume_from_checkpoint=str(last) if last else None)
    except BaseException as error:  # an error, Ctrl-C or SIGTERM: say so in status.json, then fail as usual
        if status.status:
            status.stopped(trainer.state, error)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    trainer.save_model(str(out))  # weights, config, generation config and the processor
    trainer.save_state()
    if trainer.is_world_process_zero():
        logger.info("Saved the fine-tuned model to %s (global step %d).", out, trainer.state.global_step)
    return 0


def rope_override(base: str, model_args: ModelArguments) -> dict:
    """from_pretrained keyword arguments that set the text model's RoPE base ({} when not asked)."""
    if model_args.rope_theta is None:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base)
    text = getattr(config, "text_config", config)
    text.rope_parameters = {**(text.rope_parameters or {}), "rope_theta": float(model_args.rope_theta)}
    logger.info("Language-model RoPE base set to %g.", model_args.rope_theta)
    return {"config": config}


def log_parameters(model) -> None:
    """Parameter counts of the vision tower (ConvMer: its image encoder), the merger and the language model."""
    groups = Counter()
    for name, param in model.named_parameters():
        part = "merger" if "merger" in name else "vision" if "visual." in name or "encoder." in name else "language"
        groups[part, param.requires_grad] += param.numel()
    summary = ", ".join(
        f"{part} {n / 1e6:.2f} M{'' if trainable else ' (frozen)'}" for (part, trainable), n in sorted(groups.items())
    )
    logger.info("Parameters: %s", summary)


if __name__ == "__main__":
    sys.exit(main())
