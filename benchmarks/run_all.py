"""Runs every benchmark in one process tree, then tabulates and plots all of them together.

Each benchmark runs as a child process (one at a time: this machine has 2 cores, and a
benchmark's timings are only fair alone), with its log in `<results>/logs/<job>.log`.
After the last one, `tabulate_results.py` writes `summary.md`, `summary.json` and the plots from
every results file, and `run_all.json` records what ran: commands, exit codes, seconds,
versions, machine, seeds; `total_seconds` is the last invocation's, and `runs` lists every
invocation that wrote to the folder.

Jobs (each benchmark pins its own seed, 0 unless its flags say otherwise):

  default   surgery, l1 baseline, channel counts and --round_to latency, scratch vs Network
            Slimming (ResNet-20), OLMP vs tfmot (LeNet-300-100 and LeNet-5), LSTM vs l1
            (VGG-16), RNP vs static: 60 min by the last run of each (`--list` gives each
            job's minutes)
  --all     adds scratch vs slimming on VGG-16, LSTM vs l1 on ResNet-20, and the
            keras.applications sweep
  --quick   every job with its own --quick, results in a temporary folder (a check of the
            scripts, not a result): 6.8 min for the nine default jobs in the last measured
            run here, each under 2 min
  --seeds   run each benchmark that takes a seed once per seed (`--seeds 0,1,2`): a seed other
            than 0 writes `<results file>_seed<N>.json` and `logs/<job>_seed<N>.log`, and the
            summary adds the mean and spread across seeds of each comparison; the jobs
            without a seed (surgery, l1_lenet5, the latency ones, the sweep) run only if 0 is
            among the seeds

Run: python benchmarks/run_all.py [--quick] [--all] [--only NAME ...] [--seeds 0,1,2]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import RESULTS, RESULTS_ENV

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, script and arguments, minutes of its last full run here, rounded up: run_all.json's seconds
# of the job's last run for the default jobs (olmp_lenet5 602 s and rnp_conv4 406 s since the first full run's
# 17.9 and 21.4 min), the results files' total_seconds for the others and for the two latency jobs added later)
JOBS = [
    ("surgery", ["surgery.py"], 1),
    ("l1_lenet5", ["l1_baseline.py", "--models", "lenet5"], 1),
    ("channel_counts", ["channel_counts.py"], 1),
    ("round_to_latency", ["round_to_latency.py"], 3),
    ("scratch_resnet20", ["scratch_vs_slimming.py", "--model", "resnet20"], 19),
    ("olmp_lenet300_100", ["olmp_vs_tfmot.py", "--model", "lenet300_100"], 6),
    ("olmp_lenet5", ["olmp_vs_tfmot.py", "--model", "lenet5"], 11),
    # The settings that meet the paper's VGG claims here (README, Where to Prune): 8.4-10.0 min per seed.
    ("lstm_vgg16", ["lstm_vs_l1.py", "--model", "vgg16", "--reward", "target", "--final_schedule", "cosine",
                    "--tag", "target_cosine"], 11),
    ("rnp_conv4", ["rnp_vs_static.py"], 7),
]
EXTRA_JOBS = [
    ("scratch_vgg16", ["scratch_vs_slimming.py", "--model", "vgg16", "--width", "0.25"], 5),
    # The settings that meet the paper's ResNet claims here (README, Where to Prune): 6.3-9.8 min per seed.
    ("lstm_resnet20", ["lstm_vs_l1.py", "--model", "resnet20", "--train_epochs", "10", "--children", "1",
                       "--controller_epochs", "15", "--patience", "10", "--final_schedule", "cosine",
                       "--tag", "sized15_cosine_p10"], 11),
    ("applications_sweep", ["applications_sweep.py"], 63),
]
UNSEEDED = {"surgery", "l1_lenet5", "channel_counts", "round_to_latency", "applications_sweep"}  # no training whose seed matters, or none to set


def _log(message):
    print(f"[run_all] {message}", flush=True)


def run_job(name, argv, folder, *, quick, seed=0):
    """Runs one benchmark to completion; returns its record."""
    command = [sys.executable, os.path.join(HERE, argv[0]), *argv[1:]] + (["--quick"] if quick else [])
    if seed:
        command += ["--seed", str(seed)]
        name = f"{name}_seed{seed}"
    log_path = os.path.join(folder, "logs", f"{name}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = {**os.environ, RESULTS_ENV: folder, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    with open(log_path, "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=HERE)
    seconds = time.perf_counter() - started
    return {"name": name, "seed": seed, "command": [os.path.relpath(c, HERE) if c.startswith(HERE) else c for c in command],
            "returncode": code, "seconds": round(seconds, 1), "log": os.path.relpath(log_path, folder)}


def _seeds(text):
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers such as 0,1,2, not {text!r}")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds needs distinct non-negative integers, not {text!r}")
    return seeds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every job's --quick, results in a temporary folder")
    parser.add_argument("--all", action="store_true", help="also the second model of scratch and lstm, and the sweep")
    parser.add_argument("--only", nargs="*", default=None, help="run only these jobs (names as listed by --list)")
    parser.add_argument("--list", action="store_true", help="list the jobs and exit")
    parser.add_argument("--seeds", default="0", type=_seeds,
                        help="comma-separated seeds: each seeded job runs once per seed (default: 0)")
    parser.add_argument("--results", default=None, help="results folder (default: benchmarks/results, or a "
                        "temporary one with --quick)")
    args = parser.parse_args()
    jobs = JOBS + (EXTRA_JOBS if args.all or args.only else [])
    if args.list:
        for name, argv, minutes in JOBS + EXTRA_JOBS:
            print(f"{name:20s} {minutes or '?':>3} min  {' '.join(argv)}")
        return
    if args.only:
        unknown = sorted(set(args.only) - {name for name, _, _ in jobs})
        if unknown:
            parser.error(f"unknown job(s) {', '.join(unknown)}; --list shows them")
        jobs = [job for job in jobs if job[0] in args.only]
    # A job without a seed runs once, with the seed-0 invocation: repeats with other seeds leave it alone.
    runs = [(name, argv, minutes, seed) for name, argv, minutes in jobs
            for seed in (([0] if 0 in args.seeds else []) if name in UNSEEDED else args.seeds)]
    folder = args.results or (tempfile.mkdtemp(prefix="keras_prune_quick_") if args.quick else RESULTS)
    os.makedirs(folder, exist_ok=True)
    _log(f"{len(runs)} run(s), results in {folder}" + ("" if args.quick else
         f"; their last full runs here took {sum(m or 0 for _, _, m, _ in runs)} min"
         + (" plus the unrecorded ones" if any(m is None for _, _, m, _ in runs) else "")))

    sys.path.insert(0, HERE)
    from keras_prune.export.report_io import read_json, write_json
    from keras_prune.pipeline import _environment

    record_path = os.path.join(folder, "run_all.json")
    record = read_json(record_path) if os.path.exists(record_path) else {}
    record.update(quick=args.quick, **_environment())
    record.setdefault("jobs", {})
    started, started_at = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    done = []
    for index, (name, argv, minutes, seed) in enumerate(runs):
        _log(f"{index + 1}/{len(runs)} {name}{f' seed {seed}' if seed else ''}: {' '.join(argv)}"
             + ("" if args.quick or minutes is None else f" (last full run: {minutes} min)"))
        job = run_job(name, argv, folder, quick=args.quick, seed=seed)
        record["jobs"][job["name"]] = job
        done.append(job)
        write_json(record_path, record)
        state = "ok" if job["returncode"] == 0 else f"FAILED (exit {job['returncode']}; see {job['log']})"
        _log(f"{job['name']}: {state} in {job['seconds'] / 60:.1f} min")
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    # One folder gathers several invocations (the default jobs, later repeats with other seeds): each is kept.
    record.setdefault("runs", []).append({
        "started": started_at, "runs": [f"{name}{f'_seed{seed}' if seed else ''}" for name, _, _, seed in runs],
        "total_seconds": record["total_seconds"]})

    from tabulate_results import tabulate

    record["summary"] = tabulate(folder)
    write_json(record_path, record)
    failed = [job["name"] for job in done if job["returncode"] != 0]  # this invocation's, not earlier ones
    _log(f"done in {record['total_seconds'] / 60:.1f} min; {len(failed)} failed {failed or ''}; "
         f"table: {os.path.join(folder, 'summary.md')}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
