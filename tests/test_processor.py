"""unimumer.processor: the Qwen2.5-VL processor without torchvision, saved as the stock one."""
import json

import pytest
import torch
from PIL import Image, ImageDraw

from unimumer.generation import chat_prompt
from unimumer.processor import ImageOnlyProcessor, load_processor


def _image(width=300, height=100):
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).line((10, 10, width - 10, height - 10), fill="black", width=4)
    return image


def _encode(processor, image):
    text = chat_prompt(processor, "Read the formula.")
    return processor(text=[text], images=[image], return_tensors="pt")


def test_stock_auto_processor_needs_torchvision(tiny_model_dir):
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        pytest.skip("torchvision is installed: the stock processor loads")
    with pytest.raises(ImportError):
        AutoProcessor.from_pretrained(tiny_model_dir)
    assert isinstance(load_processor(tiny_model_dir), ImageOnlyProcessor)


def test_outputs_image_tokens_and_mm_token_type_ids(tiny_model_dir):
    processor = load_processor(tiny_model_dir)
    batch = _encode(processor, _image(300, 100))
    t, h, w = batch["image_grid_thw"][0].tolist()
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n_image = int((batch["input_ids"] == image_id).sum())
    assert n_image == t * h * w // 4
    assert int(batch["mm_token_type_ids"].sum()) == n_image  # images are type 1, text 0
    assert batch["pixel_values"].shape == (t * h * w, 3 * 2 * 14 * 14)


def test_save_load_round_trip_names_stock_classes(tiny_model_dir, tmp_path):
    processor = load_processor(tiny_model_dir)
    processor.save_pretrained(tmp_path)
    nested = json.loads((tmp_path / "processor_config.json").read_text())
    assert nested["processor_class"] == "Qwen2_5_VLProcessor"
    assert nested["image_processor"]["image_processor_type"] == "Qwen2VLImageProcessor"
    assert nested["video_processor"]["video_processor_type"] == "Qwen2VLVideoProcessor"
    flat = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert flat["processor_class"] == "Qwen2_5_VLProcessor" and flat["max_pixels"] == 512 * 512
    tokenizer_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert tokenizer_config["processor_class"] == "Qwen2_5_VLProcessor"
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"  # transformers 4.x reads it too
    assert "local_files_only" not in tokenizer_config  # tests run with HF_HUB_OFFLINE=1: not the model's
    assert (tmp_path / "chat_template.jinja").read_text() == processor.chat_template

    again = load_processor(tmp_path)
    image = _image(420, 90)
    first, second = _encode(processor, image), _encode(again, image)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert again.image_processor.size == processor.image_processor.size


def test_size_override_caps_the_image(tiny_model_dir):
    processor = load_processor(tiny_model_dir)
    size = {"shortest_edge": 56 * 56, "longest_edge": 128 * 128}
    batch = processor(text=[chat_prompt(processor, "x")], images=[_image(1000, 1000)], size=size, return_tensors="pt")
    t, h, w = batch["image_grid_thw"][0].tolist()
    assert h * 14 * w * 14 <= 128 * 128


def test_released_checkpoint_layout_loads(tiny_model_dir, tmp_path):
    """The Qwen2.5-VL / Uni-MuMER Hub layout: flat preprocessor_config.json and chat_template.json only."""
    import shutil

    for f in tiny_model_dir.iterdir():
        if f.name not in ("processor_config.json", "chat_template.jinja"):
            shutil.copy(f, tmp_path / f.name)
    template = (tiny_model_dir / "chat_template.jinja").read_text()
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    processor = load_processor(tmp_path)
    assert processor.chat_template == template
    assert processor.image_processor.size["longest_edge"] == 512 * 512
    first, second = _encode(load_processor(tiny_model_dir), _image()), _encode(processor, _image())
    assert all(torch.equal(first[key], second[key]) for key in first)
