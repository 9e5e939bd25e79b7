"""A deeper copy of a trained model that computes exactly what it did: more capacity without starting over.

    python -m train.grow runs/bundled/stage9 --out runs/bundled/stage9-deep --text-layers 6

Each new text-decoder layer is a copy of the layer before it with its attention output projection and its
MLP down projection set to zero, so it adds nothing to the residual stream until training moves them (block
expansion, as in LLaMA Pro, Wu et al. 2024). The copies are spread evenly: 3 -> 6 layers gives
0, 0', 1, 1', 2, 2'. The vision tower, merger, embeddings and head are kept as they are. The command checks
that the grown model's logits equal the original's on a sample input before it saves, and saves the
processor alongside, so `python -m train.finetune --model OUT` continues from it.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import torch

LAYER_KEY = re.compile(r"^(.*language_model\.layers\.)(\d+)(\..*)$")
ZEROED = ("self_attn.o_proj.", "mlp.down_proj.")  # the two writes of a layer to the residual stream


def layer_sources(old: int, new: int) -> list[int]:
    """For each of `new` layers, the old layer it copies; each old layer's first copy is itself."""
    if new < old:
        raise ValueError(f"--text-layers {new} is fewer than the model's {old} layers: growing only adds layers.")
    return [j * old // new for j in range(new)]


def grow_text_layers(model, layers: int):
    """A new model with `layers` text-decoder layers whose output equals `model`'s (see the module doc)."""
    from transformers import AutoModelForImageTextToText

    text = model.config.get_text_config()
    sources = layer_sources(text.num_hidden_layers, layers)
    config = copy.deepcopy(model.config)
    grown_text = config.get_text_config()
    grown_text.num_hidden_layers = layers
    if getattr(grown_text, "layer_types", None):
        grown_text.layer_types = [text.layer_types[s] for s in sources]
    grown = AutoModelForImageTextToText.from_config(config, dtype=model.dtype)

    old_state = model.state_dict()
    state = {}
    for key in grown.state_dict():
        match = LAYER_KEY.match(key)
        if not match:
            state[key] = old_state[key]
            continue
        prefix, index, rest = match.group(1), int(match.group(2)), match.group(3)
        source = sources[index]
        weight = old_state[f"{prefix}{source}{rest}"]
        is_copy = index > 0 and sources[index - 1] == source
        state[key] = torch.zeros_like(weight) if is_copy and rest[1:].startswith(ZEROED) else weight.clone()
    grown.load_state_dict(state, strict=True)
    grown.generation_config = copy.deepcopy(model.generation_config)
    return grown


@torch.no_grad()
def max_logit_difference(a, b, seed: int = 0) -> float:
    """Largest absolute difference of the two models' logits on one random text-only sequence."""
    vocab_size = a.config.get_text_config().vocab_size
    ids = torch.randint(20, vocab_size, (1, 32), generator=torch.Generator().manual_seed(seed))  # no special ids
    for m in (a, b):
        m.eval()
    return (a(input_ids=ids).logits - b(input_ids=ids).logits).abs().max().item()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.grow",
        description="Add text-decoder layers to a trained model without changing what it computes (new layers "
        "start as identities), so fine-tuning can continue with more capacity.",
    )
    parser.add_argument("model", help="folder of the trained model (a train.finetune output or checkpoint)")
    parser.add_argument("--out", required=True, help="folder to write the grown model and its processor to")
    parser.add_argument("--text-layers", type=int, required=True, help="text-decoder layers of the grown model")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers import AutoModelForImageTextToText

    from unimumer.processor import load_processor

    source, out = Path(args.model), Path(args.out)
    if not (source / "config.json").is_file():
        raise SystemExit(f"{source} has no config.json: give the folder of a trained model.")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: choose another --out.")
    model = AutoModelForImageTextToText.from_pretrained(source)
    try:
        grown = grow_text_layers(model, args.text_layers)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    difference = max_logit_difference(model, grown)
    if difference > 1e-4:
        raise SystemExit(f"The grown model's logits differ from the original's by {difference:.2e}; nothing saved.")
    grown.save_pretrained(out)
    load_processor(source).save_pretrained(out)
    layers = model.config.get_text_config().num_hidden_layers
    print(
        f"{source} ({layers} text layers, {model.num_parameters() / 1e6:.2f} M parameters) -> {out} "
        f"({args.text_layers} layers, {grown.num_parameters() / 1e6:.2f} M); logits equal "
        f"(max difference {difference:.1e})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
