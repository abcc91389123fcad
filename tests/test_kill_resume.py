"""Nothing lost on a crash: each method's run is killed (SIGKILL) part-way and resumed.

Each run is a real `bin/prune` process on the embedded data, shrunk by flags/smoke.flags.
It is killed as soon as its method's checkpoint (or a training phase's backup) is on
disk, while work remains; `--resume` must then continue from that state (the log says
so) and finish with a complete, consistent report.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "flags", "smoke.flags")

# method, model, extra flags, the file whose appearance triggers the kill, what the resumed run logs
CASES = [
    ("l1", "lenet5", ["--finetune_epochs=3"], "backup/finetune/training_metadata.json", "Epoch 3/3"),
    ("scratch", "conv4", ["--epochs=3"], "scratch/gate_learning.npz", "scratch: resuming gate learning after epoch"),
    ("slimming", "conv4", ["--finetune_epochs=3"], "backup/finetune/training_metadata.json",
     "slimming: resuming after sparsity training"),
    ("olmp", "lenet300_100", [], "olmp/checkpoint.npz", "olmp: resuming at iteration"),
    ("lstm", "lenet5", [], "lstm/checkpoint.npz", "lstm: resuming after"),
    ("rnp", "conv4", [], "rnp/training.npz", "rnp: resumed after round"),
    ("slimming", "conv4", ["--epochs=3"], "slimming/sparsity_seconds.json", "Epoch 3/3"),
]
IDS = ["l1", "scratch", "slimming", "olmp", "lstm", "rnp", "slimming-sparsity"]



def _record_search_seconds(path, seconds):
    """Sets the search seconds the killed process recorded in its checkpoint (a .npz state or a JSON file)."""
    from keras_prune.export.report_io import read_state, write_state

    if path.suffix == ".json":
        path.write_text(json.dumps({"seconds": seconds}))
    else:
        state, arrays = read_state(str(path))
        write_state(str(path), {**state, "seconds": seconds}, arrays)


# The file in which a killed process records the seconds its search had taken, for the resumed report to add.
SEARCH_SECONDS_FILE = {"scratch": "scratch/gate_learning.npz", "slimming-sparsity": "slimming/sparsity_seconds.json",
                       "rnp": "rnp/training.npz"}


def _command(method, model, extra, output_dir, *resume):
    return [sys.executable, os.path.join(ROOT, "bin", "prune"), f"--flagfile={SMOKE}", f"--method={method}",
            f"--model={model}", f"--output_dir={output_dir}", "--export=saved_model", *extra, *resume]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def _kill_when(command, trigger, timeout=300):
    """Starts `command`, SIGKILLs it once `trigger` exists; returns its output so far."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    deadline = time.monotonic() + timeout
    try:
        while not os.path.exists(trigger):
            if process.poll() is not None:
                pytest.fail(f"the run ended (rc={process.returncode}) before {trigger} appeared:\n"
                            + process.stdout.read()[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"{trigger} did not appear within {timeout} s")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, f"the run finished before the kill:\n{output[-3000:]}"
    return output


@pytest.mark.slow
@pytest.mark.parametrize("method, model, extra, trigger, resumed_log", CASES, ids=IDS)
def test_a_killed_run_resumes_and_finishes_with_a_complete_report(method, model, extra, trigger, resumed_log, tmp_path,
                                                                  request):
    run = tmp_path / "run"
    _kill_when(_command(method, model, extra, run), str(run / trigger))
    assert not (run / "report.json").exists()
    flags_before = (run / "flags.txt").read_text()
    case = request.node.callspec.id
    if case in SEARCH_SECONDS_FILE:  # an hour, so that only the recorded seconds can account for it
        _record_search_seconds(run / SEARCH_SECONDS_FILE[case], 3600.0)

    result = subprocess.run(_command(method, model, extra, run, "--resume"), capture_output=True, text=True,
                            env=_env(), timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert resumed_log in output, output[-3000:]
    if method in ("l1", "slimming"):
        assert "Epoch 1/3" not in output, "fine-tuning restarted instead of resuming from its backup"

    report = json.loads((run / "report.json").read_text())
    assert report["method"] == method and report["model"] == model
    if case in SEARCH_SECONDS_FILE:
        assert report["search_seconds"] >= 3600.0, "the resumed report counts the killed process's search seconds"
    assert 0.0 <= report["pruned"]["accuracy"] <= 1.0
    assert report["pruned"]["flops"] <= report["baseline"]["flops"]
    for path in report["exported"].values():
        assert (run / path).exists(), path
    assert (run / "report.md").exists()
    assert not (run / "backup").exists() or not os.listdir(run / "backup"), "finished phases remove their backups"
    assert (run / "flags.txt").read_text() == flags_before, "a resumed run keeps the flags it started with"
