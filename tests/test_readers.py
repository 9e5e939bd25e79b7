"""train.readers: every source format, labels files, and each kind of bad input as a counted Skip."""
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from conftest import shared_path
from train.readers import Sample, Skip, load_labels, read_source, resolve
from unimumer.latex import normalize
from unimumer.tasks import human_prompt

TRACES = ["10 10, 20 30, 30 10", "40 10, 40 30"]


def inkml(truth: str | None = "$x^2$", traces=TRACES, label_type: str = "truth", extra: str = "") -> str:
    """A small CROHME-style InkML document (MathWriting style with label_type='normalizedLabel')."""
    note = f'<annotation type="{label_type}">{truth}</annotation>' if truth is not None else ""
    body = "".join(f'<trace id="{i}">{t}</trace>' for i, t in enumerate(traces))
    return f'<ink xmlns="http://www.w3.org/2003/InkML">{note}{extra}{body}</ink>'


def write_ink_folder(root: Path) -> Path:
    """Good inks (one nested) plus one of each malformation; returns the folder."""
    (root / "sub").mkdir(parents=True)
    (root / "a_good.inkml").write_text(inkml("$\\frac1{2}$"))
    (root / "sub" / "b_nested.inkml").write_text(inkml("$a+b$"))
    (root / "c_badxml.inkml").write_text(inkml("$x$")[:-10])
    (root / "d_notraces.inkml").write_text(inkml("$x$", traces=[]))
    (root / "e_nonnumeric.inkml").write_text(inkml("$x$", traces=["1 2, a b"]))
    (root / "f_notruth.inkml").write_text(inkml(None))
    (root / "g_badlatex.inkml").write_text(inkml("$\\frac{1$"))
    (root / "notes.txt").write_text("not an ink")
    return root


def resolved(items) -> dict[str, object]:
    """id -> resolved Sample or Skip."""
    out = {}
    for item in items:
        out[item.id] = resolve(item) if isinstance(item, Sample) else item
    return out


def png_bytes(size=(40, 20)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, "white")
    image.paste((0, 0, 0), (5, 5, 30, 12))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_crohme_folder_reasons(tmp_path):
    items = resolved(read_source("crohme", write_ink_folder(tmp_path / "ink")))
    assert list(items) == ["a_good", "c_badxml", "d_notraces", "e_nonnumeric", "f_notruth", "g_badlatex", "b_nested"]
    assert items["a_good"].latex == "\\frac { 1 } { 2 }" and len(items["a_good"].ink.traces) == 2
    assert items["b_nested"].latex == "a + b"
    reasons = {k: v.reason for k, v in items.items() if isinstance(v, Skip)}
    assert reasons == {"c_badxml": "bad_xml", "d_notraces": "no_traces", "e_nonnumeric": "bad_points",
                       "f_notruth": "missing_truth", "g_badlatex": "bad_latex"}
    assert all(items[k].detail for k in reasons)


def test_crohme_real_inks_resolve():
    folder = shared_path("crohme", "inkml", "train", "KAIST")
    items = list(read_source("crohme", folder))
    assert len(items) > 100
    first = [resolve(s) for s in items[:40]]
    assert all(isinstance(s, Sample) and s.latex and s.ink.traces for s in first)


def test_labels_caption_and_predictions(tmp_path):
    folder = write_ink_folder(tmp_path / "ink")
    caption = tmp_path / "caption.txt"
    caption.write_text("a_good\t\\sqrt { x }  +  1\nb_nested y\nf_notruth z\n")
    items = resolved(read_source("crohme", folder, labels=caption))
    assert items["a_good"].latex == "\\sqrt { x } + 1"  # tokenised already: whitespace only
    assert items["b_nested"].latex == "y" and items["f_notruth"].latex == "z"
    assert items["d_notraces"].reason == "no_label"  # not in the labels file
    # A predictions JSON, with the CROHME 2016 bitmaps' `_0` suffix on one id.
    preds = tmp_path / "pred.json"
    preds.write_text(json.dumps([{"img_id": "a_good_0", "gt": "1", "pred": "7"}, {"img_id": "b_nested", "gt": "2"}]))
    assert load_labels(preds)["a_good"] == "1"
    caption.write_text("b_nested.jpg\tq\n")
    assert load_labels(caption) == {"b_nested.jpg": "q", "b_nested": "q"}
    items = resolved(read_source("crohme", folder, labels=preds))
    assert items["a_good"].latex == "1" and items["b_nested"].latex == "2"


def test_crohme_2016_labels_from_reference_predictions():
    folder = shared_path("crohme", "inkml", "2016")
    labels = load_labels(shared_path("reference_preds", "crohme_2016_pred.json"))
    items = list(read_source("crohme", folder, labels=labels))
    assert len(items) == 1147 and all(isinstance(s, Sample) for s in items)


def test_mathwriting_excerpt():
    items = resolved(read_source("mathwriting", shared_path("mathwriting_excerpt")))
    assert len(items) == 11 and all(isinstance(s, Sample) for s in items.values())
    sample = items["00015681597577ca"]  # normalizedLabel g(x)=G^{\prime}(x)=0 wins over label
    assert sample.latex == normalize("g(x)=G^{\\prime}(x)=0")


def test_mathwriting_escaped_label(tmp_path):
    (tmp_path / "m1.inkml").write_text(inkml("a &lt; b", label_type="label"))
    (tmp_path / "m2.inkml").write_text(inkml("x", label_type="label",
                                             extra='<annotation type="normalizedLabel">\\frac{1}{x}</annotation>'))
    items = resolved(read_source("mathwriting", tmp_path))
    assert items["m1"].latex == "a < b" and items["m2"].latex == "\\frac { 1 } { x }"


def test_hme100k_captions(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("h1.jpg", "h2.png", "h3.bmp"):
        (tmp_path / "img" / name).write_bytes(png_bytes())
    (tmp_path / "caption.txt").write_text("h1.jpg\t\\alpha ^ { 2 }\nh2 x  +  y\n\nh3\nh4\tz\n")
    items = resolved(read_source("hme100k", tmp_path))
    assert items["h1"].latex == "\\alpha ^ { 2 }" and items["h1"].image_path.name == "h1.jpg"
    assert items["h2"].latex == "x + y" and items["h2"].image_path.name == "h2.png"
    assert items["h3"].reason == "missing_truth" and items["h4"].reason == "missing_image"
    # HME100K names: train_labels.txt beside train_images/
    other = tmp_path / "hme"
    (other / "train_images").mkdir(parents=True)
    (other / "train_images" / "t_0.jpg").write_bytes(png_bytes())
    (other / "train_labels.txt").write_text("t_0.jpg\t1 + 1\n")
    assert [s.id for s in read_source("hme100k", other)] == ["t_0"]
    assert read_source("hme100k", other / "train_labels.txt").__next__().image_path.name == "t_0.jpg"


def test_im2latex_shapes(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "i1.png").write_bytes(png_bytes())
    (tmp_path / "i2.png").write_bytes(png_bytes())
    (tmp_path / "a.json").write_text(json.dumps([
        {"image": "i1.png", "formula": "\\frac{a}{b}"},
        {"filename": "i2.png", "latex": "x^2"},
        {"image": "i3.png"},
        {"formula": "x"},
        "junk",
    ]))
    (tmp_path / "b.json").write_text(json.dumps({"data": [{"file_name": "i9.png", "label": "y"}]}))
    (tmp_path / "c.json").write_text(json.dumps({"i8.png": "z_1"}))
    (tmp_path / "d.jsonl").write_text('{"image": "i7.png", "gt": "w"}\n{broken\n')
    (tmp_path / "e.json").write_text("{not json at all")
    items = list(read_source("im2latex", tmp_path))
    by_id = resolved(items)
    assert by_id["i1"].latex == "\\frac { a } { b }" and by_id["i1"].image_path == tmp_path / "images" / "i1.png"
    assert by_id["i2"].latex == "x ^ { 2 }" and by_id["i2"].image_path == tmp_path / "i2.png"
    assert by_id["i3"].reason == "missing_truth"
    assert by_id["i9"].latex == "y" and by_id["i8"].latex == "z _ { 1 }" and by_id["i7"].latex == "w"
    reasons = Counter(i.reason for i in items if isinstance(i, Skip))
    assert reasons == {"missing_truth": 1, "bad_entry": 2, "bad_json": 2}


def sharegpt_rows(image_key="images", messages_key="messages"):
    vanilla = "<image>" + human_prompt("vanilla")
    tree = "<image>" + human_prompt("tree")
    return [
        {messages_key: [{"from": "human", "value": vanilla}, {"from": "gpt", "value": "a ^ { 2 }"}],
         image_key: ["./imgs/s1.png"]},
        {messages_key: [{"from": "human", "value": tree}, {"from": "gpt", "value": "a\n\t2 (sup)\na ^ { 2 }"}],
         image_key: ["./imgs/s1.png"]},
        {messages_key: [{"role": "user", "content": vanilla}, {"role": "assistant", "content": "b"}],
         image_key: "imgs/s2.png"},
        {messages_key: [{"from": "human", "value": vanilla}], image_key: ["imgs/s3.png"]},
    ]


def test_sharegpt_json_and_jsonl(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "d.json").write_text(json.dumps(sharegpt_rows()))
    (tmp_path / "e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sharegpt_rows("image", "conversations")))
    items = list(read_source("sharegpt", tmp_path / "d.json"))
    samples = [i for i in items if isinstance(i, Sample)]
    assert [(s.id, s.latex, s.image_path) for s in samples] == [
        ("imgs_s1", "a ^ { 2 }", tmp_path / "./imgs/s1.png"), ("imgs_s2", "b", tmp_path / "imgs/s2.png")]
    assert Counter(i.reason for i in items if isinstance(i, Skip)) == {"not_vanilla": 1, "bad_entry": 1}
    jsonl = [i.latex for i in read_source("sharegpt", tmp_path / "e.jsonl") if isinstance(i, Sample)]
    assert jsonl == ["a ^ { 2 }", "b"]


def test_sharegpt_official_examples():
    items = list(read_source("sharegpt", shared_path("format_examples")))
    samples = [i for i in items if isinstance(i, Sample)]
    assert [s.latex for s in samples][0] == "\\frac { a ^ { 2 } + 1 } { b }" and len(samples) == 2
    assert Counter(i.reason for i in items if isinstance(i, Skip)) == {"not_vanilla": 4}


def test_sharegpt_parquet_paths_and_embedded_bytes(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = sharegpt_rows("image", "conversations")[:3]
    for row in rows:  # the released parquet: one image path per row
        row["image"] = row["image"][0] if isinstance(row["image"], list) else row["image"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "paths.parquet")
    embedded = [{"conversations": rows[0]["conversations"], "image": {"bytes": png_bytes(), "path": "e1.png"}}]
    pq.write_table(pa.Table.from_pylist(embedded), tmp_path / "bytes.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 nonsense")
    items = list(read_source("sharegpt", tmp_path))
    samples = {i.id: i for i in items if isinstance(i, Sample)}
    assert samples["e1"].image_bytes == png_bytes() and samples["e1"].latex == "a ^ { 2 }"
    assert samples["imgs_s2"].image_path == tmp_path / "imgs/s2.png"
    assert Counter(i.reason for i in items if isinstance(i, Skip)) == {"not_vanilla": 1, "bad_json": 1}


def test_unknown_source_and_missing_path(tmp_path):
    with pytest.raises(ValueError, match="Unknown source"):
        read_source("nope", tmp_path)
    with pytest.raises(FileNotFoundError):
        read_source("crohme", tmp_path / "absent")
