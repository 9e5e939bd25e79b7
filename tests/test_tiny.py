"""unimumer.tiny: the random small Qwen2.5-VL and its local LaTeX tokenizer."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unimumer.tiny import CHAT_TEMPLATE, LATEX_SYMBOLS, SPECIAL_TOKENS, TASK_WORDS, TinySize, build_tokenizer, main


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_every_vocabulary_word_is_one_token(tokenizer):
    for word in LATEX_SYMBOLS + TASK_WORDS:
        for text in (word, " " + word):
            pieces = tokenizer.tokenize(text)
            assert len(pieces) == 1, (text, pieces)
    assert 1000 <= len(tokenizer) <= 3000


def test_special_tokens_and_ids(tokenizer):
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    assert ids == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer("<|im_start|>user\n<|image_pad|>", add_special_tokens=False).input_ids[:1] == [1]


@pytest.mark.parametrize(
    "text",
    [
        r"\frac { 1 } { 2 } t ^ { 2 }",
        "\\frac\n\ta (above)\n\t\t2 (sup)\n\\frac { a ^ { 2 } } { b }",
        "\\frac: 1, a: 3, }: 2\n\\frac { a } { b }",
        "<error_start> z <error_end> + <deleted> 1\nREPLACE:z -> 2\nINSERT:) after x",
        "héllo ∑ 😀 \\unknowncommand{}  \r\n\x00",
    ],
)
def test_text_round_trips(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_any_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text


def test_tokenizer_is_deterministic(tokenizer):
    assert build_tokenizer().get_vocab() == tokenizer.get_vocab()


def test_chat_template(tokenizer):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read it."}]}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Read it.<|im_end|>\n<|im_start|>assistant\n"
    )
    system = [{"role": "system", "content": "Be brief."}] + messages
    assert tokenizer.apply_chat_template(system, tokenize=False).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert tokenizer.chat_template == CHAT_TEMPLATE


def test_tiny_folder_loads_with_stock_classes(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    config = model.config
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (128, 2)
    assert sum(config.text_config.rope_parameters["mrope_section"]) * 2 == 128 // 4
    assert config.vision_config.out_hidden_size == 128
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.text_config.vocab_size == len(tokenizer)
    assert tokenizer.decode(tokenizer(r"\sqrt { x }").input_ids) == r"\sqrt { x }"


def test_same_seed_same_weights(tiny_model_dir, tmp_path):
    from unimumer.tiny import build_tiny

    again = build_tiny(tmp_path / "again", seed=0)
    assert (again / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()


def test_cli_builds_a_bigger_model(tmp_path, capsys):
    out = tmp_path / "bigger"
    argv = ["--out", str(out), "--seed", "3", "--hidden-size", "192", "--num-heads", "6", "--num-layers", "3",
            "--intermediate-size", "512", "--vision-depth", "4", "--vision-hidden-size", "96", "--vision-heads", "3",
            "--max-pixels", "200704", "--rope-theta", "10", "--tie-word-embeddings"]
    assert main(argv) == 0
    assert "M parameters" in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 192 and config["text_config"]["num_hidden_layers"] == 3
    assert config["text_config"]["rope_parameters"]["mrope_section"] == [4, 6, 6]
    assert config["text_config"]["rope_parameters"]["rope_theta"] == 10.0
    assert config["vision_config"]["depth"] == 4 and config["vision_config"]["fullatt_block_indexes"] == [3]
    assert config["tie_word_embeddings"] is True
    processor = json.loads((out / "processor_config.json").read_text())
    assert processor["image_processor"]["size"]["longest_edge"] == 200704


def test_cli_rejects_impossible_sizes(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x"), "--hidden-size", "100", "--num-heads", "3"])
    assert exit_info.value.code == 2
    assert "multiple of 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "y"), "--rope-theta", "0.5"])
    assert "rope_theta must be greater than 1" in capsys.readouterr().err


def test_size_helpers():
    assert TinySize().mrope_section() == [4, 6, 6]
    assert TinySize(hidden_size=256, num_heads=4).mrope_section() == [8, 12, 12]
    assert TinySize(vision_depth=8).fullatt_block_indexes() == [3, 7]


def test_paper_is_zero_after_normalisation(tiny_model_dir):
    """White paper must reach the vision tower as zeros (a constant background made it collapse)."""
    import numpy as np
    from PIL import Image

    from unimumer.processor import load_processor

    processor = load_processor(tiny_model_dir)
    white = Image.new("RGB", (56, 56), "white")
    pixels = processor.image_processor(images=[white], return_tensors="np")["pixel_values"]
    assert np.abs(pixels).max() < 1e-6


@pytest.mark.parametrize("family, model_class", [("qwen3-vl", "Qwen3VLForConditionalGeneration"),
                                                 ("qwen3.5", "Qwen3_5ForConditionalGeneration")])
def test_cli_builds_each_family(family, model_class, tmp_path, capsys):
    out = tmp_path / family
    assert main(["--out", str(out), "--family", family]) == 0
    assert family in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [model_class] and config["vision_config"]["patch_size"] == 16
    processor = json.loads((out / "processor_config.json").read_text())
    assert processor["processor_class"] == "Qwen3VLProcessor"
    assert processor["image_processor"]["size"]["shortest_edge"] == 256 * 256  # the family's floor
    rope = config["text_config"]["rope_parameters"]
    assert rope["mrope_interleaved"] and sum(rope["mrope_section"]) == TinySize().rotary_half(family)
    if family == "qwen3.5":  # Gated DeltaNet layers, the last one full attention
        assert config["text_config"]["layer_types"] == ["linear_attention", "full_attention"]
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--family", "qwen9"])
