"""train.curve: learning curves of consecutive stages, merged and plotted."""
import json

from PIL import Image

from train.curve import main, merge_curves


def write_curve(run, entries):
    run.mkdir()
    (run / "learning_curve.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_stages_are_numbered_and_their_steps_continue(tmp_path):
    write_curve(tmp_path / "a", [{"step": 50, "loss": 4.0}, {"step": 100, "loss": 3.0, "exprate": 0.0, "exprate_le1": 1.0}])
    write_curve(tmp_path / "b", [{"step": 50, "loss": 2.5}, {"step": 80, "exprate": 2.0, "exprate_le1": 5.0}])
    merged = merge_curves([tmp_path / "a", tmp_path / "b"])
    assert [(e["stage"], e["step"], e["total_step"]) for e in merged] == [(1, 50, 50), (1, 100, 100), (2, 50, 150), (2, 80, 180)]

    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]) == 0
    written = [json.loads(line) for line in (tmp_path / "out" / "learning_curve.jsonl").read_text().splitlines()]
    assert written == merged

    write_curve(tmp_path / "c", [{"step": 10, "loss": 2.0}])  # an earlier merge, continued by a new stage
    continued = merge_curves([tmp_path / "out" / "learning_curve.jsonl", tmp_path / "c"])
    assert continued[:4] == merged and (continued[4]["stage"], continued[4]["total_step"]) == (3, 190)
    with Image.open(tmp_path / "out" / "learning_curve.png") as plot:
        assert plot.size == (800, 400)
        assert len(plot.convert("L").getcolors(65536)) > 2  # something was drawn


def test_a_folder_without_a_curve_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "learning_curve.jsonl not found" in capsys.readouterr().err
