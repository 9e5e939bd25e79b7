"""A Qwen-VL family processor, with or without torchvision.

`AutoProcessor` cannot build the Qwen2.5-VL, Qwen3-VL or Qwen3.5 processors without torchvision (their
video processors need it), and our CPU stack has none. Recognition only needs images, so `load_processor`
falls back to an image-only subclass of the checkpoint's own processor class, on the PIL image backend.
It saves folders that name the stock classes, so the stock `AutoProcessor` loads them wherever
torchvision exists.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import transformers
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

import unimumer.convmer  # noqa: F401  (registers the bundled model's classes with the Auto classes)

DEFAULT_PROCESSOR = "Qwen2_5_VLProcessor"


class ImageOnlyProcessor(ProcessorMixin):
    """Mixed in before a stock processor class (see `image_only_class`): text + images, no video.

    The stock `__init__` runs in full (it sets the family's special-token attributes), with no video
    processor: `ProcessorMixin` reads the sub-processors from this `__init__`'s signature.
    """

    video_processor_type: str | None = None  # the stock video processor, named in saved folders

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template)

    @property
    def stock_class(self) -> str:
        mro = type(self).__mro__  # (ImageOnly<Stock>, ImageOnlyProcessor, <Stock>, ..., ProcessorMixin, ...)
        return mro[mro.index(ImageOnlyProcessor) + 1].__name__

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Write the folder the stock processor would write (class names included)."""
        if push_to_hub:
            raise NotImplementedError("Save to a folder and upload it (python -m train.push).")
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer._set_processor_class(self.stock_class)
        files = [str(f) for f in self.tokenizer.save_pretrained(out)]
        _portable_tokenizer_class(out / "tokenizer_config.json")
        if isinstance(self.chat_template, str):
            (out / "chat_template.jinja").write_text(self.chat_template, encoding="utf-8")
        image = self.image_processor.to_dict()
        # "Qwen2VLImageProcessorPil" -> "Qwen2VLImageProcessor": AutoImageProcessor picks the backend itself
        image["image_processor_type"] = type(self.image_processor).__name__.removesuffix("Pil")
        size = image.get("size") or {}
        # transformers 4.x (and the vLLM builds pinned to it) read min_pixels / max_pixels.
        image["min_pixels"], image["max_pixels"] = size.get("shortest_edge"), size.get("longest_edge")
        nested = {"processor_class": self.stock_class, "image_processor": image}
        if self.video_processor_type:
            video = {
                key: image[key]
                for key in ("size", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")
                if key in image
            }
            nested["video_processor"] = dict(video, video_processor_type=self.video_processor_type)
        flat = dict(image, processor_class=self.stock_class)
        for name, data in (("processor_config.json", nested), ("preprocessor_config.json", flat)):
            (out / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            files.append(str(out / name))
        return files


@cache
def image_only_class(stock_name: str) -> type:
    """`ImageOnlyProcessor` over the stock processor class `stock_name` (e.g. "Qwen3VLProcessor")."""
    stock = getattr(transformers, stock_name, None)
    if not (isinstance(stock, type) and issubclass(stock, ProcessorMixin)):
        raise ValueError(f"{stock_name} is not a transformers processor class.")
    return type(f"ImageOnly{stock_name}", (ImageOnlyProcessor, stock), {"__module__": __name__})


def _portable_tokenizer_class(config_file: Path) -> None:
    """A generic `tokenizers` tokenizer is "TokenizersBackend" in transformers 5, which 4.x (and the vLLM
    builds pinned to it) do not know; both read "PreTrainedTokenizerFast" as the same class."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def image_only_processor(
    tokenizer,
    chat_template: str | None = None,
    processor_class: str = DEFAULT_PROCESSOR,
    video_processor_type: str | None = None,
    **image_kwargs,
) -> ImageOnlyProcessor:
    """A new processor of the stock class `processor_class` from a tokenizer; `image_kwargs` go to
    `Qwen2VLImageProcessorPil` (min/max_pixels, patch_size, merge_size, ...)."""
    processor = image_only_class(processor_class)(
        Qwen2VLImageProcessorPil(**image_kwargs), tokenizer, chat_template=chat_template or tokenizer.chat_template
    )
    processor.video_processor_type = video_processor_type
    return processor


def load_processor(name_or_path, **kwargs):
    """The stock `AutoProcessor`, or the image-only processor of the same class where torchvision is missing."""
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
    except ImportError:  # "Qwen3VLProcessor requires the Torchvision library"
        processor = _image_only_processor(name_or_path, **kwargs)
    # how this process reached the files (HF_HUB_OFFLINE sets it) is not the tokenizer's: keep it out of saves
    processor.tokenizer.init_kwargs.pop("local_files_only", None)
    return processor


def _image_only_processor(name_or_path, **kwargs):
    """The saved processor class with an image-only video part (no torchvision needed)."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    image_processor = AutoImageProcessor.from_pretrained(name_or_path, backend="pil", **kwargs)
    configs = _saved_configs(Path(name_or_path))
    stock = next((c["processor_class"] for c in configs if c.get("processor_class")), DEFAULT_PROCESSOR)
    chat_template = _chat_template(name_or_path, tokenizer)
    processor = image_only_class(stock)(image_processor, tokenizer, chat_template=chat_template)
    processor.video_processor_type = next(
        (c["video_processor_type"] for c in configs if c.get("video_processor_type")), None
    )
    return processor


def _saved_configs(folder: Path) -> list[dict]:
    """The processor configs a folder holds, most specific first (processor, video, flat, tokenizer)."""
    found = []
    for name in ("processor_config.json", "video_preprocessor_config.json", "preprocessor_config.json",
                 "tokenizer_config.json"):
        if (folder / name).is_file():
            data = json.loads((folder / name).read_text(encoding="utf-8"))
            found += [data] + [data[key] for key in ("video_processor",) if isinstance(data.get(key), dict)]
    return found


def _chat_template(name_or_path, tokenizer) -> str | None:
    """The processor's chat template (chat_template.jinja or legacy .json), else the tokenizer's."""
    folder = Path(name_or_path)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        return json.loads((folder / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
    return tokenizer.chat_template

