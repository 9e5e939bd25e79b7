"""`ConvMerForConditionalGeneration`: DenseNet encoder + transformer decoder, a transformers model.

The design of the CROHME specialists (BTTR, CoMER: a DenseNet reads the strokes, a small decoder
cross-attends to its feature map), packaged like a vision-language model so the rest of the project
treats it as one: the processor's `pixel_values` are 16 x 16 patches with an `image_grid_thw` (as
Qwen2-VL's), the prompt holds one `<|image_pad|>` placeholder, and `generate` continues the chat text.

- Encoder: stem (7x7 conv, stride 2; 2x2 max-pool), dense blocks of bottleneck layers (BN-ReLU-1x1-
  BN-ReLU-3x3, growth `growth_rate`) joined by transitions (1x1 conv, 2x2 average pool), a 1x1
  projection to `hidden_size`, plus a 2-D sine position code: one feature vector per 16 x 16 patch.
- Decoder: pre-norm layers of causal self-attention (rotary positions, KV cache), cross-attention to
  the image features and an MLP. The placeholder token's embedding gets the mean image feature added.
- Generation: the first forward encodes the image and projects every layer's cross-attention keys and
  values once; they travel to the next steps in `model_kwargs["image_memory"]`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from unimumer.convmer.configuration import ConvMerConfig


# ---------------------------------------------------------------- encoder


def norm(channels: int) -> nn.BatchNorm2d:
    """Batch norm: in inference its fixed statistics make a padded page read like the page alone."""
    return nn.BatchNorm2d(channels)


class Bottleneck(nn.Module):
    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.norm1 = norm(channels)
        self.conv1 = nn.Conv2d(channels, 4 * growth, 1, bias=False)
        self.norm2 = norm(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.norm1(x)))
        return torch.cat([x, self.conv2(F.relu(self.norm2(y)))], 1)


class Transition(nn.Module):
    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.norm = norm(channels)
        self.conv = nn.Conv2d(channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.norm(x))), 2, ceil_mode=True)


class DenseEncoder(nn.Module):
    """Gray page (B, 1, H, W), H and W multiples of the patch size -> features (B, hidden, H/16, W/16)."""

    def __init__(self, config: ConvMerConfig):
        super().__init__()
        channels = config.stem_channels
        self.stem = nn.Conv2d(1, channels, 7, stride=2, padding=3, bias=False)
        self.stem_norm = norm(channels)
        stages = []
        for i, depth in enumerate(config.block_depths):
            layers = []
            for _ in range(depth):
                layers.append(Bottleneck(channels, config.growth_rate))
                channels += config.growth_rate
            if i < len(config.block_depths) - 1:
                out = int(channels * config.compression)
                layers.append(Transition(channels, out))
                channels = out
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.out_norm = norm(channels)
        self.project = nn.Conv2d(channels, config.hidden_size, 1)

    def forward(self, pages: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem_norm(self.stem(pages))), 2, ceil_mode=True)
        return self.project(F.relu(self.out_norm(self.stages(x))))


def position_code_2d(mask: torch.Tensor, dim: int, temperature: float = 10_000.0) -> torch.Tensor:
    """Sine code of each cell's (y, x), normalised to the image's own extent: (B, h, w) bool -> (B, h, w, dim)."""
    y = mask.cumsum(1, dtype=torch.float32)
    x = mask.cumsum(2, dtype=torch.float32)
    y = y / (y[:, -1:, :].amax(2, keepdim=True).clamp(min=1)) * 2 * math.pi
    x = x / (x[:, :, -1:].amax(1, keepdim=True).clamp(min=1)) * 2 * math.pi
    quarter = dim // 4
    freq = temperature ** (torch.arange(quarter, dtype=torch.float32, device=mask.device) / quarter)
    parts = []
    for coord in (y, x):
        angle = coord[..., None] / freq
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, -1)


# ---------------------------------------------------------------- decoder


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, -1)
    return torch.cat([-b, a], -1)


class RotaryCode(nn.Module):
    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions -> cos, sin of shape (B, 1, T, head_dim), computed in float32, given in `dtype`
        (float32 codes would promote bf16 queries and keys)."""
        angles = positions[..., None].float() * self.inv_freq
        angles = torch.cat([angles, angles], -1)[:, None]
        return angles.cos().to(dtype), angles.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self, config: ConvMerConfig, cross: bool):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.cross = cross
        self.q = nn.Linear(config.hidden_size, config.hidden_size)
        self.kv = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, -1)
        return self.split(k), self.split(v)

    def forward(self, x, keys, values, mask, rotary=None) -> torch.Tensor:
        q = self.split(self.q(x))
        if rotary is not None:
            cos, sin = rotary
            q = q * cos + rotate_half(q) * sin
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class DecoderLayer(nn.Module):
    def __init__(self, config: ConvMerConfig, index: int):
        super().__init__()
        self.index = index
        self.norm1 = nn.LayerNorm(config.hidden_size)
        self.self_attn = Attention(config, cross=False)
        self.norm2 = nn.LayerNorm(config.hidden_size)
        self.cross_attn = Attention(config, cross=True)
        self.norm3 = nn.LayerNorm(config.hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, self_mask, rotary, cache: Cache | None, cross_kv, cross_mask) -> torch.Tensor:
        h = self.norm1(x)
        k, v = self.self_attn.keys_values(h)
        cos, sin = rotary
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(k, v, self.index)
        x = x + self.dropout(self.self_attn(h, k, v, self_mask, rotary))
        x = x + self.dropout(self.cross_attn(self.norm2(x), *cross_kv, cross_mask))
        return x + self.dropout(self.mlp(self.norm3(x)))


# ---------------------------------------------------------------- the model


@dataclass
class ImageMemory(ModelOutput):
    """What the decoder needs of the image: every layer's cross-attention keys and values, and the mask."""

    keys_values: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None
    mask: torch.Tensor | None = None  # (B, 1, 1, cells) bool: True where the image has a cell
    pooled: torch.Tensor | None = None  # (B, hidden): mean feature, added to the placeholder's embedding


@dataclass
class ConvMerOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: Cache | None = None
    image_memory: ImageMemory | None = None


class ConvMerPreTrainedModel(PreTrainedModel):
    config_class = ConvMerConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["DecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ConvMerModel(ConvMerPreTrainedModel):
    def __init__(self, config: ConvMerConfig):
        super().__init__(config)
        self.encoder = DenseEncoder(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.image_summary = nn.Linear(config.hidden_size, config.hidden_size)
        self.memory_norm = nn.LayerNorm(config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size)
        self.rotary = RotaryCode(config.hidden_size // config.num_attention_heads, config.rope_theta)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def pages(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Qwen-style patch rows -> padded gray pages (B, 1, H, W) and cell masks (B, h, w).

        A row is one (channels, 16, 16) patch in raster order; channels are averaged (ink is ink in any
        colour); padding is paper (0 after the processor's normalisation), so a padded page reads like a
        larger sheet with the same ink.
        """
        p = self.config.patch_size
        grids = image_grid_thw.tolist()
        height = max(h for _, h, _ in grids)
        width = max(w for _, _, w in grids)
        pages = pixel_values.new_zeros(len(grids), 1, height * p, width * p)
        mask = torch.zeros(len(grids), height, width, dtype=torch.bool, device=pixel_values.device)
        start = 0
        for i, (t, h, w) in enumerate(grids):
            rows = pixel_values[start : start + t * h * w].view(t, h, w, -1, p, p)[0]  # one frame
            start += t * h * w
            pages[i, 0, : h * p, : w * p] = rows.mean(2).permute(0, 2, 1, 3).reshape(h * p, w * p)
            mask[i, :h, :w] = True
        return pages, mask

    def encode(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> ImageMemory:
        pages, mask = self.pages(pixel_values.to(self.dtype), image_grid_thw)
        features = self.encoder(pages).permute(0, 2, 3, 1)  # (B, h, w, hidden)
        features = features + position_code_2d(mask, features.shape[-1]).to(features.dtype)
        memory = self.memory_norm(features.flatten(1, 2))  # (B, h*w, hidden)
        flat = mask.flatten(1)
        pooled = (memory * flat[..., None]).sum(1) / flat.sum(1, keepdim=True).clamp(min=1)
        keys_values = tuple(layer.cross_attn.keys_values(memory) for layer in self.layers)
        return ImageMemory(keys_values=keys_values, mask=flat[:, None, None, :], pooled=pooled)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        image_memory: ImageMemory | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Cache | None, ImageMemory]:
        if image_memory is None:
            if pixel_values is None:
                raise ValueError("ConvMer needs the image: pass pixel_values and image_grid_thw from its processor.")
            image_memory = self.encode(pixel_values, image_grid_thw)
        x = self.embed_tokens(input_ids)
        placeholder = input_ids == self.config.image_token_id
        if placeholder.any():  # the prompt's <|image_pad|>: the image's summary joins its embedding
            summary = self.image_summary(image_memory.pooled).to(x.dtype)
            x = x + placeholder[..., None] * summary[:, None, :]

        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        batch, length = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones(batch, past + length, dtype=torch.long, device=input_ids.device)
        if position_ids is None:  # count only real tokens: left padding does not shift positions
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
        keys = torch.arange(past + length, device=input_ids.device)
        queries = keys[past:, None]
        # causal and not padding; a padding query may see itself so that no row is empty
        self_mask = (keys[None, :] <= queries) & attention_mask.bool()[:, None, :]
        self_mask = (self_mask | (keys[None, :] == queries))[:, None]
        rotary = self.rotary(position_ids, x.dtype)
        for layer, cross_kv in zip(self.layers, image_memory.keys_values):
            x = layer(x, self_mask, rotary, past_key_values, cross_kv, image_memory.mask)
        return self.norm(x), past_key_values, image_memory


class ConvMerForConditionalGeneration(ConvMerPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: ConvMerConfig):
        super().__init__(config)
        self.model = ConvMerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        image_memory: ImageMemory | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        mm_token_type_ids: torch.Tensor | None = None,  # the processor's; positions here need none
        **kwargs,
    ) -> ConvMerOutput:
        if input_ids is None:
            raise ValueError("ConvMer reads token ids (input_ids); inputs_embeds is not supported.")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        hidden, cache, memory = self.model(
            input_ids, attention_mask, position_ids, past_key_values, image_memory, pixel_values, image_grid_thw,
            use_cache=bool(use_cache) and labels is None,
        )
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                label_smoothing=self.config.label_smoothing,
            )
        return ConvMerOutput(loss=loss, logits=logits, past_key_values=cache, image_memory=memory)

    # -- generation: the image is encoded once, its memory carried from step to step ------------------

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        model_kwargs["image_memory"] = outputs.image_memory
        return model_kwargs

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """Beams / several samples per prompt: repeat each image's patch rows with its row, not row by row."""
        if expand_size == 1:
            return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        pixel_values = model_kwargs.pop("pixel_values", None)
        grids = model_kwargs.pop("image_grid_thw", None)
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        if pixel_values is not None:
            chunks = pixel_values.split(grids.prod(-1).tolist())
            model_kwargs["pixel_values"] = torch.cat([c for c in chunks for _ in range(expand_size)])
            model_kwargs["image_grid_thw"] = grids.repeat_interleave(expand_size, dim=0)
        return input_ids, model_kwargs
