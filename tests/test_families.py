"""Every released family (Qwen2.5-VL, Qwen3-VL, Qwen3.5) as tiny models: loading without torchvision, the
chat text of its training template, the image sizing of its own processor, uploads sent whole and sketches
cropped, predict in every mode, and a few fine-tuning steps -> push --dry-run -> reload."""
import json

import pytest
import torch
from PIL import Image, ImageDraw

from conftest import SHARED_DATA
from test_finetune import TINY_CPU, build_synthetic
from train import evaluate, finetune, push
from unimumer.cli import main
from unimumer.generation import chat_prompt, image_size
from unimumer.images import DEFAULT_MAX_PIXELS, training_size, vision_factor, visual_tokens
from unimumer.processor import ImageOnlyProcessor, load_processor
from unimumer.recognizer import MODES, Recognizer
from unimumer.tasks import human_prompt
from unimumer.tiny import FAMILIES

FEW = {"max_new_tokens": 6}
PIXELS_PER_TOKEN = {"qwen2.5-vl": 28, "qwen3-vl": 32, "qwen3.5": 32}  # 14- or 16-px patches, merged 2 x 2


def expected_prompt(template: str, prompt: str) -> str:
    """The training text of one user turn and the assistant's opening, written from LLaMA-Factory's template
    rules (src/llamafactory/data/template.py): format_system `<|im_start|>system\\n{{content}}<|im_end|>\\n`
    with the template's default_system when it has one, then format_user
    `<|im_start|>user\\n{{content}}<|im_end|>\\n<|im_start|>assistant\\n`, where the Qwen-VL plugin has turned
    `<image>` into `<|vision_start|><|image_pad|><|vision_end|>`. qwen2_vl's default_system is "You are a
    helpful assistant."; qwen3_vl_nothink and qwen3_5_nothink have none, and as plain (not reasoning)
    templates they add no think block."""
    system = {"qwen2_vl": "You are a helpful assistant.", "qwen3_vl_nothink": None, "qwen3_5_nothink": None}[template]
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return (head + f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\n"
            "<|im_start|>assistant\n")


# The chat templates of the released checkpoints' bases, as far as the prompt goes: Qwen2.5-VL-Instruct's
# adds the default system turn, Qwen3-VL-Instruct's none, Qwen3.5's none but opens a think block (the tiny
# Qwen3.5 model has that habit, see unimumer.tiny.THINKING_CHAT_TEMPLATE).
QWEN2_5_VL_DEFAULT_SYSTEM = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAINED_WITH = {"qwen2.5-vl": "qwen2_vl", "qwen3-vl": "qwen3_vl_nothink", "qwen3.5": "qwen3_5_nothink"}


@pytest.fixture(scope="module")
def recognizers(family_dirs):
    return {family: Recognizer.from_pretrained(str(path)) for family, path in family_dirs.items()}


def scribble(width=300, height=100):
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).line((12, height - 20, width // 3, 15, width - 12, height - 25), fill="black", width=4)
    return image


@pytest.mark.parametrize("family", FAMILIES)
def test_the_prompt_is_the_training_templates(family, recognizers):
    processor = recognizers[family].processor
    if family == "qwen2.5-vl":
        processor.chat_template, own = QWEN2_5_VL_DEFAULT_SYSTEM, processor.chat_template
    try:
        for task in ("vanilla", "tree"):
            prompt = human_prompt(task)
            assert chat_prompt(processor, prompt) == expected_prompt(TRAINED_WITH[family], prompt)
    finally:
        if family == "qwen2.5-vl":
            processor.chat_template = own
    if family == "qwen3.5":  # its template opens a think block, which the checkpoints never saw
        raw = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "x"}]}],
                                            add_generation_prompt=True, tokenize=False)
        assert raw.endswith("<|im_start|>assistant\n<think>\n")


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_without_torchvision_and_saves_the_stock_layout(family, family_dirs, recognizers, tmp_path):
    from transformers.utils import is_torchvision_available

    processor = recognizers[family].processor
    if not is_torchvision_available():
        assert isinstance(processor, ImageOnlyProcessor)
    stock = FAMILIES[family].processor_class
    assert type(processor).__name__.endswith(stock)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == stock
    assert saved["image_processor"]["image_processor_type"] == "Qwen2VLImageProcessor"
    assert saved["video_processor"]["video_processor_type"] == FAMILIES[family].video_processor
    again = load_processor(tmp_path)
    assert type(again) is type(processor) and again.chat_template == processor.chat_template
    assert type(recognizers[family].model).__name__ == FAMILIES[family].model_class


@pytest.mark.parametrize("family", FAMILIES)
def test_visual_tokens_are_the_processors_own_count(family, recognizers):
    recognizer = recognizers[family]
    image_processor = recognizer.processor.image_processor
    factor = vision_factor(image_processor)
    assert factor == PIXELS_PER_TOKEN[family]
    for size in ((300, 100), (1000, 60), (64, 40), (700, 700)):
        image = recognizer.prepare(scribble(*size))
        batch = recognizer.processor(text=[chat_prompt(recognizer.processor, "x")], images=[image],
                                     size=image_size(recognizer.processor, image.width * image.height),
                                     return_tensors="pt")
        t, h, w = batch["image_grid_thw"][0].tolist()
        from_grid = t * h * w // image_processor.merge_size**2
        assert from_grid == int((batch["input_ids"] == recognizer.processor.image_token_id).sum())
        limits = image_size(recognizer.processor, image.width * image.height)
        arithmetic = visual_tokens(image.width, image.height, factor=factor, min_pixels=limits["shortest_edge"],
                                   max_pixels=limits["longest_edge"])
        assert recognizer.visual_tokens(image) == from_grid == arithmetic, size
    prepared = recognizer.prepare(scribble())
    assert recognizer.recognize(scribble(), **FEW).visual_tokens == recognizer.visual_tokens(prepared)


def photo_1364x314() -> Image.Image:
    """The HME100K 'color' photo (1364 x 314) of ../shared/data, or a stand-in of that size."""
    path = SHARED_DATA / "hme100k_photos" / "color.jpg"
    if path.is_file():
        return Image.open(path).convert("RGB")
    return scribble(1364, 314)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_upload_is_sent_whole_and_a_sketch_canvas_is_cropped(family, recognizers):
    recognizer = recognizers[family]
    photo = photo_1364x314()
    assert photo.size == (1364, 314)
    prepared = recognizer.prepare(photo)
    assert prepared.size == training_size(1364, 314) == (1067, 245)  # the whole photo, scaled to the cap
    assert prepared.width * prepared.height <= DEFAULT_MAX_PIXELS
    result = recognizer.recognize(photo, **FEW)
    assert result.visual_tokens == recognizer.visual_tokens(prepared)

    canvas = Image.new("RGBA", (1200, 400), (0, 0, 0, 0))  # a sketchpad value: mostly empty page
    ImageDraw.Draw(canvas).line((540, 170, 600, 230, 660, 170), fill=(0, 0, 0, 255), width=5)
    sketch = {"background": None, "layers": [canvas], "composite": canvas}
    cropped = recognizer.prepare(sketch)
    assert cropped.width < 250 and cropped.height < 150
    assert recognizer.prepare(canvas).size == training_size(1200, 400)  # the same page as an upload: whole
    assert recognizer.recognize(sketch, **FEW).visual_tokens == recognizer.visual_tokens(cropped)


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_in_every_mode(family, family_dirs, tmp_path, capsys):
    image = tmp_path / "formula.png"
    scribble().save(image)
    for mode in MODES:
        assert main(["predict", str(image), "--model", str(family_dirs[family]), "--mode", mode,
                     "--max-new-tokens", "4"]) == 0, mode
        record = json.loads(capsys.readouterr().out)[0]
        assert record["mode"] == mode and "error" not in record and record["visual_tokens"] > 0
    assert main(["predict", str(image), "--model", str(family_dirs[family]), "--sketch", "--decoding", "paper",
                 "--max-new-tokens", "4"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["visual_tokens"] > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_finetune_push_and_reload(family, family_dirs, tmp_path, capsys):
    data = build_synthetic(tmp_path / "data", n=4)
    run = tmp_path / "run"
    assert finetune.main(["--config", str(TINY_CPU), "--model", str(family_dirs[family]), "--data", str(data),
                          "--output_dir", str(run), "--max_steps", "2", "--save_steps", "2",
                          "--per_device_train_batch_size", "2", "--disable_tqdm", "true"]) == 0
    before = Recognizer.from_pretrained(str(family_dirs[family])).model.state_dict()
    after = Recognizer.from_pretrained(str(run)).model.state_dict()
    assert sum(not torch.equal(before[k], after[k]) for k in before) > 0.9 * len(before)
    out = tmp_path / "publish"
    assert push.main(["--checkpoint", str(run), "--repo-id", "you/tiny", "--dry-run", "--out", str(out)]) == 0
    _, meta, _ = (out / "README.md").read_text().split("---\n", 2)
    assert json.loads((out / "config.json").read_text())["model_type"] in meta
    published = Recognizer.from_pretrained(str(out))
    assert type(published.model).__name__ == FAMILIES[family].model_class
    assert published.recognize(scribble(), mode="tree", **FEW).visual_tokens > 0
    preds = tmp_path / "preds.json"
    assert evaluate.main(["--model", str(out), "--data", str(data), "--out", str(preds), "--max-new-tokens", "4"]) == 0
    assert len(json.loads(preds.read_text())) == 4 and "ExpRate" in capsys.readouterr().out
