"""`ConvMerProcessor`: chat text + images -> ConvMer inputs.

The image processor is the stock Qwen2-VL one (PIL or torchvision backend) configured with 16-px patches,
no merging and one frame: the same `pixel_values` / `image_grid_thw` layout, a factor of 16 instead of 28.
Unlike Qwen's processors the prompt keeps a single `<|image_pad|>`: the decoder reads the image through
cross-attention, not as prompt tokens, so the text stays a few dozen tokens long.
"""
from __future__ import annotations

from transformers.processing_utils import ProcessorMixin


class ConvMerProcessor(ProcessorMixin):
    return_mm_token_type_ids = True

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        super().__init__(image_processor, tokenizer, chat_template=chat_template)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs) -> str:
        return self.image_token  # one placeholder per image, whatever its size
