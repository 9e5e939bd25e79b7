"""The small convolutional recogniser (the bundled offline model), registered with transformers.

Importing this package registers `ConvMerConfig` ("convmer"), `ConvMerForConditionalGeneration` and
`ConvMerProcessor` with the Auto classes, so a saved folder loads with the stock calls and no remote code:

    import unimumer.convmer  # noqa: F401  (unimumer.recognizer does it)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
"""
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from unimumer.convmer.configuration import ConvMerConfig
from unimumer.convmer.modeling import ConvMerForConditionalGeneration
from unimumer.convmer.processing import ConvMerProcessor

AutoConfig.register(ConvMerConfig.model_type, ConvMerConfig, exist_ok=True)
AutoModelForImageTextToText.register(ConvMerConfig, ConvMerForConditionalGeneration, exist_ok=True)
AutoProcessor.register(ConvMerConfig, ConvMerProcessor, exist_ok=True)

__all__ = ["ConvMerConfig", "ConvMerForConditionalGeneration", "ConvMerProcessor"]
