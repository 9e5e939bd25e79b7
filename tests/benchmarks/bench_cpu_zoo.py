"""What a user without a GPU waits for one expression, per released family, at full size on this CPU.

    .venv/bin/python tests/benchmarks/bench_cpu_zoo.py [--families qwen2.5-vl-3b qwen3-vl-2b qwen3.5-2b]
                                                       [--dtypes float32 bfloat16] [--new-tokens 30]

Each model is built at its released architecture from its published config values (below) with random
weights (speed does not depend on them), in float32 (what `Recognizer` loads on a CPU) and/or bfloat16,
one model at a time in a fresh process. The input is a 300x100 canvas prepared and encoded exactly as
`Recognizer` does it (the family's own patch size, merge and pixel floor; the vanilla prompt through
the chat template; the text tokens come from the small LaTeX tokenizer, whose special tokens the config
points at, so the prompt is a little shorter than with Qwen's tokenizer). Timed, after one warm-up:
prefill (vision tower + prompt + the first token), the per-token decode cost, the total for
`--new-tokens` tokens, and the peak resident memory during those calls (weights included).
Prints one JSON line: {"threads", "cpu", "runs": [{family, dtype, params_b, visual_tokens, ...}]}.
All six runs take ~6 minutes on 2 cores and up to 15 GiB of memory (the 3B in float32); the README's
"Model zoo" table comes from one run with the machine otherwise idle.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# Published config.json values (text_config / vision_config), special-token ids left to the tokenizer.
# Qwen2.5-VL-3B-Instruct: its Hub config (3.755 B parameters, measured in ../shared/docs/FACTS.md).
# Qwen3-VL-2B-Instruct: its Hub config (2.13 B parameters: 4.26 GB of bf16 weights in
# phxember/Uni-MuMER-Qwen3-VL-2B). Qwen3.5-2B: its Hub text_config; the vision tower is Qwen3-VL-2B's
# (depth 24, width 1024), which brings the total to upstream's "2.2B" (the Model Zoo table).
ARCHITECTURES = {
    "qwen2.5-vl-3b": dict(
        config="Qwen2_5_VLConfig", family="qwen2.5-vl", patch_size=14, min_pixels=56 * 56,
        text=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                  num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                  tie_word_embeddings=True),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                    fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu"),
    ),
    "qwen3-vl-2b": dict(
        config="Qwen3VLConfig", family="qwen3-vl", patch_size=16, min_pixels=256 * 256,
        text=dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
                  rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                   "mrope_interleaved": True},
                  tie_word_embeddings=True),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                    patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                    deepstack_visual_indexes=[5, 11, 17]),
    ),
    "qwen3.5-2b": dict(
        config="Qwen3_5Config", family="qwen3.5", patch_size=16, min_pixels=256 * 256,
        text=dict(vocab_size=248320, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=256, max_position_embeddings=262144,
                  linear_num_key_heads=16, linear_num_value_heads=16, linear_key_head_dim=128,
                  linear_value_head_dim=128, linear_conv_kernel_dim=4,
                  layer_types=["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(24)],
                  rope_parameters={"rope_type": "default", "rope_theta": 1e7, "mrope_section": [11, 11, 10],
                                   "mrope_interleaved": True, "partial_rotary_factor": 0.25},
                  tie_word_embeddings=True),
        vision=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                    patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304),
    ),
}


def peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return float("nan")


def canvas():
    """A 300x100 sketch canvas with a short handwritten-looking formula on it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (300, 100), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(20, 70), (45, 25), (70, 70)], fill="black", width=4)  # a Λ
    draw.line([(90, 48), (120, 48)], fill="black", width=4)  # -
    draw.arc((140, 25, 190, 75), 0, 330, fill="black", width=4)  # c
    draw.line([(210, 48), (240, 48)], fill="black", width=4)
    draw.line([(225, 33), (225, 63)], fill="black", width=4)  # +
    draw.line([(260, 25), (270, 75)], fill="black", width=4)
    return image


def run_one(name: str, dtype_name: str, new_tokens: int) -> dict:
    import torch
    import transformers

    from unimumer.generation import chat_prompt, image_size
    from unimumer.recognizer import Recognizer
    from unimumer.tasks import human_prompt
    from unimumer.tiny import CHAT_TEMPLATE, FAMILIES, SPECIAL_TOKENS, build_tokenizer
    from unimumer.processor import image_only_processor

    spec = ARCHITECTURES[name]
    dtype = getattr(torch, dtype_name)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = getattr(transformers, spec["config"])(
        text_config=dict(spec["text"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=spec["vision"], image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=spec["text"]["tie_word_embeddings"],
    )
    start = time.perf_counter()
    torch.manual_seed(0)
    model = transformers.AutoModelForImageTextToText.from_config(config, dtype=dtype).eval()
    build_seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    family = FAMILIES[spec["family"]]
    processor = image_only_processor(
        tokenizer, chat_template=CHAT_TEMPLATE, processor_class=family.processor_class,
        patch_size=spec["patch_size"], merge_size=2, min_pixels=spec["min_pixels"], max_pixels=16777216,
    )
    recognizer = Recognizer(model, processor)  # max_pixels: the training cap, 512 x 512
    image = recognizer.prepare(canvas(), crop=True)  # a sketch canvas: cropped to the ink
    inputs = processor(text=[chat_prompt(processor, human_prompt("vanilla"))], images=[image],
                       size=image_size(processor, image.width * image.height), return_tensors="pt")

    def generate(n: int) -> float:
        begin = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 eos_token_id=None, pad_token_id=ids["<|endoftext|>"])
        assert out.shape[1] == inputs["input_ids"].shape[1] + n
        return time.perf_counter() - begin

    generate(2)  # warm-up: first-call allocations and kernel selection
    peak_rss_reset()
    prefill = generate(1)
    total = generate(new_tokens)
    return {
        "family": name, "dtype": dtype_name, "params_b": round(params / 1e9, 3),
        "image": f"{image.width}x{image.height}", "visual_tokens": recognizer.visual_tokens(image),
        "prompt_tokens": int(inputs["input_ids"].shape[1]), "new_tokens": new_tokens,
        "prefill_s": round(prefill, 2), "decode_ms_per_token": round(1000 * (total - prefill) / (new_tokens - 1), 1),
        "total_s": round(total, 2), "peak_rss_gib": peak_rss_gib(), "build_s": round(build_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--new-tokens", type=int, default=30, help="decoded tokens (a short expression, default 30)")
    parser.add_argument("--one", nargs=2, metavar=("FAMILY", "DTYPE"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    if args.one:
        import torch

        torch.set_num_threads(threads)
        print(json.dumps(run_one(*args.one, args.new_tokens)))
        return
    runs = []
    for family in args.families:
        for dtype in args.dtypes:
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            done = subprocess.run([sys.executable, __file__, "--one", family, dtype, "--new-tokens",
                                   str(args.new_tokens)], capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"{family} {dtype} failed:\n{done.stderr[-2000:]}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), file=sys.stderr)
    print(json.dumps({"threads": threads, "cpu": platform.processor() or platform.machine(), "runs": runs}))


if __name__ == "__main__":
    main()
