"""A small, randomly initialised Uni-MuMER model: a real released architecture at toy size.

`build_tiny(out_dir, family=...)` writes a folder that `Recognizer.from_pretrained` and the stock
`AutoModelForImageTextToText` load: a Qwen2.5-VL, Qwen3-VL or Qwen3.5 (Gated DeltaNet layers) model
(hidden 128, 2 layers, a 2-block vision tower by default), a byte-level BPE tokenizer trained here on a
LaTeX corpus (every LaTeX command and task word of the vocabulary is one token, any other text still
round-trips through byte fallback), the Qwen special tokens, a ChatML chat template and the family's
image processor (14-px patches for Qwen2.5-VL, 16-px for Qwen3-VL / Qwen3.5, each merged 2 x 2).

Tests build one in a few seconds. The bundled offline model is trained from the Qwen2.5-VL family at
bigger sizes, set with the flags below (or `build_tiny(DIR, hidden_size=256, ...)`):

    python -m unimumer.tiny --out DIR [--family qwen3.5] [--seed N] [--hidden-size 256 --num-heads 8 ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from unimumer.images import DEFAULT_MAX_PIXELS

# The Qwen2.5-VL special tokens, in Qwen's order (their ids here are 0..13, not Qwen's 151643..).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

# Pixel normalisation: white paper -> 0, ink -> -2. With Qwen's CLIP statistics the white background
# is a large constant input, and a from-scratch vision tower collapsed to image-independent features
# (measured: features of two different images 0.09 % apart after 2,100 steps); with paper at zero only
# the ink drives the tower and its features stayed ~30 % apart.
PAPER_IS_ZERO_MEAN = (1.0, 1.0, 1.0)
PAPER_IS_ZERO_STD = (0.5, 0.5, 0.5)

# ChatML as Qwen2.5-VL writes it. Unlike Qwen's template no default system turn is added: a small
# model pays for every prompt token, and a caller that wants one passes a "system" message.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen3.5's own template opens a think block after the assistant's opening; its Uni-MuMER checkpoints were
# trained without one (LLaMA-Factory `qwen3_5_nothink`), so the tiny Qwen3.5 keeps that habit for the tests
# of `unimumer.generation.chat_prompt`, which cuts it.
THINKING_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("assistant\n{% endif %}", "assistant\n<think>\n{% endif %}")


@dataclass(frozen=True)
class Family:
    """What a released Uni-MuMER architecture family fixes: its transformers classes and image processor."""

    config_class: str
    model_class: str
    processor_class: str
    video_processor: str  # named in saved folders (needs torchvision, so never built here)
    patch_size: int  # vision patch side; patch_size x 2 pixels per visual token
    min_pixels: int  # the family's processor floor on the image area
    mrope_proportions: tuple[float, float, float]  # (time, height, width) share of the rotary half
    chat_template: str


FAMILIES = {
    "qwen2.5-vl": Family("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor",
                         "Qwen2VLVideoProcessor", 14, 56 * 56, (1, 1.5, 1.5), CHAT_TEMPLATE),
    "qwen3-vl": Family("Qwen3VLConfig", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor",
                       "Qwen3VLVideoProcessor", 16, 256 * 256, (24, 20, 20), CHAT_TEMPLATE),
    "qwen3.5": Family("Qwen3_5Config", "Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor",
                      "Qwen3VLVideoProcessor", 16, 256 * 256, (11, 11, 10), THINKING_CHAT_TEMPLATE),
}
QWEN3_5_ROTARY_SHARE = 0.25  # Qwen3.5 rotates a quarter of each head (partial_rotary_factor)

# Pre-tokenisation: a LaTeX command (with its leading space) is one piece, so BPE can make it one token.
PRETOKENIZE_REGEX = (
    r" ?\\(?:begin|end)\{[A-Za-z*]+\}"  # \begin{matrix} is one CROHME token
    r"| ?\\[A-Za-z]+"  # control words
    r"| ?\\[^A-Za-z\s]"  # control symbols: \{ \\ \,
    r"| ?<[a-z_]+>"  # EDL tags
    r"| ?\([a-z_]+\)"  # tree relations: (above)
    r"| ?->"  # correction log: REPLACE:old -> new
    r"| ?\p{L}+"
    r"| ?\p{N}"
    r"| ?[^\s\p{L}\p{N}]"
    r"|\s+(?!\S)|\s+"
)

# CROHME's symbol set plus the commands common in HME100K, MathWriting and Im2LaTeX captions.
LATEX_SYMBOLS = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    + list("+-=()[]|,.!/<>:;'*?&#^_{}")
    + r"""
\frac \sqrt \sum \int \iint \iiint \oint \prod \coprod \lim \limits \nolimits \log \ln \exp \sin \cos \tan
\cot \sec \csc \arcsin \arccos \arctan \sinh \cosh \tanh \max \min \sup \inf \det \mod \bmod \gcd
\alpha \beta \gamma \delta \epsilon \varepsilon \zeta \eta \theta \vartheta \iota \kappa \lambda \mu \nu
\xi \pi \varpi \rho \varrho \sigma \tau \upsilon \phi \varphi \chi \psi \omega \Gamma \Delta \Theta
\Lambda \Xi \Pi \Sigma \Upsilon \Phi \Psi \Omega \times \div \pm \mp \cdot \ast \star \circ \bullet
\leq \geq \le \ge \neq \ne \lt \gt \ll \gg \approx \sim \simeq \cong \equiv \propto \perp \parallel
\in \notin \ni \subset \subseteq \supset \supseteq \cup \cap \bigcup \bigcap \setminus \emptyset
\varnothing \forall \exists \neg \not \wedge \vee \bigwedge \bigvee \oplus \otimes \odot \bigoplus
\bigotimes \rightarrow \leftarrow \Rightarrow \Leftarrow \leftrightarrow \Leftrightarrow \to \mapsto
\longrightarrow \longleftarrow \uparrow \downarrow \xrightarrow \xleftarrow \infty \partial \nabla
\prime \hbar \ell \aleph \angle \triangle \degree \cdots \ldots \dots \vdots \ddots \hat \bar \vec
\dot \ddot \tilde \widehat \widetilde \overline \underline \overbrace \underbrace \overleftarrow
\overrightarrow \check \grave \acute \breve \choose \binom \dbinom \tbinom \cfrac \dfrac \tfrac
\left \right \big \Big \bigg \Bigg \langle \rangle \lfloor \rfloor \lceil \rceil \backslash
\mathrm \mathbf \mathit \mathbb \mathcal \operatorname \text \quad \qquad \vdash \models \top \bot
\dagger \sqsubseteq \bigcirc \Vdash \mid \colon \{ \} \\ \, \; \! \| \_ \% \$ \&
\begin{matrix} \end{matrix} \begin{pmatrix} \end{pmatrix} \begin{bmatrix} \end{bmatrix}
\begin{vmatrix} \end{vmatrix} \begin{array} \end{array} \begin{cases} \end{cases} \begin{aligned}
\end{aligned} \begin \end
""".split()
)
# Words of the task outputs (tree relations, counting, EDL tags and correction log).
TASK_WORDS = (
    "(above) (below) (sup) (sub) (right) (nextline) (begin_env) (end_env) <error_start> <error_end> "
    "<deleted> REPLACE INSERT DELETE after at start -> matrix pmatrix bmatrix array cases"
).split()

# Exact prompt texts of the tasks (unimumer.tasks.PROMPTS), filled with an example formula.
_PROMPT_FILLER = r"\frac { a } { b } <error_start> + <error_end> c"


@dataclass
class TinySize:
    """Architecture sizes of a `unimumer.tiny` model; every field is a `--flag` of the CLI."""

    hidden_size: int = field(default=128, metadata={"help": "text model width"})
    num_layers: int = field(default=2, metadata={"help": "text decoder layers"})
    num_heads: int = field(default=4, metadata={"help": "attention heads (hidden_size / num_heads = head dim)"})
    num_kv_heads: int = field(default=2, metadata={"help": "key/value heads (grouped-query attention)"})
    intermediate_size: int = field(default=256, metadata={"help": "text MLP width"})
    vision_depth: int = field(default=2, metadata={"help": "vision transformer blocks"})
    vision_hidden_size: int = field(default=64, metadata={"help": "vision transformer width"})
    vision_heads: int = field(default=2, metadata={"help": "vision attention heads"})
    vision_intermediate_size: int = field(default=128, metadata={"help": "vision MLP width"})
    patch_size: int = field(default=0, metadata={"help": "vision patch side in pixels (0: the family's, 14 or 16)"})
    spatial_merge_size: int = field(default=2, metadata={"help": "patches merged per side into one visual token"})
    temporal_patch_size: int = field(default=2, metadata={"help": "frames per patch (an image is repeated)"})
    window_size: int = field(
        default=448, metadata={"help": "Qwen2.5-VL vision window-attention side in pixels (Qwen: 112)"}
    )
    linear_key_heads: int = field(default=2, metadata={"help": "Qwen3.5 Gated DeltaNet key heads"})
    linear_value_heads: int = field(default=2, metadata={"help": "Qwen3.5 Gated DeltaNet value heads"})
    linear_head_dim: int = field(default=16, metadata={"help": "Qwen3.5 Gated DeltaNet key and value head size"})
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata={"help": "image area cap of the processor"})
    min_pixels: int = field(
        default=0, metadata={"help": "image area floor of the processor (0: the family's, 56x56 or 256x256)"}
    )
    max_position_embeddings: int = field(default=4096, metadata={"help": "longest sequence (tokens)"})
    rope_theta: float = field(
        default=1_000_000.0,
        metadata={"help": "language-model RoPE base; Qwen's 1e6 leaves a small head almost no image-width "
                  "position (M-RoPE gives it the lowest frequencies); ~10 gives them usable ones, but from scratch "
                  "it kept the model from learning to read: lower it later (train.finetune --rope_theta)"},
    )
    tie_word_embeddings: bool = field(default=False, metadata={"help": "share input and output embeddings"})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def rotary_half(self, family: str = "qwen2.5-vl") -> int:
        """Half the rotated dimensions of a head: all of it, or Qwen3.5's quarter."""
        share = QWEN3_5_ROTARY_SHARE if family == "qwen3.5" else 1.0
        return int(self.head_dim * share) // 2

    def mrope_section(self, family: str = "qwen2.5-vl") -> list[int]:
        """M-RoPE split of the rotary half into (time, height, width), in the family's proportions
        (Qwen2.5-VL 1:1.5:1.5, Qwen3-VL 24:20:20, Qwen3.5 11:11:10)."""
        p_t, p_h, p_w = FAMILIES[family].mrope_proportions
        half = self.rotary_half(family)
        t = int(half * p_t / (p_t + p_h + p_w))
        h = int((half - t) * p_h / (p_h + p_w))
        return [t, h, half - t - h]

    def fullatt_block_indexes(self) -> list[int]:
        """Vision blocks with full attention: the last of every group of four, and the last block."""
        return sorted({i for i in range(3, self.vision_depth, 4)} | {self.vision_depth - 1})

    def for_family(self, family: str) -> "TinySize":
        """These sizes with the family's defaults filled in (patch side, processor floor)."""
        if family not in FAMILIES:
            raise ValueError(f"Unknown family {family!r}; choose from {', '.join(FAMILIES)}.")
        chosen = FAMILIES[family]
        return dataclasses.replace(
            self, patch_size=self.patch_size or chosen.patch_size, min_pixels=self.min_pixels or chosen.min_pixels
        )

    def validate(self, family: str = "qwen2.5-vl") -> None:
        if self.hidden_size % self.num_heads or self.head_dim % 4:
            raise ValueError("hidden_size / num_heads must be a multiple of 4 (the M-RoPE split needs it).")
        if min(self.mrope_section(family)) < 1:
            raise ValueError(f"The heads are too small for {family}'s M-RoPE split; use fewer, wider heads.")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads.")
        if self.vision_hidden_size % self.vision_heads or (self.vision_hidden_size // self.vision_heads) % 4:
            raise ValueError("vision_hidden_size / vision_heads must be a multiple of 4.")
        if family == "qwen2.5-vl" and self.window_size % (self.patch_size * self.spatial_merge_size):
            raise ValueError("window_size must be a multiple of patch_size * spatial_merge_size.")
        if self.linear_value_heads % self.linear_key_heads:
            raise ValueError("linear_value_heads must be a multiple of linear_key_heads.")
        if not self.rope_theta > 1:
            raise ValueError("rope_theta must be greater than 1.")


def _corpus(rng: random.Random) -> list[str]:
    """Training text for the BPE: every symbol and task word, random expressions in every task format."""
    from unimumer.tasks import PROMPTS

    words = LATEX_SYMBOLS + TASK_WORDS
    lines = [" ".join(words)] * 2 + ["".join(words)] * 2 + [w for w in words for _ in range(2)]
    for _ in range(400):
        expr = " ".join(rng.choice(LATEX_SYMBOLS) for _ in range(rng.randint(3, 20)))
        counts = ", ".join(f"{tok}: {rng.randint(1, 12)}" for tok in expr.split()[:6])
        tree = "\n".join(
            "\t" * rng.randint(0, 3) + f"{tok} {rng.choice(TASK_WORDS[:8])}" for tok in expr.split()[:6]
        )
        lines += [expr, f"{counts}\n{expr}", f"{tree}\n{expr}"]
    for prompt in PROMPTS.values():
        lines += [prompt.replace("{candidate}", _PROMPT_FILLER).replace("{marked}", _PROMPT_FILLER)] * 4
    lines += ["REPLACE:x -> 2\nINSERT:) after x\nDELETE:+", "user\n", "assistant\n", "system\n"] * 4
    return lines


def build_tokenizer():
    """The LaTeX byte-level BPE, trained in-process (deterministic), wrapped for transformers."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=100_000,  # never reached: merging stops when every corpus word is one token
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(random.Random(0)), trainer=trainer)
    # The generic fast class, not Qwen2Tokenizer: transformers 5 rebuilds a Qwen2Tokenizer's pipeline with
    # Qwen's own split pattern (" \frac" -> " \", "frac") and NFC, discarding the pre-tokenizer above.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )


def build_config(tokenizer, size: TinySize, family: str = "qwen2.5-vl"):
    """The transformers config of a tiny `family` model (sizes with the family's defaults filled in)."""
    import transformers

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    rope = {"rope_type": "default", "rope_theta": size.rope_theta, "mrope_section": size.mrope_section(family)}
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_kv_heads,
        max_position_embeddings=size.max_position_embeddings,
        rope_parameters=rope,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=size.tie_word_embeddings,
    )
    vision = dict(
        depth=size.vision_depth,
        hidden_size=size.vision_hidden_size,
        intermediate_size=size.vision_intermediate_size,
        num_heads=size.vision_heads,
        patch_size=size.patch_size,
        spatial_merge_size=size.spatial_merge_size,
        temporal_patch_size=size.temporal_patch_size,
        out_hidden_size=size.hidden_size,
    )
    if family == "qwen2.5-vl":
        vision.update(window_size=size.window_size, fullatt_block_indexes=size.fullatt_block_indexes())
    else:  # Qwen3-VL / Qwen3.5: learned 2-D position embeddings, interleaved M-RoPE, explicit head size
        vision["num_position_embeddings"] = 24 * 24
        rope["mrope_interleaved"] = True
        text["head_dim"] = size.head_dim
    if family == "qwen3-vl":
        vision["deepstack_visual_indexes"] = [0]  # the first block's features also feed the first text layer
    if family == "qwen3.5":  # Gated DeltaNet (linear attention) layers, every fourth one (and the last) full
        rope["partial_rotary_factor"] = QWEN3_5_ROTARY_SHARE
        text.update(
            layer_types=["full_attention" if (i + 1) % 4 == 0 or i == size.num_layers - 1 else "linear_attention"
                         for i in range(size.num_layers)],
            linear_num_key_heads=size.linear_key_heads,
            linear_num_value_heads=size.linear_value_heads,
            linear_key_head_dim=size.linear_head_dim,
            linear_value_head_dim=size.linear_head_dim,
            linear_conv_kernel_dim=4,
        )
    config_class = getattr(transformers, FAMILIES[family].config_class)
    return config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=size.tie_word_embeddings,
    )


def build_tiny(out_dir, seed: int = 0, family: str = "qwen2.5-vl", **size) -> Path:
    """Write a random `unimumer.tiny` model of `family` (weights, config, tokenizer, processor) to `out_dir`.

    `size` overrides `TinySize` fields, e.g. `build_tiny(d, hidden_size=256, num_layers=4)`.
    The same seed, family and sizes give byte-identical weights.
    """
    import torch
    import transformers
    from transformers import GenerationConfig

    from unimumer.processor import image_only_processor

    sizes = TinySize(**size).for_family(family)
    sizes.validate(family)
    chosen = FAMILIES[family]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = build_config(tokenizer, sizes, family)
    torch.manual_seed(seed)
    model = getattr(transformers, chosen.model_class)(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out)
    processor = image_only_processor(
        tokenizer,
        chat_template=chosen.chat_template,
        processor_class=chosen.processor_class,
        video_processor_type=chosen.video_processor,
        min_pixels=sizes.min_pixels,
        max_pixels=sizes.max_pixels,
        patch_size=sizes.patch_size,
        merge_size=sizes.spatial_merge_size,
        temporal_patch_size=sizes.temporal_patch_size,
        image_mean=PAPER_IS_ZERO_MEAN,
        image_std=PAPER_IS_ZERO_STD,
    )
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unimumer.tiny",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write the model to")
    parser.add_argument("--family", choices=list(FAMILIES), default="qwen2.5-vl",
                        help="released architecture family to build (default qwen2.5-vl)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    for f in dataclasses.fields(TinySize):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default,
                help=f"{f.metadata['help']} (default {'yes' if f.default else 'no'})",
            )
        else:
            kind = float if f.type in (float, "float") else int
            parser.add_argument(flag, type=kind, default=f.default, help=f"{f.metadata['help']} (default {f.default:g})")
    args = parser.parse_args(argv)
    size = {f.name: getattr(args, f.name) for f in dataclasses.fields(TinySize)}
    try:
        out = build_tiny(args.out, seed=args.seed, family=args.family, **size)
    except ValueError as error:
        parser.error(str(error))
    from safetensors.torch import load_file

    params = sum(t.numel() for t in load_file(out / "model.safetensors").values())
    print(f"Wrote a random unimumer.tiny {args.family} model ({params / 1e6:.2f} M parameters) to {out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
