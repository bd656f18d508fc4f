"""The `fast` profile's total time on one GPU, from a throughput table.

    python bench/fast_estimate.py [--throughput train.json] [--profile fast]

For every training run of every spec under the profile: images processed (steps x batch; a max-lr
search counts its trials: (iters + 2) x seeds x steps x batch) and evaluation images, divided by the
img/s of that depth. img/s comes from `bench/train.py --out train.json` run on the GPU ("bnlab_img_s"
per depth, interpolated in log-depth between measured depths). Without a measured file it uses
ASSUMED_IMG_S below, and says so: that is a projection, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bnlab.analyses.spec import all_specs

# Placeholder until a GPU session measures it (bench/gpu.sh): bf16 + channels_last ResNet training on
# an H100 at batch 128, images/s by depth. Labelled "assumed" wherever it is used.
ASSUMED_IMG_S = {20: 30000.0, 56: 12000.0, 110: 6000.0}
# a step cannot be faster than its kernel launches (~3 per layer, no CUDA graphs): seconds per step by depth
MIN_STEP_S = {20: 0.004, 56: 0.010, 110: 0.020}
EVAL_SPEEDUP = 3.0  # an eval image costs ~1/3 of a training image (forward only)
TRAIN_SIZE = 45000


def img_s_at(depth: int, table: dict[int, float]) -> float:
    ds = sorted(table)
    if depth in table:
        return table[depth]
    if depth <= ds[0]:
        return table[ds[0]] * ds[0] / depth
    if depth >= ds[-1]:
        return table[ds[-1]] * ds[-1] / depth
    lo = max(d for d in ds if d < depth)
    hi = min(d for d in ds if d > depth)
    t = (math.log(depth) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return math.exp((1 - t) * math.log(table[lo]) + t * math.log(table[hi]))


def run_seconds(cfg, table: dict[int, float]) -> float:
    bs = cfg.optim.batch_size
    n = cfg.data.subset or TRAIN_SIZE
    spe = max(1, n // bs)
    rate = img_s_at(cfg.model.depth, table)
    step_s = max(bs / rate, img_s_at(cfg.model.depth, {d: 1 / v for d, v in MIN_STEP_S.items()}) ** -1)
    if cfg.task == "max_lr":
        o = cfg.task_options
        trials = (int(o.get("iters", 8)) + 2) * len(o.get("seeds", [0]))
        return trials * int(o.get("steps", 100)) * step_s
    if cfg.task != "train":
        return 0.0
    steps = cfg.train.steps if cfg.train.steps is not None else round((cfg.train.epochs or 0) * spe)
    evals = 0 if not cfg.train.evaluate else steps / max(1, round(cfg.train.eval_every * spe))
    eval_imgs = evals * (
        cfg.train.eval_train_subset + cfg.data.val_size + (cfg.train.eval_test_subset or 10000)
    )
    return steps * step_s + eval_imgs / (EVAL_SPEEDUP * rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--throughput", default=None, help="bench/train.py --out JSON measured on the GPU")
    ap.add_argument("--profile", default="fast")
    a = ap.parse_args()
    if a.throughput:
        rows = json.loads(Path(a.throughput).read_text())["results"]
        table = {int(r["depth"]): float(r["bnlab_img_s"]) for r in rows}
        basis = f"measured: {a.throughput} ({rows[0]['device']})"
    else:
        table = dict(ASSUMED_IMG_S)
        basis = "ASSUMED img/s (no GPU measurement yet): " + ", ".join(
            f"ResNet-{d} {v:.0f}" for d, v in table.items()
        )
    total = 0.0
    for spec in all_specs():
        secs = sum(run_seconds(c, table) for c in spec.configs(a.profile))
        total += secs
        print(f"{spec.id:<5} {spec.name:<20} {len(spec.configs(a.profile)):>3} runs  {secs / 60:7.1f} min")
    print(f"total {total / 60:.1f} min on one GPU; basis: {basis}")


if __name__ == "__main__":
    main()
