"""benchmarks/backfill_tfmot_latency.py: which results files lack tfmot's latency, and which of them
one rerun of tfmot's arm can serve (same model, pre-training and sweep)."""

import json

import pytest

from conftest import load_benchmark

backfill = load_benchmark("backfill_tfmot_latency")

SWEEP = [{"sparsity": 0.9}, {"sparsity": 0.95}]


def _result(model="lenet300_100", seed=0, latency=None, best=True, epochs=20, sweep=SWEEP, **settings):
    chosen = {"sparsity": 0.95, "test_accuracy": 0.954}
    if latency:
        chosen["serving_latency"] = latency
    return {"benchmark": "olmp_vs_tfmot", "model": model,
            "olmp_settings": {"seed": seed, "pretrain_epochs": 20, "pretrain_learning_rate": 0.01, "batch_size": 64,
                              "olmp_delta": 0.08, **settings},
            "tfmot": {"epochs": epochs, "sweep": sweep}, "tfmot_best": chosen if best else None}


def _write(folder, name, result):
    path = folder / name
    path.write_text(json.dumps(result))
    return str(path)


def test_only_a_chosen_tfmot_model_without_latency_needs_it():
    assert backfill.needs_latency(_result())
    assert not backfill.needs_latency(_result(latency={"batch_1": {}}))
    assert not backfill.needs_latency(_result(best=False)), "no tfmot model reached OLMP's accuracy: nothing to time"
    assert not backfill.needs_latency({"benchmark": "lstm_vs_l1", "tfmot_best": {"sparsity": 0.9}})


def test_files_share_a_rerun_only_when_model_pretraining_and_sweep_match(tmp_path):
    paths = [
        _write(tmp_path, "a.json", _result()),
        _write(tmp_path, "b.json", _result(olmp_delta=0.04)),  # OLMP's settings do not change tfmot's arm
        _write(tmp_path, "c.json", _result(seed=1)),
        _write(tmp_path, "d.json", _result(model="lenet5")),
        _write(tmp_path, "e.json", _result(epochs=10)),
        _write(tmp_path, "f.json", _result(sweep=[{"sparsity": 0.9}])),
        _write(tmp_path, "g.json", _result(latency={"batch_1": {}})),  # measured already: left alone
    ]
    groups = backfill.group_by_rerun(paths)
    assert sorted(sorted(p.rsplit("/", 1)[1] for p in group) for group in groups.values()) == [
        ["a.json", "b.json"], ["c.json"], ["d.json"], ["e.json"], ["f.json"]]
    key = backfill.rerun_key(_result())
    assert key == ("lenet300_100", 0, 20, 0.01, 64, 20, "0.9,0.95")


def test_a_missing_file_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["backfill_tfmot_latency.py", str(tmp_path / "nope.json")])
    with pytest.raises(SystemExit):
        backfill.main()
    assert "nope.json" in capsys.readouterr().err
