"""Token confidence and reading scores from the model's token probabilities (unimumer.confidence)."""
import math

from unimumer.confidence import decode_pieces, latex_confidence, sequence_score, word_confidence
from unimumer.processor import load_processor


def test_a_latex_token_is_as_sure_as_its_least_likely_model_token(tiny_model_dir):
    tokenizer = load_processor(tiny_model_dir).tokenizer
    text = "\\frac { x } { 2 }"
    ids = tokenizer.encode(text, add_special_tokens=False)
    probabilities = [0.9] * len(ids)
    probabilities[-1] = 0.2  # the last model token writes (part of) the closing brace
    pieces = decode_pieces(tokenizer, ids, [math.log(p) for p in probabilities])
    assert "".join(piece for piece, _ in pieces) == text
    words = word_confidence(pieces)
    assert [w for w, _ in words] == text.split()
    assert words[-1][1] == 0.2 and all(abs(p - 0.9) < 1e-9 for _, p in words[:-1])


def test_the_latex_line_is_read_after_a_tree_or_log():
    pieces = [("REPLACE:z -> 2\n", 0.5), ("x ^ { ", 0.9), ("2", 0.3), (" }", 0.99)]
    assert latex_confidence(pieces, "x ^ { 2 }") == [("x", 0.9), ("^", 0.9), ("{", 0.9), ("2", 0.3), ("}", 0.99)]
    assert latex_confidence(pieces, "y + 1") is None  # not what the pieces wrote


def test_the_score_is_the_geometric_mean_probability():
    assert math.isclose(sequence_score([math.log(0.5), math.log(0.125)]), 0.25)
    assert sequence_score([]) == 1.0
