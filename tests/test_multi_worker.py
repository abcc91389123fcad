"""MultiWorkerMirroredStrategy end to end: two worker processes on loopback run one `bin/prune`.

The cluster is real (gRPC between two processes, `TF_CONFIG` set here); for each method
tested the result must match a single-process run of the same seed (same structure where the
method decides one, accuracy within tolerance), and only the chief writes the run folder.
"""

import json
import os
import sys

import pytest

from conftest import METHOD_SMOKE, free_ports, run_processes, structure
from keras_prune.pipeline import RunConfig, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = dict(pretrain_epochs=2, finetune_epochs=1, epochs=1, batch_size=64, max_batches=10, latency_repeats=5,
              export=("saved_model",), verbose=0)
# l1 (Keras fit), lstm (fit of a model with its own train_step) and olmp (Keras Tuner inside the
# run) cover the three ways a method trains; scratch and rnp, 1.5 min each here, run on two
# replicas in test_strategy_methods.
MULTI_WORKER_METHODS = ("l1", "lstm", "olmp")


def _flags(settings, output_dir):
    flags = [f"--{k}={v}" for k, v in settings.items() if k not in ("export", "verbose")]
    return flags + ["--export=saved_model", f"--output_dir={output_dir}", "--strategy=multi_worker"]


@pytest.mark.slow
@pytest.mark.parametrize("method", MULTI_WORKER_METHODS)
def test_two_workers_on_loopback_match_one_process(method, tmp_path):
    settings = {**COMMON, **METHOD_SMOKE[method], "method": method}
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    commands = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        commands.append(([sys.executable, os.path.join(ROOT, "bin", "prune"), *_flags(settings, tmp_path / "run")], env))
    finished = run_processes(commands, timeout=300)
    for returncode, output in finished:
        assert returncode == 0, output[-3000:]
    outputs = [output for _, output in finished]
    assert "with 2 replica(s)" in outputs[0]
    assert "worker1; the chief wrote the run folder" in outputs[1]
    assert not (tmp_path / "run.worker1").exists(), "the other worker removes its own folder when done"

    two = json.loads((tmp_path / "run" / "report.json").read_text())
    # OneDeviceStrategy, not the default one: Keras's fit sees the same data order under
    # every tf.distribute strategy (see tests/test_strategy_methods.py).
    one = run(RunConfig(output_dir=str(tmp_path / "one"), strategy="one_device", **settings))
    assert two["config"]["strategy"] == "multi_worker"
    # Each worker reads its own shard of every epoch, so the batches differ from one
    # process's: results agree within tolerance, structures within a few channels.
    assert abs(two["pruned"]["accuracy"] - one["pruned"]["accuracy"]) < 0.05
    assert abs(two["baseline"]["accuracy"] - one["baseline"]["accuracy"]) < 0.05
    if method == "olmp":
        # NCS scores candidates on one batch: at 60 iterations the sharded batches lead it
        # elsewhere than one process; both workers must still decide the same masks.
        summaries = [next(l for l in out.splitlines() if "olmp: compression" in l) for out in outputs]
        assert summaries[0].split("]", 1)[1] == summaries[1].split("]", 1)[1]
        assert two["pruned"]["nonzero_params"] < two["baseline"]["nonzero_params"]
    else:
        for (name, a), (other, b) in zip(structure(two), structure(one)):
            assert name == other and abs(a - b) <= max(1, 0.02 * b), (name, a, b)
