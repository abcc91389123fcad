"""MultiWorkerMirroredStrategy end to end: two worker processes on loopback run one `bin/prune`.

The cluster is real (gRPC between two processes, `TF_CONFIG` set here); the result must
match a single-process run of the same seed: same structure, accuracy within tolerance,
and only the chief writes the run folder.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from keras_prune.pipeline import RunConfig, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = dict(method="l1", model="lenet5", pretrain_epochs=2, finetune_epochs=1, batch_size=64, max_batches=10,
             latency_repeats=5, export=("saved_model",), verbose=0)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _flags(output_dir):
    flags = [f"--{k}={v}" for k, v in SMOKE.items() if k not in ("export", "verbose")]
    return flags + ["--export=saved_model", f"--output_dir={output_dir}", "--strategy=multi_worker"]


@pytest.mark.slow
def test_two_workers_on_loopback_match_one_process(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bin", "prune"), *_flags(tmp_path / "run")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    assert "with 2 replica(s)" in outputs[0]
    assert "worker1; the chief wrote the run folder" in outputs[1]
    assert not (tmp_path / "run.worker1").exists(), "the other worker removes its own folder when done"

    two = json.loads((tmp_path / "run" / "report.json").read_text())
    one = run(RunConfig(output_dir=str(tmp_path / "one"), **SMOKE))
    assert two["config"]["strategy"] == "multi_worker"
    assert [r["channels_after"] for r in two["layers"]] == [r["channels_after"] for r in one["layers"]]
    assert two["pruned"]["flops"] == one["pruned"]["flops"]
    assert abs(two["pruned"]["accuracy"] - one["pruned"]["accuracy"]) < 0.05
    assert abs(two["baseline"]["accuracy"] - one["baseline"]["accuracy"]) < 0.05
