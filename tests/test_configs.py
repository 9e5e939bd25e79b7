"""train/configs: the paper's 3B recipe, the CPU smoke recipe and the accelerate launcher config parse
through the same code the real runs use (no distributed training is started)."""
import json

import yaml

from conftest import ROOT
from train import finetune

CONFIGS = ROOT / "train" / "configs"
GPUS = 4  # the paper's machine


def parse(name: str, *extra: str):
    return finetune.parse_args(["--config", str(CONFIGS / name), *extra])


def test_3b_config_is_the_paper_recipe():
    # Parsed on CPU: use_cpu (bf16 is otherwise refused without a GPU) and DeepSpeed off (it would
    # initialise a process group); every other value is the file's.
    run, model, data, args = parse("uni-mumer-3b.yaml", "--use_cpu", "true", "--deepspeed", "")
    assert model.model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * GPUS == 512
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 32)
    assert args.learning_rate == 1e-5 and args.lr_scheduler_type.value == "cosine"
    assert args.warmup_steps == 0.1 and args.get_warmup_steps(1000) == 100  # a ratio: 10 % of the steps
    assert args.num_train_epochs == 1 and args.max_steps == -1 and args.bf16
    assert data.cutoff_len == 2048 and data.max_pixels == 512 * 512
    assert args.train_sampling_strategy == "group_by_length" and args.activation_checkpointing

    values = yaml.safe_load((CONFIGS / "uni-mumer-3b.yaml").read_text())
    deepspeed = finetune.load_config(CONFIGS / "uni-mumer-3b.yaml", {"deepspeed", *values})["deepspeed"]
    assert deepspeed == str(CONFIGS / "deepspeed_zero2.json")  # resolved next to the YAML
    assert json.loads((CONFIGS / "deepspeed_zero2.json").read_text())["zero_optimization"]["stage"] == 2


def test_tiny_cpu_config_is_fp32_on_cpu_with_a_fresh_tiny_model():
    _, model, data, args = parse("tiny-cpu.yaml")
    assert model.model == finetune.TINY and args.use_cpu and not args.bf16 and not args.fp16
    assert args.deepspeed is None and data.max_pixels == 512 * 512 and data.cutoff_len == 2048


def test_accelerate_config_launches_four_processes():
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(CONFIGS / "accelerate_multi_gpu.yaml"))
    assert config.distributed_type == "MULTI_GPU" and config.num_processes == GPUS and config.num_machines == 1
    assert config.mixed_precision == "no"  # precision comes from the training YAML only


def test_bundled_model_stages_chain_and_read_the_documented_data():
    """train/configs/bundled: stage N starts from stage N-1's output and mixes data/bundled files that the
    build commands of docs/training.md write (names checked here; the data itself is not in the repo)."""
    from train.dataset import read_mix

    built = {f"crohme_{t}" for t in ("vanilla", "tree", "count")} | {f"synth_{t}" for t in ("vanilla", "tree", "count")}
    built |= {"crohme_symbols_vanilla", "short_vanilla", "mid_vanilla", "crohme_strings_vanilla"}
    built |= {f"{name}_error_{t}" for name in ("edl", "edl5", "edl6", "edl7") for t in ("find", "fix")}
    built |= {"edl7_right_error_find"}  # train.error_corpus --with-right
    previous = "runs/bundled/base"
    for stage in range(1, 13):
        _, model, data, args = parse(f"bundled/stage{stage}.yaml")
        start = f"{previous}-deep" if stage == 10 else previous  # stage 10: stage 9 grown by train.grow
        assert model.model == start and args.output_dir == f"runs/bundled/stage{stage}"
        previous = args.output_dir
        assert args.use_cpu and data.augment and args.max_steps > 0
        assert data.max_pixels == (80000 if stage >= 9 else 40000)  # stage 9 doubled the image area
        assert args.learning_rate <= 4e-4  # higher rates collapsed the from-scratch vision tower
        mix = read_mix(ROOT / data.mix)
        assert {path.parent for path, _ in mix} == {ROOT / "data" / "bundled"}
        assert {path.stem for path, _ in mix} <= built and all(weight > 0 for _, weight in mix)
        if stage == 4:  # from here on the image-width positions get usable rotary frequencies
            assert model.rope_theta == 10
    assert {path.stem for path, _ in mix} >= {"edl7_error_find", "edl7_error_fix", "crohme_tree", "crohme_count"}


def test_new_family_configs_follow_upstreams_recipe():
    """Upstream's train/Uni-MuMER-{Qwen3-VL,Qwen3.5}-{2B,4B}.yaml: ZeRO-3, 4 per device x 16 accumulation on
    8 GPUs = 512, lr 1e-5 cosine, warm-up 10 %, one epoch, bf16, cutoff 2048, image_max_pixels 262144."""
    bases = {"qwen3-vl-2b": "Qwen/Qwen3-VL-2B-Instruct", "qwen3-vl-4b": "Qwen/Qwen3-VL-4B-Instruct",
             "qwen3.5-2b": "Qwen/Qwen3.5-2B", "qwen3.5-4b": "Qwen/Qwen3.5-4B"}
    for short, base in bases.items():
        name = f"uni-mumer-{short}.yaml"
        _, model, data, args = parse(name, "--use_cpu", "true", "--deepspeed", "")
        assert model.model == base
        assert args.per_device_train_batch_size * args.gradient_accumulation_steps * 8 == 512
        assert args.learning_rate == 1e-5 and args.lr_scheduler_type.value == "cosine" and args.warmup_steps == 0.1
        assert args.num_train_epochs == 1 and args.bf16 and data.cutoff_len == 2048 and data.max_pixels == 262144
        values = yaml.safe_load((CONFIGS / name).read_text())
        deepspeed = finetune.load_config(CONFIGS / name, {"deepspeed", *values})["deepspeed"]
        assert deepspeed == str(CONFIGS / "deepspeed_zero3.json")
    assert json.loads((CONFIGS / "deepspeed_zero3.json").read_text())["zero_optimization"]["stage"] == 3


def test_convmer_sessions_run_for_a_time_and_the_gpu_session_keeps_the_cpu_recipe():
    """A CPU session (stage1.yaml) and a lent GPU's (gpu.yaml, run by train/device_session.sh) train the same
    data the same way; each ends by its time budget, with max_steps only an upper bound."""
    cpu_run, cpu_model, cpu_data, cpu = parse("convmer/stage1.yaml")
    gpu_run, gpu_model, gpu_data, gpu = parse("convmer/gpu.yaml", "--use_cpu", "true")  # bf16 needs a GPU
    for run, args in ((cpu_run, cpu), (gpu_run, gpu)):
        assert run.time_budget_minutes and args.max_steps >= 100_000 and args.lr_scheduler_type.value == "cosine"
        assert args.learning_rate <= 3e-4 and args.bf16  # 5e-4 diverged
    assert cpu_run.time_budget_minutes == 100 and cpu.use_cpu
    assert cpu_model.model == gpu_model.model == "convmer" and cpu_data.mix == gpu_data.mix
    for key in ("max_pixels", "augment", "crop_to_ink", "cutoff_len", "eval_data"):
        assert getattr(cpu_data, key) == getattr(gpu_data, key), key
    assert gpu.per_device_train_batch_size == 4 * cpu.per_device_train_batch_size
    assert gpu.dataloader_num_workers > cpu.dataloader_num_workers and gpu.disable_tqdm
    script = (ROOT / "train" / "device_session.sh").read_text()
    assert "convmer/gpu.yaml" in script and "--time_budget_minutes" in script and "train.snapshot" in script
