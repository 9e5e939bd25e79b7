"""`ConvMerConfig`: the sizes of the small convolutional recogniser (see `unimumer.convmer`)."""
from __future__ import annotations

from transformers import PretrainedConfig


class ConvMerConfig(PretrainedConfig):
    """A DenseNet image encoder and a small transformer decoder that cross-attends to its features.

    The encoder's total stride is `patch_size` (16): one feature-map cell per 16 x 16 pixel patch, the
    unit the processor cuts images into. The decoder reads the chat prompt (the task) and writes the answer.
    """

    model_type = "convmer"

    def __init__(
        self,
        vocab_size: int = 1024,
        hidden_size: int = 256,
        num_hidden_layers: int = 3,
        num_attention_heads: int = 8,
        intermediate_size: int = 1024,
        dropout: float = 0.1,
        growth_rate: int = 24,
        block_depths: tuple[int, ...] = (16, 16, 16),
        stem_channels: int = 48,
        compression: float = 0.5,
        patch_size: int = 16,
        rope_theta: float = 10_000.0,
        max_position_embeddings: int = 4096,
        label_smoothing: float = 0.0,
        image_token_id: int = 12,
        bos_token_id: int = 0,
        eos_token_id: int = 2,
        pad_token_id: int = 0,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        **kwargs,
    ):
        if hidden_size % num_attention_heads or (hidden_size // num_attention_heads) % 2:
            raise ValueError("hidden_size / num_attention_heads must be an even whole number (RoPE pairs).")
        if patch_size != 2 ** (len(block_depths) + 1):
            raise ValueError(f"patch_size must be 2 ** (blocks + 1) = {2 ** (len(block_depths) + 1)}: the encoder's stride.")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.dropout = dropout
        self.growth_rate = growth_rate
        self.block_depths = list(block_depths)
        self.stem_channels = stem_channels
        self.compression = compression
        self.patch_size = patch_size
        self.rope_theta = rope_theta
        self.max_position_embeddings = max_position_embeddings
        self.label_smoothing = label_smoothing
        self.image_token_id = image_token_id
        self.use_cache = use_cache
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
