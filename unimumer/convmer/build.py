"""A new, randomly initialised ConvMer folder: weights, config, the LaTeX tokenizer and the processor.

    python -m unimumer.convmer.build --out DIR [--hidden-size 256 --block-depths 4,12,16 ...]

The bundled offline model starts from one of these (`train.finetune --model convmer`); tests build a
toy-sized one in a second (`build_convmer(DIR, block_depths=(1, 1, 1), hidden_size=32, ...)`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The bundled model's sizes: 4.5 M parameters (1.0 M of them the image encoder).
BUNDLED_SIZES = dict(hidden_size=256, num_hidden_layers=3, num_attention_heads=8, intermediate_size=1024,
                     growth_rate=24, block_depths=(4, 8, 8), stem_channels=32)
# The image area it reads: a sketch crop of 80 x 400 pixels, symbols about 40 px tall. Convolutions cost
# in proportion to the area, and a 2-core CPU trains it only a few epochs a day.
MAX_PIXELS = 32768
MIN_PIXELS = 32 * 32


def build_processor(max_pixels: int = MAX_PIXELS):
    """ConvMer's processor: the LaTeX tokenizer and chat template of `unimumer.tiny`, Qwen2-VL's image
    processor on 16-px patches, unmerged, one frame, paper normalised to zero."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from unimumer.convmer.processing import ConvMerProcessor
    from unimumer.tiny import CHAT_TEMPLATE, PAPER_IS_ZERO_MEAN, PAPER_IS_ZERO_STD, build_tokenizer

    image_processor = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=1, temporal_patch_size=1, min_pixels=MIN_PIXELS, max_pixels=max_pixels,
        image_mean=PAPER_IS_ZERO_MEAN, image_std=PAPER_IS_ZERO_STD,
    )
    return ConvMerProcessor(image_processor, build_tokenizer(), chat_template=CHAT_TEMPLATE)


def build_convmer(out_dir, seed: int = 0, max_pixels: int = MAX_PIXELS, **sizes) -> Path:
    """Write a random ConvMer (the bundled sizes, overridden by `sizes`: ConvMerConfig fields) to `out_dir`.
    The same seed and sizes give byte-identical weights."""
    import torch
    from transformers import GenerationConfig

    from unimumer.convmer import ConvMerConfig, ConvMerForConditionalGeneration

    processor = build_processor(max_pixels)
    tokenizer = processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>", "<|image_pad|>"])
    config = ConvMerConfig(
        vocab_size=len(tokenizer), bos_token_id=ids[0], pad_token_id=ids[0], eos_token_id=ids[1],
        image_token_id=ids[2], **{**BUNDLED_SIZES, **sizes},
    )
    torch.manual_seed(seed)
    model = ConvMerForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[0], eos_token_id=ids[1], pad_token_id=ids[0], do_sample=False
    )
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unimumer.convmer.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder to write the model to")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help=f"image area cap (default {MAX_PIXELS})")
    for name, value in BUNDLED_SIZES.items():
        kind = (lambda s: tuple(int(v) for v in s.split(","))) if isinstance(value, tuple) else type(value)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=value, help=f"(default {shown})")
    args = parser.parse_args(argv)
    sizes = {name: getattr(args, name) for name in BUNDLED_SIZES}
    try:
        out = build_convmer(args.out, seed=args.seed, max_pixels=args.max_pixels, **sizes)
    except ValueError as error:
        parser.error(str(error))
    from safetensors.torch import load_file

    params = sum(t.numel() for t in load_file(out / "model.safetensors").values())
    print(f"Wrote a random ConvMer ({params / 1e6:.2f} M parameters) to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
