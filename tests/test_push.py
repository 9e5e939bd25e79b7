"""train.push: the publishable folder (safetensors, processor, model card front matter and prose) that
unimumer loads and predicts with; the upload's no-token path; the token never printed."""
import json
import shutil

import pytest
import yaml

from test_finetune import TINY_CPU, build_synthetic
from train import finetune, push
from unimumer import cli

FRONT_MATTER_KEYS = {"base_model", "library_name", "pipeline_tag", "license", "datasets", "tags", "model-index"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    """A real finetune output (2 steps) with its training record."""
    root = tmp_path_factory.mktemp("push")
    data = build_synthetic(root / "data", n=6)
    out = root / "run"
    assert finetune.main(["--config", str(TINY_CPU), "--model", str(tiny_model_dir), "--data", str(data),
                          "--output_dir", str(out), "--max_steps", "2", "--save_steps", "2",
                          "--per_device_train_batch_size", "2", "--disable_tqdm", "true"]) == 0
    return out


def card(folder):
    text = (folder / "README.md").read_text()
    _, meta, prose = text.split("---\n", 2)
    return yaml.safe_load(meta), prose


def test_dry_run_folder_is_a_model_unimumer_predicts_with(run_dir, tmp_path, capsys):
    preds = tmp_path / "crohme2014_pred.json"
    preds.write_text(json.dumps([{"gt": "a + b", "pred": "a + b"}, {"gt": "x", "pred": "y"}]))
    metrics = tmp_path / "crohme2016_metrics.json"
    metrics.write_text(json.dumps({"n": 4, "exprate": 75.0, "le1": 100.0, "le2": 100.0, "le3": 100.0,
                                   "edit_score": 90.0, "bleu4": 80.0, "cer": 0.1, "cdm_f1": 0.96687,
                                   "exprate_cdm": 85.6998}))
    out = tmp_path / "publish"
    assert push.main(["--checkpoint", str(run_dir), "--repo-id", "someone/uni-mumer-tiny", "--dry-run",
                      "--out", str(out), "--base-model", "Qwen/Qwen2.5-VL-3B-Instruct",
                      "--metrics", str(preds), f"c16={metrics}"]) == 0

    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "chat_template.jinja", "preprocessor_config.json", "processor_config.json", "README.md"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)  # safetensors only, no training states
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "Qwen2_5_VLProcessor"

    meta, prose = card(out)
    assert FRONT_MATTER_KEYS <= set(meta)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-text-to-text"
    assert meta["base_model"] == "Qwen/Qwen2.5-VL-3B-Instruct" and meta["license"] == "other"  # Qwen research licence
    assert meta["datasets"] == ["syn"] and "latex" in meta["tags"]
    results = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "uni-mumer-tiny"
    assert [r["dataset"]["name"] for r in results] == ["crohme2014", "c16"]
    exprates = [next(m["value"] for m in r["metrics"] if m["type"] == "exprate") for r in results]
    assert exprates == [50.0, 75.0]  # the predictions file was scored, the metrics file read
    cdm = {m["type"]: m["value"] for m in results[1]["metrics"] if "cdm" in m["type"]}
    assert cdm == {"cdm_f1": 0.9669, "exprate_cdm": 85.7}  # `evaluate --json --cdm` output carried, F1 as a fraction
    headings = ("## Tasks and prompts", "## Training", "### Training data and licences", "## Evaluation", "## Usage")
    assert all(heading in prose for heading in headings)
    assert "Please generate the abstract syntax tree (AST)" in prose and "Not trained: error_find, error_fix" in prose
    assert 'Recognizer.from_pretrained("someone/uni-mumer-tiny")' in prose

    image = next((run_dir.parent / "data" / "images").rglob("*.png"))
    capsys.readouterr()
    assert cli.main(["predict", str(image), "--model", str(out), "--max-new-tokens", "4"]) == 0
    [prediction] = json.loads(capsys.readouterr().out)
    assert "pred" in prediction and "error" not in prediction and prediction["model"] == str(out)


def test_card_names_error_corpus_datasets_and_their_tasks():
    # Entry names hold the task after the dataset: `edl6_error_find` is dataset edl6, task error_find.
    record = {"data": {"crohme_vanilla": 8, "edl6_error_find": 3, "edl6_error_fix": 3},
              "tasks": ["error_find", "error_fix", "vanilla"]}
    prose = push.model_card("a/b", {}, record, [])
    assert "Not trained: tree, count." in prose and "**error_fix** — answer:" in prose
    assert "- edl6 (licence: see its source)" in prose and "edl6_error (" not in prose


def test_defaults_come_from_the_training_record(run_dir, tiny_model_dir, tmp_path, capsys):
    assert json.loads((run_dir / finetune.RECORD_NAME).read_text())["base_model"] == str(tiny_model_dir)
    out = tmp_path / "publish"
    assert push.main(["--checkpoint", str(run_dir / "checkpoint-2"), "--repo-id", "a/b", "--dry-run",
                      "--out", str(out), "--license", "mit"]) == 0
    assert "not a Hub id" in capsys.readouterr().err  # a local base folder cannot be base_model
    meta, prose = card(out)
    assert "base_model" not in meta and meta["license"] == "mit" and meta["datasets"] == ["syn"]
    assert (out / finetune.RECORD_NAME).is_file() and "| `syn_vanilla` | 6 |" in prose
    assert push.main(["--checkpoint", str(run_dir), "--repo-id", "a/b", "--dry-run", "--out", str(out)]) == 1
    assert "is not empty" in capsys.readouterr().err


def test_upload_needs_a_token_and_never_prints_it(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no saved login
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert push.main(["--checkpoint", str(run_dir), "--repo-id", "a/b"]) == 1
    err = capsys.readouterr().err
    assert "No Hugging Face token found" in err and "nothing was uploaded" in err
    assert not (tmp_path / "out").exists()

    secret = "hf_" + "s3cr3t" * 6
    monkeypatch.setenv("HF_TOKEN", secret)
    assert push.main(["--checkpoint", str(run_dir), "--repo-id", "a/b", "--out", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr()
    assert "Upload to a/b failed" in printed.err  # offline in tests: create_repo cannot reach the Hub
    assert secret not in printed.out + printed.err
    assert (tmp_path / "out" / "README.md").is_file()  # the folder was assembled before the upload


def test_bad_inputs_are_one_sentence(run_dir, tmp_path, capsys):
    out = ["--dry-run", "--out", str(tmp_path / "o")]
    assert push.main(["--checkpoint", str(run_dir), "--repo-id", "not a repo", *out]) == 1
    assert "is not a Hub repository id" in capsys.readouterr().err
    assert push.main(["--checkpoint", str(run_dir), "--repo-id", "a/b", *out,
                      "--metrics", str(tmp_path / "missing.json")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert push.main(["--checkpoint", str(tmp_path), "--repo-id", "a/b", *out]) == 1
    assert "not a model folder" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("gs") is None, reason="no TeX Live / Ghostscript")
def test_cdm_of_a_predictions_file(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIMUMER_CDM_CACHE", str(tmp_path / "cache"))
    preds = tmp_path / "crohme2019_pred.json"
    preds.write_text(json.dumps([{"gt": "x ^ { 2 }", "pred": "x ^ { 2 }"}, {"gt": "a + b", "pred": "a - b"}]))
    name, metrics = push.load_metrics(str(preds), cdm=True)
    assert name == "crohme2019" and metrics["exprate_cdm"] == 50.0 and metrics["cdm_f1"] == pytest.approx(5 / 6)
    assert "cdm_f1" not in push.load_metrics(str(preds))[1]
