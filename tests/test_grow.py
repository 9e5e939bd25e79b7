"""train.grow: a deeper model that reads exactly as the original did, and whose new layers can learn."""
import json

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText

from train.grow import layer_sources, main
from unimumer.recognizer import Recognizer


def test_copies_are_spread_evenly_and_layers_are_never_removed():
    assert layer_sources(3, 6) == [0, 0, 1, 1, 2, 2]
    assert layer_sources(2, 5) == [0, 0, 0, 1, 1]
    assert layer_sources(3, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="fewer than the model's 3 layers"):
        layer_sources(3, 2)


@pytest.fixture(scope="module")
def grown_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("grown") / "model"
    assert main([str(tiny_model_dir), "--out", str(out), "--text-layers", "5"]) == 0
    return out


def test_the_grown_model_reads_an_image_exactly_as_the_original(tiny_model_dir, grown_dir):
    config = json.loads((grown_dir / "config.json").read_text())["text_config"]
    assert config["num_hidden_layers"] == 5 and len(config["layer_types"]) == 5
    image = Image.new("RGB", (200, 80), "white")
    ImageDraw.Draw(image).line([(20, 60), (90, 15), (180, 50)], fill="black", width=4)
    options = {"max_new_tokens": 12}
    # generation runs the vision tower, M-RoPE positions and the KV cache of every layer
    original = Recognizer.from_pretrained(str(tiny_model_dir)).recognize(image, **options)
    grown = Recognizer.from_pretrained(str(grown_dir)).recognize(image, **options)
    assert grown.raw == original.raw and grown.visual_tokens == original.visual_tokens


def test_the_new_layers_start_silent_and_get_gradients(grown_dir):
    model = AutoModelForImageTextToText.from_pretrained(grown_dir)
    layers = model.model.language_model.layers
    copies = [1, 2, 4]  # layer_sources(2, 5) == [0, 0, 0, 1, 1]
    for i, layer in enumerate(layers):
        silent = layer.self_attn.o_proj.weight.abs().sum() == 0 and layer.mlp.down_proj.weight.abs().sum() == 0
        assert bool(silent) == (i in copies)
    vocab = model.config.get_text_config().vocab_size
    ids = torch.randint(20, vocab, (1, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    for i in copies:
        assert layers[i].self_attn.o_proj.weight.grad.abs().sum() > 0
        assert layers[i].mlp.down_proj.weight.grad.abs().sum() > 0


def test_bad_requests_are_clear_errors(tiny_model_dir, grown_dir, tmp_path):
    with pytest.raises(SystemExit, match="fewer than the model's 2 layers"):
        main([str(tiny_model_dir), "--out", str(tmp_path / "a"), "--text-layers", "1"])
    with pytest.raises(SystemExit, match="is not empty"):
        main([str(tiny_model_dir), "--out", str(grown_dir), "--text-layers", "3"])
    with pytest.raises(SystemExit, match="no config.json"):
        main([str(tmp_path), "--out", str(tmp_path / "b"), "--text-layers", "3"])
