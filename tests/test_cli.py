"""The command line: every recipe parses, and bad input gives one clear line, no traceback."""

import glob
import os
import re
import subprocess
import sys

import pytest
from absl import flags

from keras_prune.cli.flags import config_from_flags, define_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(ROOT, "flags", "*.flags")))


def _parse(*args):
    fv = flags.FlagValues()
    define_flags(fv)
    fv(["prune", *args])
    return fv


@pytest.mark.parametrize("recipe", [os.path.basename(r) for r in RECIPES])
def test_every_flagfile_parses_with_smoke_last(recipe, tmp_path):
    path = os.path.join(ROOT, "flags", recipe)
    header = open(path).read().splitlines()[:4]
    assert any("bin/prune" in line for line in header), "the header gives the exact command"
    args = [f"--flagfile={path}", f"--output_dir={tmp_path}"]
    if recipe != "smoke.flags":
        assert any("run time" in line.lower() for line in header), "the header gives the run time"
        config = config_from_flags(_parse(*args, f"--flagfile={os.path.join(ROOT, 'flags', 'smoke.flags')}"))
        assert config.dataset == "mnist5k" and config.pretrain_epochs <= 2
        # rnp's exploration decays over the smoke run's own decision steps, not a recipe's 10,000
        assert config.rnp_epsilon_steps == 0
    else:
        fv = _parse(*args, "--method=l1", "--model=lenet5")
        assert fv.finetune_epochs <= 1
        # it shrinks a run, never changes where it runs: a distributed command shrunk for a try stays one
        shrunk = _parse("--strategy=mirrored", *args, "--method=l1", "--model=lenet5")
        assert shrunk.strategy == "mirrored"


def _prune(*args, cwd=ROOT, **env_vars):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env_vars}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "prune"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--method=nope", "--model=lenet5"], "value should be one of"),
        (["--method=l1", "--model=lenet5", "--target_flops=1.5"], "--target_flops must be in (0, 1]"),
        (["--method=l1", "--model=lenet5", "--target_flops=0"], "--target_flops must be in (0, 1]"),
        (["--method=l1", "--model=lenet5", "--round_to=0"], "--round_to must be >= 1"),
        (["--method=l1", "--model=lenet5", "--seed=-1"], "--seed must be in [0, 2**32 - 1]"),
        (["--method=l1", "--model=lenet5", "--width=0"], "--width must be in (0, 4]"),
    ],
)
def test_flag_errors_are_one_line_without_traceback(args, expected, tmp_path):
    result = _prune(*args, f"--output_dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_run_errors_name_the_problem(tmp_path):
    unknown_model = _prune("--method=l1", "--model=resnet9000", f"--output_dir={tmp_path / 'a'}")
    assert unknown_model.returncode == 2 and "--model=resnet9000 is neither a zoo model (" in unknown_model.stderr
    assert "lenet5" in unknown_model.stderr and "Traceback" not in unknown_model.stderr
    assert not (tmp_path / "a").exists(), "a mistyped command leaves the folder to the corrected one"
    missing = _prune("--method=l1", f"--model={tmp_path / 'missing.keras'}", f"--output_dir={tmp_path / 'b'}")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert not (tmp_path / "b").exists(), "a failed run removes the empty folder it made"
    not_a_model = tmp_path / "junk.keras"
    not_a_model.write_text("not a model")
    junk = _prune("--method=l1", f"--model={not_a_model}", f"--output_dir={tmp_path / 'c'}")
    assert junk.returncode == 2 and "could not be loaded as a Keras model" in junk.stderr
    dataset = _prune("--method=l1", "--model=lenet5", "--dataset=cifar10", f"--data_dir={tmp_path}", f"--output_dir={tmp_path / 'd'}")
    assert dataset.returncode == 2 and "cifar10" in dataset.stderr and "Traceback" not in dataset.stderr


def test_an_output_dir_holding_a_run_is_refused(tmp_path):
    (tmp_path / "flags.txt").write_text("--method=l1\n")
    (tmp_path / "run_config.json").write_text("{}")
    result = _prune("--method=l1", "--model=lenet5", f"--output_dir={tmp_path}")
    assert result.returncode == 2 and "--resume" in result.stderr and "--overwrite" in result.stderr


def test_the_runs_flags_leave_out_what_only_this_invocation_asked(tmp_path):
    from keras_prune.cli.main import run_flags_text

    fv = _parse("--method=l1", "--model=lenet5", "--overwrite", "--traceback", f"--output_dir={tmp_path}")
    text = run_flags_text(fv)
    assert "--method=l1" in text and f"--output_dir={tmp_path}" in text
    assert not any(word in text for word in ("overwrite", "resume", "traceback")), (
        "bin/prune --flagfile=<run>/flags.txt --resume must not be undone by the first command's flags"
    )
    resumed = _parse(f"--flagfile={_write(tmp_path / 'flags.txt', text)}", "--resume")
    assert resumed.resume and not resumed.overwrite


def test_the_runs_flags_are_keras_prunes_own(tmp_path):
    from keras_prune.cli.main import run_flags_text

    fv = flags.FlagValues()
    define_flags(fv)
    flags.DEFINE_integer("test_random_seed", 301, "another library's flag", flag_values=fv,
                         module_name="absl.testing.absltest")
    fv(["prune", "--method=l1", "--model=lenet5", f"--output_dir={tmp_path}", "--test_random_seed=7"])
    text = run_flags_text(fv)
    assert "--method=l1" in text and "--target_flops=" in text and "test_random_seed" not in text


def test_help_lists_the_flags():
    result = _prune("--help")
    assert "--target_flops" in result.stdout and "--method" in result.stdout, result.stdout  # (absl exits 1)


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_a_leading_tilde_is_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = config_from_flags(_parse("--method=l1", "--model=~/own.keras", "--data_dir=~/tfds", "--output_dir=~/runs/a"))
    assert (config.model, config.data_dir, config.output_dir) == (
        str(tmp_path / "own.keras"), str(tmp_path / "tfds"), str(tmp_path / "runs" / "a")
    )


def test_a_general_flag_the_method_does_not_read_is_named(tmp_path):
    result = _prune("--method=olmp", "--model=resnet9000", "--target_flops=0.1", f"--output_dir={tmp_path / 'run'}")
    assert "note: --method=olmp does not use --target_flops; ignored" in result.stderr


CUSTOM_LAYER = """
import keras


@keras.saving.register_keras_serializable(package="test_cli")
class Doubler(keras.layers.Layer):
    def call(self, x):
        return x * 2.0
"""


def test_custom_modules_register_the_layers_of_an_own_model(tmp_path, monkeypatch):
    import importlib

    import keras

    (tmp_path / "my_layers.py").write_text(CUSTOM_LAYER)
    monkeypatch.syspath_prepend(str(tmp_path))
    my_layers = importlib.import_module("my_layers")
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    outputs = my_layers.Doubler()(keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    keras.Model(inputs, outputs).save(tmp_path / "own.keras")
    common = ("--method=l1", f"--model={tmp_path / 'own.keras'}", "--target_flops=0.001")
    without = _prune(*common, f"--output_dir={tmp_path / 'a'}", PYTHONPATH=str(tmp_path))
    assert without.returncode == 2 and "could not be loaded" in without.stderr and "--custom_modules" in without.stderr
    loaded = _prune(*common, "--custom_modules=my_layers", f"--output_dir={tmp_path / 'b'}", cwd=tmp_path)  # found here
    assert loaded.returncode == 2 and "--target_flops=0.001 is not reachable" in loaded.stderr, loaded.stderr[-2000:]
    missing = _prune(*common, "--custom_modules=no_such_module", f"--output_dir={tmp_path / 'c'}")
    assert missing.returncode == 2 and "cannot import 'no_such_module'" in missing.stderr


def test_flags_this_run_does_not_read_are_noted(tmp_path):
    from keras_prune.cli.main import unused_flag_notes

    def notes(*args):
        fv = _parse(f"--output_dir={tmp_path}", *args)
        return unused_flag_notes(fv, config_from_flags(fv))

    assert notes("--method=l1", "--model=lenet5", "--target_flops=0.3") == []
    assert notes("--method=rnp", "--model=conv4", "--target_flops=0.3", "--learning_rate=0.1") == [
        "--method=rnp does not use --learning_rate, --target_flops; ignored"
    ]
    assert "ships inside keras-prune" in notes("--method=l1", "--model=lenet5", f"--data_dir={tmp_path}")[0]
    assert notes("--method=l1", "--model=lenet5", f"--data_dir={tmp_path}", "--dataset=cifar10") == []
    assert "--strategy=tpu only" in notes("--method=l1", "--model=lenet5", "--tpu_address=grpc://x:1")[0]
    assert notes("--method=l1", "--model=lenet5", "--export=tflite") == [
        "--export replaces its default list: no saved_model or keras export, and the report has no serving "
        "latency; to keep them, pass --export=tflite --export=saved_model --export=keras"
    ]
    assert notes("--method=l1", "--model=lenet5", "--export=saved_model", "--export=keras", "--export=tflite") == []
    assert notes("--method=l1", "--model=lenet5", "--patience=3", "--olmp_delta=0.05", "--expansion=2") == [
        "--method=l1 does not use the other methods' --expansion (scratch), --olmp_delta (olmp), --patience (lstm); "
        "ignored"
    ]
    assert notes("--method=lstm", "--model=lenet5", "--patience=3", "--lstm_epochs=2") == []
    own = ("--model=own.keras", "--pretrain_epochs=3", "--pretrain_learning_rate=0.1")
    assert notes("--method=l1", *own) == [
        "--model=own.keras is your own model, taken as trained: there is no pre-training, so --pretrain_epochs, "
        "--pretrain_learning_rate are ignored"
    ]
    assert notes("--method=slimming", *own) == [  # slimming's sparsity training reads the rate
        "--model=own.keras is your own model, taken as trained: there is no pre-training, so --pretrain_epochs is "
        "ignored"
    ]
    assert notes("--method=l1", "--model=lenet5", "--pretrain_epochs=3", "--custom_modules=my_layers") == [
        "--custom_modules registers the layers of your own --model file; --model=lenet5 is a zoo model, so it is "
        "ignored"
    ]
    assert notes("--method=olmp", "--model=lenet5", "--olmp_constraint_examples=64") == [
        "--olmp_constraint_examples is read with --olmp_constraint=validation only; ignored"
    ]
    assert notes("--method=olmp", "--model=lenet5", "--olmp_constraint_examples=64",
                 "--olmp_constraint=validation") == []


def test_only_flags_written_on_the_command_line_are_noted(tmp_path):
    """A flagfile sets flags for several methods (smoke.flags), a run's flags.txt every flag: not noted."""
    from keras_prune.cli.main import command_line_flags, unused_flag_notes

    flagfile = tmp_path / "recipe.flags"
    flagfile.write_text("--patience=3\n--olmp_delta=0.05\n--export=tflite\n")
    argv = ["prune", f"--flagfile={flagfile}", "--method=l1", "--model=lenet5", f"--output_dir={tmp_path}",
            "--expansion=2", "--noresume", "-seed=3"]
    fv = _parse(*argv[1:])
    assert command_line_flags(argv, fv) == {"method", "model", "output_dir", "expansion", "resume", "seed"}
    assert unused_flag_notes(fv, config_from_flags(fv), command_line=command_line_flags(argv, fv)) == [
        "--method=l1 does not use the other methods' --expansion (scratch); ignored"
    ]
    assert len(unused_flag_notes(fv, config_from_flags(fv))) == 2, "without command_line: every flag given"


def test_every_method_flag_is_owned_by_the_method_its_help_names():
    from keras_prune.cli.flags import flag_owner
    from keras_prune.methods import GENERAL_SETTINGS, METHODS

    fv = flags.FlagValues()
    define_flags(fv)
    for name in set(fv) - GENERAL_SETTINGS:  # those are noted by ignored_settings
        prefix = re.sub(r"^<[^>]*>: ", "", fv[name].help).split(":", 1)[0]  # absl puts an enum's values first
        assert flag_owner(name) == (prefix if prefix in METHODS else None), name
