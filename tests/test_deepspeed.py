"""DeepSpeed: a real ZeRO-2 run under the Trainer on CPU (one process), and both JSON configs validated
by DeepSpeed itself after the Trainer's "auto" filling, without starting distributed training."""
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT
from test_finetune import build_synthetic

CONFIGS = ROOT / "train" / "configs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_zero2_run_on_cpu_under_trainer(tmp_path, tiny_model_dir):
    """The first run on a machine JIT-compiles DeepSpeed's CPU comm op (~40 s, cached afterwards)."""
    data = build_synthetic(tmp_path / "data", n=8, tasks=("vanilla",))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    command = [sys.executable, "-m", "train.finetune", "--config", str(CONFIGS / "tiny-cpu.yaml"),
               "--model", str(tiny_model_dir), "--data", str(data), "--output_dir", str(out),
               "--deepspeed", str(CONFIGS / "deepspeed_zero2.json"), "--max_steps", "3", "--save_steps", "2",
               "--logging_steps", "1", "--per_device_train_batch_size", "2", "--disable_tqdm", "true"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    # DeepSpeed's engine wrote its own checkpoint format: ZeRO partitions under global_step2/.
    engine_files = {p.name for p in (out / "checkpoint-2" / "global_step2").iterdir()}
    assert any("optim_states" in name for name in engine_files), engine_files
    assert (out / "checkpoint-2" / "latest").read_text().strip() == "global_step2"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and len([e for e in state["log_history"] if "loss" in e]) == 3
    assert json.loads((out / "unimumer_training.json").read_text())["deepspeed"] == "deepspeed_zero2.json"

    from unimumer.recognizer import Recognizer

    Recognizer.from_pretrained(str(out)).recognize(next((data / "images").rglob("*.png")), max_new_tokens=2)


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2.json", 2), ("deepspeed_zero3.json", 3)])
def test_deepspeed_json_is_valid_after_trainer_filling(name, stage, tmp_path, tiny_model_dir):
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import AutoModelForImageTextToText, TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    # The 3B recipe's per-process numbers; the world size here is 1, so train_batch_size = 4 x 32.
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, bf16=True, learning_rate=1e-5,
                             per_device_train_batch_size=4, gradient_accumulation_steps=32)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)  # before: ZeRO-3 hooks from_pretrained
    filled = HfTrainerDeepSpeedConfig(str(CONFIGS / name))
    try:
        filled.trainer_config_process(args)
        filled.trainer_config_finalize(args, model, num_training_steps=100)
    finally:
        unset_hf_deepspeed_config()
    assert "auto" not in json.dumps(filled.config)
    config = DeepSpeedConfig(filled.config)
    assert config.zero_optimization_stage == stage
    assert config.train_batch_size == 128 and config.gradient_accumulation_steps == 32
    assert config.bfloat16_config.enabled and config.gradient_clipping == 1.0
    if stage == 3:  # the final save gathers the sharded weights into one model.safetensors
        assert config.zero_config.gather_16bit_weights_on_model_save
