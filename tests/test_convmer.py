"""unimumer.convmer (the bundled model's design) at toy size: the Auto classes load a saved folder with no
remote code, generation with the cross-attention memory and KV cache equals a full forward, beams and
batches of different image sizes, every Recognizer mode, the CLI, and train.finetune -> resume -> push."""
import json

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from test_finetune import TINY_CPU, build_synthetic
from train import finetune, push
from unimumer.cli import main
from unimumer.convmer import ConvMerConfig, ConvMerForConditionalGeneration, ConvMerProcessor
from unimumer.convmer.build import build_convmer
from unimumer.recognizer import MODES, Recognizer

TOY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, growth_rate=8,
           block_depths=(1, 1, 1), stem_channels=8)
FEW = {"max_new_tokens": 6}


@pytest.fixture(scope="module")
def convmer_dir(tmp_path_factory):
    return build_convmer(tmp_path_factory.mktemp("convmer"), seed=0, **TOY)


@pytest.fixture(scope="module")
def recognizer(convmer_dir):
    return Recognizer.from_pretrained(str(convmer_dir))


def drawing(width: int = 240, height: int = 80) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).line([(10, 60), (width // 2, 10), (width - 10, 60)], fill="black", width=5)
    return image


def test_the_stock_auto_classes_load_it_and_save_the_same_files(convmer_dir, tmp_path):
    config = json.loads((convmer_dir / "config.json").read_text())
    assert config["model_type"] == "convmer" and "auto_map" not in config  # registered, not remote code
    assert isinstance(AutoConfig.from_pretrained(convmer_dir), ConvMerConfig)
    model = AutoModelForImageTextToText.from_pretrained(convmer_dir)
    processor = AutoProcessor.from_pretrained(convmer_dir)
    assert isinstance(model, ConvMerForConditionalGeneration) and isinstance(processor, ConvMerProcessor)
    assert (convmer_dir / "model.safetensors").is_file()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again = AutoModelForImageTextToText.from_pretrained(tmp_path).state_dict()
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())
    # the tied output layer is stored once
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_the_prompt_holds_one_image_placeholder_whatever_the_size(recognizer):
    processor = recognizer.processor
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "read"}]}],
        add_generation_prompt=True,
    )
    for size in ((64, 32), (400, 120)):
        inputs = processor(text=[text], images=[drawing(*size)], return_tensors="pt")
        placeholders = (inputs["input_ids"] == recognizer.model.config.image_token_id).sum().item()
        t, h, w = inputs["image_grid_thw"][0].tolist()
        assert placeholders == 1 and inputs["pixel_values"].shape[0] == t * h * w
    assert recognizer.visual_tokens(drawing(400, 128)) == 25 * 8  # 16-px patches, not merged


def test_cached_generation_equals_a_full_forward(recognizer):
    model, processor = recognizer.model, recognizer.processor
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}], add_generation_prompt=True)
    inputs = processor(text=[text], images=[drawing()], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False, min_new_tokens=8)
        full = model(input_ids=out, pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]).logits
    prompt = inputs["input_ids"].shape[1]
    assert torch.equal(full[0, prompt - 1 : -1].argmax(-1), out[0, prompt:])  # greedy: each token the argmax


def test_a_batch_of_different_sizes_reads_each_image_as_alone(recognizer):
    images = [drawing(300, 90), drawing(120, 100), drawing(500, 60)]
    alone = [recognizer.recognize(im, crop=False, **FEW).raw["vanilla"] for im in images]
    batched = [r.raw["vanilla"] for r in recognizer.recognize_batch(images, batch_size=3, crop=False, **FEW)]
    assert batched == alone


def test_beam_search_expands_each_image_with_its_rows(recognizer):
    model, processor = recognizer.model, recognizer.processor
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}], add_generation_prompt=True)
    inputs = processor(text=[text] * 2, images=[drawing(300, 90), drawing(100, 100)], padding=True,
                       padding_side="left", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=5, num_beams=3, num_return_sequences=3, do_sample=False)
    assert out.shape[0] == 6


def test_every_mode_and_the_cli(convmer_dir, recognizer, tmp_path, capsys):
    for mode in MODES:
        result = recognizer.recognize(drawing(), mode=mode, **FEW)
        assert result.mode == mode and result.visual_tokens > 0
    image = tmp_path / "formula.png"
    drawing().save(image)
    assert main(["predict", str(image), "--model", str(convmer_dir), "--mode", "tree+count",
                 "--max-new-tokens", "4"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["visual_tokens"] > 0


def test_bfloat16_weights_read_as_float32_ones_do(convmer_dir):
    # bfloat16 is the default dtype on CUDA: every code the model computes must follow the weights' dtype.
    full = Recognizer.from_pretrained(str(convmer_dir), dtype=torch.float32)
    half = Recognizer.from_pretrained(str(convmer_dir), dtype=torch.bfloat16)
    assert half.model.dtype == torch.bfloat16
    result = half.recognize(drawing(), max_new_tokens=4)
    assert result.error is None and result.visual_tokens == full.recognize(drawing(), max_new_tokens=4).visual_tokens


def test_missing_image_is_one_clear_error(recognizer):
    with pytest.raises(ValueError, match="ConvMer needs the image"):
        recognizer.model(input_ids=torch.tensor([[1, 2, 3]]))


def test_finetune_from_convmer_trains_the_encoder_resumes_and_pushes(convmer_dir, tmp_path):
    data = build_synthetic(tmp_path / "data", n=8)
    run = tmp_path / "run"
    common = ["--config", str(TINY_CPU), "--model", str(convmer_dir), "--data", str(data), "--output_dir", str(run),
              "--save_steps", "2", "--per_device_train_batch_size", "4", "--disable_tqdm", "true",
              "--crop_to_ink", "true"]
    assert finetune.main(common + ["--max_steps", "2"]) == 0
    before = AutoModelForImageTextToText.from_pretrained(convmer_dir).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(run).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.encoder.") for k in changed) and any(".cross_attn." in k for k in changed)
    assert finetune.main(common + ["--max_steps", "3", "--resume"]) == 0
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 3
    assert Recognizer.from_pretrained(str(run)).crop_uploads  # trained on crops: uploads are cropped too
    out = tmp_path / "publish"
    assert push.main(["--checkpoint", str(run), "--repo-id", "you/convmer", "--dry-run", "--out", str(out)]) == 0
    assert Recognizer.from_pretrained(str(out)).recognize(drawing(), **FEW).visual_tokens > 0


def test_finetune_model_convmer_builds_a_random_one_once(tmp_path):
    _, model, _, args = finetune.parse_args(["--config", str(TINY_CPU), "--model", "convmer",
                                             "--output_dir", str(tmp_path)])
    base = finetune.base_model(model, args)
    assert json.loads((tmp_path / "base" / "config.json").read_text())["model_type"] == "convmer"
    assert finetune.base_model(model, args) == base
