"""Several small runs on one device: total img/s of N concurrent bnlab runs (one process each, as
`--workers-per-device N` runs them) against one run alone, measured in the same invocation.

    python bench/concurrency.py [--depth 20] [--batch 128] [--steps 300] [--counts 1 2 4 8] [--out F.json]

Each process builds its run, trains a short warm-up run of --warmup-steps (lazy imports, cuDNN
autotuning), waits at a barrier, then trains `--steps` steps; total img/s = N x steps x batch / (last end - common start).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path


def _one(depth: int, batch: int, steps: int, warmup: int, device: str, barrier, out) -> None:  # noqa: ANN001
    import torch

    from bnlab.config import resolve
    from bnlab.training import run

    torch.set_num_threads(1)
    base = [
        f"model.depth={depth}",
        "data.name=synthetic",
        f"data.synthetic_train={batch * 8}",
        "data.synthetic_test=64",
        "data.val_size=0",
        f"optim.batch_size={batch}",
        "train.evaluate=false",
        "train.eval_every=100000",
        "train.checkpoint_every=100000",
        "train.layer_stats_every=0",
        "train.tensorboard=false",
        f"train.device={device}",
    ]
    if device == "cuda":
        base += ["train.amp=true", "train.channels_last=true"]
    with tempfile.TemporaryDirectory() as tmp:
        run(resolve(None, base + [f"train.steps={warmup}"]), Path(tmp) / "warm", progress=False)
        barrier.wait()
        t0 = time.time()
        run(resolve(None, base + [f"train.steps={steps}"]), Path(tmp) / "run", progress=False)
        if device == "cuda":
            torch.cuda.synchronize()
        out.put((t0, time.time()))


def total_img_s(n: int, depth: int, batch: int, steps: int, warmup: int, device: str) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    args = (depth, batch, steps, warmup, device, barrier, out)
    procs = [ctx.Process(target=_one, args=args) for _ in range(n)]
    for p in procs:
        p.start()
    spans = [out.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a run process exited with {p.exitcode}")
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    return n * steps * batch / (end - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument(
        "--warmup-steps", type=int, default=5, help="each process's warm-up run, before the barrier"
    )
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch

    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    rows, one = [], None
    for n in a.counts:
        ips = total_img_s(n, a.depth, a.batch, a.steps, a.warmup_steps, device)
        one = ips if n == 1 else one
        rows.append(
            {
                "runs": n,
                "total_img_s": round(ips, 1),
                "over_one": None if one is None else round(ips / one, 3),
            }
        )
        print(
            f"{n} concurrent ResNet-{a.depth} runs on {name}: {ips:.1f} img/s in total"
            + ("" if one is None else f" ({ips / one:.2f}x one run)"),
            flush=True,
        )
    if a.out:
        Path(a.out).write_text(
            json.dumps({"device": name, "depth": a.depth, "batch": a.batch, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
