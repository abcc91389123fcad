"""The run pipeline end to end: every artefact exists and agrees with the others."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_prune.graph import count_flops
from keras_prune.pipeline import RunConfig, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke_config(output_dir, **overrides):
    settings = dict(
        method="l1",
        model="lenet5",
        output_dir=str(output_dir),
        dataset="mnist5k",
        target_flops=0.5,
        pretrain_epochs=2,
        finetune_epochs=1,
        batch_size=64,
        latency_repeats=5,
        verbose=0,
    )
    settings.update(overrides)
    return RunConfig(**settings)


@pytest.mark.slow
def test_cli_smoke_run_writes_consistent_artefacts(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bin", "prune"),
            f"--flagfile={os.path.join(ROOT, 'flags', 'l1_lenet5_mnist5k.flags')}",
            f"--flagfile={os.path.join(ROOT, 'flags', 'smoke.flags')}",
            f"--output_dir={out}",
            "--export=saved_model",
            "--export=keras",
            "--export=tflite",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    for key in ("method", "model", "dataset", "config", "baseline", "pruned", "search_seconds", "total_seconds", "layers"):
        assert key in report
    for side in ("baseline", "pruned"):
        assert set(report[side]) >= {"accuracy", "flops", "params", "nonzero_params", "latency_ms"}
    serving = report["serving_latency"]  # both exported SavedModels, timed at batch 1 and 32
    assert sorted(serving) == ["batch_1", "batch_32"]
    for times in serving.values():
        assert times["dense_ms"] > 0 and times["pruned_ms"] > 0 and times["repeats"] >= 5
        assert times["ratio"] == pytest.approx(times["pruned_ms"] / times["dense_ms"], rel=1e-3)
    assert "SavedModel latency, batch 32 (ms)" in (out / "report.md").read_text()
    assert report["data"]["input_shape"] == [28, 28, 1] and len(report["data"]["mean"]) == 1
    assert "## Model inputs" in (out / "report.md").read_text()
    assert report["baseline"]["accuracy"] > 0.5, "two epochs on mnist5k learn something"
    assert abs(report["pruned"]["flops"] / report["baseline"]["flops"] - 0.5) <= 0.02 * 0.5
    assert {"name", "channels_before", "channels_after", "flops_before", "flops_after", "sparsity"} <= set(report["layers"][0])
    for path in ("report.md", "flags.txt", "model.keras", "model.tflite", "plots/layer_channels.png", "saved_model/saved_model.pb"):
        assert (out / path).exists(), path
    assert any(f.startswith("events") for _, _, files in os.walk(out / "tensorboard") for f in files)
    assert "--method=l1" in (out / "flags.txt").read_text()

    model = keras.models.load_model(out / "model.keras")
    assert count_flops(model).total == report["pruned"]["flops"]
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    # The SavedModel must load where keras_prune was never imported.
    code = (
        "import sys, numpy as np, tensorflow as tf;"
        f"m = tf.saved_model.load({str(out / 'saved_model')!r});"
        f"y = m.serve(tf.constant(np.load({str(tmp_path / 'x.npy')!r})));"
        f"np.save({str(tmp_path / 'y.npy')!r}, y.numpy());"
        "assert 'keras_prune' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, cwd=str(tmp_path))
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(x), atol=1e-5)


@pytest.mark.slow
def test_mirrored_strategy_gives_the_same_structure(tmp_path):
    # As in test_strategy_methods.py (which leaves l1 to this test): a few batches, no SavedModel.
    small = dict(max_batches=10, export=("keras",))
    one = run(_smoke_config(tmp_path / "one", strategy="one_device", **small))
    two = run(_smoke_config(tmp_path / "two", strategy="mirrored", **small))
    assert [r["channels_after"] for r in one["layers"]] == [r["channels_after"] for r in two["layers"]]
    assert one["pruned"]["flops"] == two["pruned"]["flops"]
    assert abs(one["pruned"]["accuracy"] - two["pruned"]["accuracy"]) < 0.05


def test_unreachable_target_names_the_smallest_value(tmp_path):
    with pytest.raises(ValueError, match="smallest reachable value is 0.0"):
        run(_smoke_config(tmp_path / "run", target_flops=0.0001, pretrain_epochs=0))


def test_an_unreachable_target_fails_before_pre_training(tmp_path, monkeypatch):
    import keras_prune.pipeline as pipeline

    def must_not_train(*args, **kwargs):
        raise AssertionError("the dense model was trained before the budget was checked")

    monkeypatch.setattr(pipeline, "train_classifier", must_not_train)
    with pytest.raises(ValueError, match="smallest reachable value is .*A smaller --round_to lowers it"):
        run(_smoke_config(tmp_path / "run", target_flops=0.05, round_to=8))  # floor 0.095 with 8 per group
    assert not (tmp_path / "run").exists(), "a run refused before it starts leaves no folder behind"


def test_pre_training_takes_the_pretrain_schedule(tmp_path, monkeypatch):
    import keras_prune.pipeline as pipeline

    class Stop(Exception):
        pass

    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(pipeline, "train_classifier", record)
    with pytest.raises(Stop):
        run(_smoke_config(tmp_path / "run", pretrain_schedule="step", schedule="cosine", pretrain_weight_decay=1e-4,
                          weight_decay=5e-4))
    assert seen["phase"] == "pretrain" and seen["schedule"] == "step" and seen["weight_decay"] == 1e-4


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="diverged in phase 'pretrain'.*try a smaller --pretrain_learning_rate"):
        run(_smoke_config(tmp_path / "run", pretrain_learning_rate=1e12))
    assert (tmp_path / "run" / "flags.txt").exists(), "what was written is kept"
    # The diverged epoch ended before its backup: a --resume must not take NaN weights as a finished phase.
    assert not (tmp_path / "run" / "backup" / "pretrain" / "training_metadata.json").exists()


def test_the_report_is_rebuilt_from_the_run_folder_without_rerunning_the_method(tmp_path, monkeypatch, capsys):
    first = run(_smoke_config(tmp_path / "run", max_batches=5))
    for name in ("report.json", "report.md"):
        (tmp_path / "run" / name).unlink()

    import keras_prune.methods.l1 as l1

    def must_not_run(*args, **kwargs):
        raise AssertionError("the method ran again")

    monkeypatch.setattr(l1, "run", must_not_run)
    again = run(_smoke_config(tmp_path / "run", max_batches=5, resume=True, export=("keras",)))
    out = capsys.readouterr().out
    assert "l1 had finished; its result is loaded" in out
    assert "resume: removed saved_model, which --export no longer asks for" in out
    assert not (tmp_path / "run" / "saved_model").exists() and (tmp_path / "run" / "model.keras").exists()
    assert set(first["exported"]) == {"keras", "saved_model"} and set(again["exported"]) == {"keras"}
    written = [(v.tag, e.step) for path in (tmp_path / "run" / "tensorboard" / "report").glob("events*")
               for e in tf.compat.v1.train.summary_iterator(str(path)) for v in e.summary.value]
    assert ("accuracy", 1) in written and len(written) == len(set(written)), "the rebuilt report's summaries, once"
    assert (tmp_path / "run" / "report.json").exists() and (tmp_path / "run" / "report.md").exists()
    for key in ("flops_ratio", "search_seconds", "retrain_seconds", "method_details", "layers"):
        assert again[key] == first[key], key
    assert again["pruned"]["accuracy"] == first["pruned"]["accuracy"]
    assert again["pruned"]["flops"] == first["pruned"]["flops"]


def _own_model(path, *, classes=10, activation=None):
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    keras.Model(inputs, keras.layers.Dense(classes, activation=activation)(x)).save(path)
    return str(path)


def test_an_own_model_with_keras_prune_layers_is_pruned_as_the_plain_model_it_equals(tmp_path, capsys):
    from keras_prune.data import DatasetInfo
    from keras_prune.export.strip import pruning_layers
    from keras_prune.layers.gates import GatedBatchNormalization
    from keras_prune.pipeline import _build_model

    inputs = keras.Input((28, 28, 1))
    gated = GatedBatchNormalization(name="bn")
    x = keras.layers.ReLU()(gated(keras.layers.Conv2D(4, 3, name="conv")(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))
    gated.gate.assign([0.0, 0.5, 1.0, 0.0])  # slimming would rank these channels by gamma alone
    gated.gamma.assign([2.0, 1.0, 0.5, 3.0])
    model.save(tmp_path / "gated.keras")
    info = DatasetInfo("mnist5k", (28, 28, 1), 10, 1, 0, 1, "embedded")
    config = _smoke_config(tmp_path / "run", model=str(tmp_path / "gated.keras"))
    import tensorflow as tf

    plain, _ = _build_model(config, info, tf.distribute.get_strategy())
    assert not pruning_layers(plain) and plain.get_layer("conv").filters == 2
    np.testing.assert_allclose(plain.get_layer("bn").gamma.numpy(), [0.5, 0.5])
    images = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(plain(images), model(images), atol=1e-5)
    assert "holds 1 keras_prune layer(s) (GatedBatchNormalization)" in capsys.readouterr().out


def test_an_own_model_with_a_gate_no_plain_model_equals_is_refused_with_the_reason(tmp_path):
    from keras_prune.data import DatasetInfo
    from keras_prune.errors import PruneError
    from keras_prune.layers.gates import ChannelGate
    from keras_prune.pipeline import _build_model

    inputs = keras.Input((28, 28, 1))
    gate = ChannelGate(name="gate")  # after a ReLU: no linear layer right before it to fold 0.5 into
    hidden = gate(keras.layers.Conv2D(4, 1, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(hidden)))
    gate.gate.assign([0.5, 1.0, 1.0, 1.0])
    model.save(tmp_path / "gated.keras")
    info = DatasetInfo("mnist5k", (28, 28, 1), 10, 1, 0, 1, "embedded")
    config = _smoke_config(tmp_path / "run", model=str(tmp_path / "gated.keras"))
    import tensorflow as tf

    with pytest.raises(PruneError, match=r"holds keras_prune layers \(ChannelGate\) that no plain model equals"):
        _build_model(config, info, tf.distribute.get_strategy())


def test_custom_modules_are_imported_for_a_zoo_model_too(tmp_path, monkeypatch):
    """A module that registers an lstm criterion is named by --custom_modules, whatever the --model."""
    from keras_prune.criteria import criterion_names, registry
    from keras_prune.data import DatasetInfo
    from keras_prune.pipeline import _build_model

    monkeypatch.setattr(registry, "_CRITERIA", dict(registry._CRITERIA))
    (tmp_path / "my_criteria.py").write_text(
        "import numpy as np\nfrom keras_prune.criteria import register_criterion\n"
        "register_criterion('last_first', lambda graph, group: np.arange(group.size))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_criteria", raising=False)
    info = DatasetInfo("mnist5k", (28, 28, 1), 10, 1, 0, 1, "embedded")
    config = _smoke_config(tmp_path / "run", method="lstm", custom_modules=("my_criteria",), lstm_criterion="last_first")
    _build_model(config, info, tf.distribute.get_strategy())
    assert "last_first" in criterion_names()


def test_width_scales_a_zoo_model_and_is_refused_for_an_own_file(tmp_path):
    from keras_prune.data import DatasetInfo
    from keras_prune.errors import PruneError
    from keras_prune.pipeline import _build_model

    info = DatasetInfo("mnist5k", (28, 28, 1), 10, 1, 0, 1, "embedded")
    strategy = tf.distribute.get_strategy()
    full, _ = _build_model(_smoke_config(tmp_path / "a"), info, strategy)
    half, zoo = _build_model(_smoke_config(tmp_path / "b", width=0.5), info, strategy)
    assert zoo and half.layers[1].filters * 2 == full.layers[1].filters
    full.save(tmp_path / "own.keras")
    with pytest.raises(PruneError, match=r"--width=0.5 scales the zoo's models, and --model=.*own.keras is your own"):
        _build_model(_smoke_config(tmp_path / "c", model=str(tmp_path / "own.keras"), width=0.5), info, strategy)


@pytest.mark.parametrize(
    "classes, activation, expected",
    [
        (3, None, r"outputs \(3,\) per example, but --dataset=mnist5k has 10 classes"),
        (10, "softmax", "ends in a softmax"),
    ],
)
def test_an_own_model_that_does_not_give_one_logit_per_class_is_refused(tmp_path, classes, activation, expected):
    model = _own_model(tmp_path / "own.keras", classes=classes, activation=activation)
    with pytest.raises(ValueError, match=expected):
        run(_smoke_config(tmp_path / "run", model=model))
    assert not (tmp_path / "run").exists(), "the folder stays free for the corrected command"


def test_a_subclassed_own_model_is_refused_with_a_way_out(tmp_path):
    @keras.saving.register_keras_serializable(package="test_pipeline")
    class Subclassed(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flatten, self.dense = keras.layers.Flatten(), keras.layers.Dense(10)

        def call(self, inputs):
            return self.dense(self.flatten(inputs))

    model = Subclassed()
    model(np.zeros((1, 28, 28, 1), "float32"))
    model.save(tmp_path / "own.keras")
    with pytest.raises(ValueError, match="without a layer graph to read .* Save it as a functional model"):
        run(_smoke_config(tmp_path / "run", model=str(tmp_path / "own.keras")))


def test_overwrite_keeps_the_old_run_until_the_new_command_passes_its_checks(tmp_path):
    from keras_prune.data import DatasetNotFoundError
    from keras_prune.errors import OutputDirError

    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, keras.layers.Dense(10)(hidden)).save(tmp_path / "own.keras")
    model = str(tmp_path / "own.keras")
    run(_smoke_config(tmp_path / "run", model=model, max_batches=2, export=()))
    before = sorted(os.listdir(tmp_path / "run"))
    with pytest.raises(DatasetNotFoundError):
        run(_smoke_config(tmp_path / "run", model=model, overwrite=True, dataset="cifar10", data_dir=str(tmp_path)))
    assert sorted(os.listdir(tmp_path / "run")) == before, "a mistyped --overwrite command leaves the old run"
    with pytest.raises(OutputDirError, match="is inside --output_dir"):
        run(_smoke_config(tmp_path / "run", model=str(tmp_path / "run" / "result" / "model.keras"), overwrite=True))
    run(_smoke_config(tmp_path / "run", model=model, max_batches=2, export=(), overwrite=True, seed=1))
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["seed"] == 1


def test_dense_and_pruned_are_timed_back_to_back_after_the_method(tmp_path, monkeypatch):
    import keras_prune.methods.l1 as l1
    import keras_prune.pipeline as pipeline

    events = []
    method, latency = l1.run, pipeline._latency
    monkeypatch.setattr(l1, "run", lambda *args: events.append("method") or method(*args))
    monkeypatch.setattr(pipeline, "_latency", lambda *args: events.append("latency") or latency(*args))
    report = run(_smoke_config(tmp_path / "run", pretrain_epochs=1, finetune_epochs=0, max_batches=2, export=()))
    assert events == ["method", "latency", "latency"], "not hours apart, with the method in between"
    assert report["baseline"]["latency_ms"] > 0 and report["pruned"]["latency_ms"] > 0


def test_an_own_model_named_without_a_folder_is_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _own_model(tmp_path / "own.h5", classes=3)
    with pytest.raises(ValueError, match="outputs"):  # read from the file, not looked up in the zoo
        run(_smoke_config(tmp_path / "run", model="own.h5"))


def test_a_resumed_run_refuses_another_model_at_its_own_model_path(tmp_path):
    from keras_prune.errors import OutputDirError
    from keras_prune.run_dir import MODEL_DIGEST, RUN_CONFIG

    def save_mlp(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((28, 28, 1))
        hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
        keras.Model(inputs, keras.layers.Dense(10)(hidden)).save(tmp_path / "own.keras")

    save_mlp(0)
    config = _smoke_config(tmp_path / "run", model=str(tmp_path / "own.keras"), max_batches=2)
    run(config)
    record = json.loads((tmp_path / "run" / RUN_CONFIG).read_text())
    assert len(record[MODEL_DIGEST]) == 64
    run(_smoke_config(tmp_path / "run", model=config.model, max_batches=2, resume=True))  # the same file
    save_mlp(1)  # retrained or re-exported to the same path
    with pytest.raises(OutputDirError, match="the --model file is not the one the run started from"):
        run(_smoke_config(tmp_path / "run", model=config.model, max_batches=2, resume=True))
    del record[MODEL_DIGEST]  # a run recorded before the digest: its file is taken on trust
    (tmp_path / "run" / RUN_CONFIG).write_text(json.dumps(record))
    run(_smoke_config(tmp_path / "run", model=config.model, max_batches=2, resume=True))


def test_a_python_api_run_writes_a_flags_txt_the_cli_reads_back(tmp_path):
    from absl import flags

    from keras_prune.cli.flags import config_from_flags, define_flags
    from keras_prune.pipeline import _config_text

    config = RunConfig(method="scratch", model="resnet20", output_dir=str(tmp_path), export=("saved_model", "keras"),
                       target_flops=0.4, budget_train=True, resume=True, overwrite=True, verbose=0)
    path = tmp_path / "flags.txt"
    path.write_text(_config_text(config))
    assert "resume" not in path.read_text() and "verbose" not in path.read_text(), "about one invocation only"
    fv = flags.FlagValues()
    define_flags(fv)
    fv(["prune", f"--flagfile={path}", "--resume"])
    assert config_from_flags(fv) == dataclasses.replace(config, overwrite=False, verbose=None)


def test_the_layer_table_lists_the_layers_of_nested_models_with_their_flops():
    from keras_prune.graph import prune_channels
    from keras_prune.pipeline import layer_table

    inputs = keras.Input((8, 8, 1))
    inner_in = keras.Input((8, 8, 1))
    inner = keras.Model(inner_in, keras.layers.Conv2D(8, 3, name="inner_conv")(inner_in), name="block")
    out = keras.layers.Dense(10, name="head")(keras.layers.GlobalAveragePooling2D()(inner(inputs)))
    model = keras.Model(inputs, out)
    pruned = prune_channels(model, {"block/inner_conv": [0, 1, 2, 3]})
    rows = {row["name"]: row for row in layer_table(model, pruned)}
    assert set(rows) == {"inner_conv", "head"}
    assert rows["inner_conv"]["channels_before"] == 8 and rows["inner_conv"]["channels_after"] == 4
    assert rows["inner_conv"]["flops_before"] == 2 * rows["inner_conv"]["flops_after"] > 0
    assert sum(r["flops_before"] for r in rows.values()) == count_flops(model).total


def test_the_layer_table_tells_apart_a_nested_layer_that_shares_an_outer_layers_name():
    """The rebuild renames the nested `conv` (`block_conv`); the row must find that layer, not the outer `conv`."""
    from keras_prune.graph import prune_channels
    from keras_prune.pipeline import layer_table

    inputs = keras.Input((8, 8, 1))
    inner_in = keras.Input((6, 6, 6))
    inner = keras.Model(inner_in, keras.layers.Conv2D(8, 3, name="conv")(inner_in), name="block")
    h = inner(keras.layers.Conv2D(6, 3, name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, name="head")(keras.layers.GlobalAveragePooling2D()(h)))
    pruned = prune_channels(model, {"conv": [0, 1, 2], "block/conv": [0, 1, 2, 3, 4]})
    rows = {row["name"]: row for row in layer_table(model, pruned)}
    assert set(rows) == {"conv", "block_conv", "head"}
    assert (rows["conv"]["channels_before"], rows["conv"]["channels_after"]) == (6, 3)
    assert (rows["block_conv"]["channels_before"], rows["block_conv"]["channels_after"]) == (8, 5)
    assert sum(r["flops_after"] for r in rows.values()) == count_flops(pruned).total


def test_a_zoo_name_stays_one_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    from keras_prune.pipeline import names_a_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet5").mkdir()  # e.g. the run folder of an earlier --output_dir=lenet5
    (tmp_path / "mine").write_text("")
    assert not names_a_file("lenet5")
    assert names_a_file("mine") and names_a_file("mine.keras") and names_a_file(os.path.join("a", "b"))


def test_results_name_the_code_revision_that_made_them():
    import re
    import subprocess

    from keras_prune.pipeline import _environment

    revision = _environment()["versions"]["keras_prune_revision"]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert head.returncode == 0, "the tests run in a git checkout (CI clones one)"
    assert re.fullmatch(r"[0-9a-f]{7,}(-dirty)?", revision) and revision.startswith(head.stdout.strip()[:7])


def test_the_environment_names_the_cpu_and_its_vector_extensions(tmp_path):
    from keras_prune.pipeline import _cpu

    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse4_2 avx2 avx512f amx_tile\n\n"
        "processor\t: 1\nmodel name\t: Some CPU\n"
    )
    assert _cpu(str(tmp_path / "cpuinfo")) == {
        "cpu_model": "Some CPU", "cpu_extensions": ["amx_tile", "avx2", "avx512f", "sse4_2"]
    }
    assert _cpu(str(tmp_path / "missing")) == {}


def test_a_model_with_a_python_lambda_is_refused_with_the_way_out(tmp_path):
    from keras_prune.errors import PruneError

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Conv2D(4, 3)(inputs))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x))).save(path)
    os.makedirs(tmp_path / "mine")  # a folder the user made stays, empty or not
    for folder in ("run", "mine"):
        config = RunConfig(method="l1", model=str(path), output_dir=str(tmp_path / folder), dataset="digits", verbose=0)
        with pytest.raises(PruneError, match="holds a Lambda layer of Python code.*--custom_modules.*Keras: "):
            run(config)
    assert not (tmp_path / "run").exists() and (tmp_path / "mine").is_dir()


def test_a_model_with_two_outputs_is_refused_as_such(tmp_path):
    from keras_prune.errors import PruneError

    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inputs))
    path = tmp_path / "two_heads.keras"
    keras.Model(inputs, [keras.layers.Dense(10)(features), keras.layers.Dense(10)(features)]).save(path)
    config = RunConfig(method="l1", model=str(path), output_dir=str(tmp_path / "run"), dataset="digits", verbose=0)
    with pytest.raises(PruneError, match="has 2 outputs, but keras-prune trains a classifier with one output"):
        run(config)


def test_a_run_killed_after_pre_training_but_before_saving_it_does_not_train_again(tmp_path, monkeypatch, capsys):
    import keras_prune.pipeline as pipeline

    class Killed(Exception):
        pass

    def killed(model, path):
        raise Killed(path)

    save_keras, train_classifier = pipeline.save_keras, pipeline.train_classifier
    monkeypatch.setattr(pipeline, "save_keras", killed)
    config = _smoke_config(tmp_path / "run")
    with pytest.raises(Killed, match="baseline.keras"):
        run(config)
    assert os.path.exists(tmp_path / "run" / "backup" / "pretrain" / "training_metadata.json"), "the phase's backup stays"

    epochs = {}

    def recording(model, data, strategy, *, phase, **kwargs):
        history = train_classifier(model, data, strategy, phase=phase, **kwargs)
        epochs[phase] = len(history.epoch)
        return history

    monkeypatch.setattr(pipeline, "save_keras", save_keras)
    monkeypatch.setattr(pipeline, "train_classifier", recording)
    report = run(dataclasses.replace(config, resume=True))
    assert "resume: pretrain restores its backup after epoch 2" in capsys.readouterr().out
    assert epochs == {"pretrain": 0}, "the two finished epochs are not trained again"
    assert report["baseline"]["accuracy"] > 0.5 and not (tmp_path / "run" / "backup").exists()


def test_a_run_killed_after_its_final_training_keeps_that_training_in_its_seconds(tmp_path, monkeypatch):
    import keras_prune.pipeline as pipeline
    from keras_prune.export.report_io import read_json

    class Killed(Exception):
        pass

    recorded = {}

    def killed(output_dir, *args):
        recorded.update(read_json(os.path.join(output_dir, "backup", "finetune.seconds.json")))
        raise Killed

    config = _smoke_config(tmp_path / "run", finetune_epochs=2)
    save_result = pipeline._save_result
    monkeypatch.setattr(pipeline, "_save_result", killed)
    with pytest.raises(Killed):
        run(config)
    monkeypatch.setattr(pipeline, "_save_result", save_result)
    report = run(dataclasses.replace(config, resume=True))
    assert 0 < recorded["seconds"] <= report["retrain_seconds"], "the two epochs trained before the kill count"
    assert not (tmp_path / "run" / "backup").exists()


def test_a_training_phase_name_is_used_once_per_run(tmp_path, monkeypatch):
    from keras_prune.methods import l1

    def twice(model, data, ctx):
        ctx.callbacks("finetune")
        ctx.callbacks("finetune")

    monkeypatch.setattr(l1, "run", twice)
    with pytest.raises(ValueError, match="phase 'finetune' asked for its callbacks twice"):
        run(_smoke_config(tmp_path / "run"))
