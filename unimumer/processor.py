"""The Qwen2.5-VL processor, with or without torchvision.

`AutoProcessor` cannot build `Qwen2_5_VLProcessor` without torchvision (its video processor needs it),
and our CPU stack has none. Recognition only needs images, so `load_processor` falls back to
`ImageOnlyProcessor`: the same processor minus video, on the PIL image backend. It saves folders that
name the stock classes, so the stock `AutoProcessor` loads them wherever torchvision exists.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

STOCK_PROCESSOR = "Qwen2_5_VLProcessor"
STOCK_IMAGE_PROCESSOR = "Qwen2VLImageProcessor"  # AutoImageProcessor picks the torchvision or PIL backend
STOCK_VIDEO_PROCESSOR = "Qwen2VLVideoProcessor"


class ImageOnlyProcessor(Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` without the video processor: text + images, identical token layout."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        # Skip Qwen2_5_VLProcessor.__init__: it insists on a video processor.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Write the folder the stock `Qwen2_5_VLProcessor` would write (class names included)."""
        if push_to_hub:
            raise NotImplementedError("Save to a folder and upload it (python -m train.push).")
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer._set_processor_class(STOCK_PROCESSOR)
        files = [str(f) for f in self.tokenizer.save_pretrained(out)]
        _portable_tokenizer_class(out / "tokenizer_config.json")
        if isinstance(self.chat_template, str):
            (out / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")
        image = self.image_processor.to_dict()
        image["image_processor_type"] = STOCK_IMAGE_PROCESSOR
        size = image.get("size") or {}
        # transformers 4.x (and the vLLM builds pinned to it) read min_pixels / max_pixels.
        image["min_pixels"], image["max_pixels"] = size.get("shortest_edge"), size.get("longest_edge")
        video = {
            key: image[key]
            for key in ("size", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")
            if key in image
        }
        video["video_processor_type"] = STOCK_VIDEO_PROCESSOR
        nested = {"processor_class": STOCK_PROCESSOR, "image_processor": image, "video_processor": video}
        flat = dict(image, processor_class=STOCK_PROCESSOR)
        for name, data in (("processor_config.json", nested), ("preprocessor_config.json", flat)):
            (out / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            files.append(str(out / name))
        return files


def _portable_tokenizer_class(config_file: Path) -> None:
    """A generic `tokenizers` tokenizer is "TokenizersBackend" in transformers 5, which 4.x (and the vLLM
    builds pinned to it) do not know; both read "PreTrainedTokenizerFast" as the same class."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def image_only_processor(tokenizer, chat_template: str | None = None, **image_kwargs) -> ImageOnlyProcessor:
    """A new processor from a tokenizer; `image_kwargs` go to `Qwen2VLImageProcessorPil` (min/max_pixels, ...)."""
    return ImageOnlyProcessor(
        Qwen2VLImageProcessorPil(**image_kwargs),
        tokenizer,
        chat_template=chat_template or tokenizer.chat_template,
    )


def load_processor(name_or_path, **kwargs):
    """The stock `AutoProcessor`, or `ImageOnlyProcessor` where torchvision is missing."""
    try:
        return AutoProcessor.from_pretrained(name_or_path, **kwargs)
    except ImportError:  # "Qwen2_5_VLProcessor requires the Torchvision library"
        pass
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    image_processor = AutoImageProcessor.from_pretrained(name_or_path, backend="pil", **kwargs)
    return ImageOnlyProcessor(image_processor, tokenizer, chat_template=_chat_template(name_or_path, tokenizer))


def _chat_template(name_or_path, tokenizer) -> str | None:
    """The processor's chat template (chat_template.jinja or legacy .json), else the tokenizer's."""
    folder = Path(name_or_path)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
    return tokenizer.chat_template
