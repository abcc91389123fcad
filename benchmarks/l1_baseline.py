"""Benchmark: the `l1` baseline end to end with its recipe on the embedded data.

Runs the full pipeline (pre-train, prune to the FLOPs target, fine-tune, export) for
each model and writes benchmarks/results/l1_<model>.json with the report's headline.

Run: python benchmarks/l1_baseline.py [--models lenet5 resnet20] [--quick]
"""

import argparse
import os
import tempfile

from common import results_dir

from keras_prune.export.report_io import write_json
from keras_prune.pipeline import RunConfig, run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5"])
    parser.add_argument("--target_flops", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true", help="smoke-sized epochs")
    args = parser.parse_args()
    for model in args.models:
        with tempfile.TemporaryDirectory() as out:
            config = RunConfig(
                method="l1",
                model=model,
                output_dir=out,
                target_flops=args.target_flops,
                pretrain_epochs=1 if args.quick else 10,
                finetune_epochs=1 if args.quick else 5,
                latency_repeats=5 if args.quick else 50,
                verbose=2,
            )
            report = run(config)
        headline = {k: report[k] for k in ("method", "model", "dataset", "target_flops", "flops_ratio")}
        headline.update(
            baseline=report["baseline"],
            pruned=report["pruned"],
            search_seconds=report["search_seconds"],
            total_seconds=report["total_seconds"],
            epochs={"pretrain": config.pretrain_epochs, "finetune": config.finetune_epochs},
            versions=report["versions"],
            machine=report["machine"],
            seed=config.seed,
            serving_latency=report["serving_latency"],
            layers=report["layers"],
        )
        path = os.path.join(results_dir(args.quick), f"l1_{model}.json")
        write_json(path, headline)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
