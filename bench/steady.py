"""Steady-state training throughput of bnlab's trainer for >= N seconds, and the projected time of a
164-epoch CIFAR run (8.2M images): `python bench/steady.py --depth 110 --seconds 60 [--out F.json]`."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bnlab.config import resolve
from bnlab.store.files import read_json
from bnlab.training import run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=110)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--images", type=int, default=50000, help="synthetic train images (CIFAR's 50,000)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    base = [
        f"model.depth={a.depth}",
        "data.name=synthetic",
        f"data.synthetic_train={a.images}",
        "data.val_size=0",
        f"optim.batch_size={a.batch}",
        "train.evaluate=false",
        "train.checkpoint_every=1000000",
    ]
    if cuda:
        base += ["train.amp=true", "train.channels_last=true"]  # the default sync_every reads every 50 steps
    # calibrate the step count from a short run, then run for >= the requested seconds
    with tempfile.TemporaryDirectory() as tmp:
        cal = min(30, max(3, int(a.seconds)))  # calibration steps (a dry run asks for ~1 s)
        run(resolve(None, base + [f"train.steps={cal}"]), Path(tmp) / "cal", progress=False)
        ips = read_json(Path(tmp) / "cal" / "summary.json")["img_per_s"]
        steps = max(cal, int(a.seconds * ips / a.batch))
        t = time.perf_counter()
        run(resolve(None, base + [f"train.steps={steps}"]), Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t
        ips = read_json(Path(tmp) / "run" / "summary.json")["img_per_s"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    proj_min = 8.2e6 / ips / 60
    res = {
        "depth": a.depth,
        "batch": a.batch,
        "steps": steps,
        "wall_s": round(wall, 1),
        "img_per_s": ips,
        "projected_164_epochs_min": round(proj_min, 1),
        "peak_mem_gb": peak,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
    }
    print(json.dumps(res))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
