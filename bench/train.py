"""Training throughput: bnlab's trainer against two references measured in the same run.

    python bench/train.py [--depths 20 56 110] [--batch 128] [--steps 30] [--device auto] [--out FILE.json]

(a) bnlab: `bnlab.training.run` on a synthetic run (no evaluation), steady-state img/s: the time of a
           run of N steps minus that of a run of 3 steps (setup and warm-up cancel), over N - 3 steps;
(b) bare:  a plain loop over the same device-resident batches (`DeviceData.train_batch`), same model,
           same numerics (dtype/autocast, memory format), SGD momentum — no checks, no logging;
(c) usual: the common recipe, pinned here: a torch DataLoader (num_workers=4, pin_memory) over uint8
           images with per-image CPU crop+flip, fp32, NCHW, `.item()` every step.
Also: FLOPs per image (forward+backward, torch's FlopCounterMode), peak memory, and the achieved fraction
of this device's matmul rate (bf16 on CUDA, fp32 on CPU) measured here with a large matmul.
(a) and (b) are interleaved, --repeats (>= 5) times: (a)/(b) is the median of the per-repeat ratios with
its spread (min-max), img/s are medians; wall time by default; `--clock cpu` times them in this
process's CPU time instead (for a shared, noisy machine: then only (a)/(b) is meaningful, since (c)'s
augmentation runs in worker processes).
Ratios are printed against (b) and (c); no absolute target is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mem_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (process high-water mark)


def reset_mem(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def matmul_rate(device: torch.device, dry_run: bool = False) -> tuple[float, str]:
    """Achieved FLOP/s of a large square matmul in the device's fast dtype (--dry-run: a small one)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = 256 if dry_run else 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 2 if dry_run else 20 if device.type == "cuda" else 5
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t), str(dtype).replace("torch.", "")


def flops_per_image(model_cfg: dict, batch: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from bnlab.models import build_model

    model = build_model(**model_cfg).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(x), y).backward()
    return fc.get_total_flops() / batch


CLOCK = {"kind": "cpu"}  # set from --clock
COMPILE: dict[str, str | None] = {"mode": None}  # set from --compile (CUDA only, as in the trainer)


def clock(device: torch.device) -> float:
    """CUDA: wall time after a synchronize. CPU: wall time, or with --clock cpu this process's CPU time
    (all its threads; robust to other jobs on a shared machine, but not comparable with (c), whose
    augmentation runs in worker processes)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time() if CLOCK["kind"] == "cpu" else time.perf_counter()


def bench_bnlab(
    depth: int, batch: int, steps: int, device: str, amp: bool, channels_last: bool, n_train: int
) -> float:
    """Steady-state img/s of bnlab's trainer: (T(steps) - T(3)) over the extra steps, so the setup and
    the first steps, identical in both runs, cancel."""
    _time_bnlab(depth, batch, 3, device, amp, channels_last, n_train)  # warm-up: lazy imports, caches
    t3 = _time_bnlab(depth, batch, 3, device, amp, channels_last, n_train)
    tn = _time_bnlab(depth, batch, steps, device, amp, channels_last, n_train)
    return batch * (steps - 3) / max(tn - t3, 1e-9)


def _time_bnlab(
    depth: int, batch: int, steps: int, device: str, amp: bool, channels_last: bool, n_train: int
) -> float:
    from bnlab.config import resolve
    from bnlab.training import run

    cfg = resolve(
        None,
        [
            f"model.depth={depth}",
            "data.name=synthetic",
            f"data.synthetic_train={n_train}",
            "data.val_size=0",
            f"optim.batch_size={batch}",
            f"train.steps={steps}",
            "train.evaluate=false",
            "train.checkpoint_every=1000000",
            f"train.device={device}",
            f"train.amp={str(amp).lower()}",
            f"train.channels_last={str(channels_last).lower()}",
            *([f"train.compile={COMPILE['mode']}"] if COMPILE["mode"] else []),
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        t = clock(torch.device(device))
        run(cfg, Path(tmp) / "run", progress=False)
        return clock(torch.device(device)) - t


def bench_bare(
    depth: int, batch: int, steps: int, device: torch.device, amp: bool, channels_last: bool, n_train: int
) -> float:
    from bnlab.config import DataConfig
    from bnlab.data import DeviceData, load
    from bnlab.models import build_model

    splits = load(DataConfig(name="synthetic", synthetic_train=n_train, val_size=0), seed=0)
    dd = DeviceData(splits, device)
    torch.manual_seed(0)
    model = build_model(depth=depth).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(  # the same implementation flags as the trainer's (bnlab.training.optim)
        model.parameters(),
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        foreach=True if device.type != "cuda" else None,
        fused=True if device.type == "cuda" else None,
    )
    model.train()
    from bnlab.training.fast_path import compiled_forward, mark_step

    mode = COMPILE["mode"] or False
    fwd = compiled_forward(model, mode, device)  # the trainer's own wrapper: CUDA only

    def step(i: int) -> None:
        mark_step(mode, device)
        x, y = dd.train_batch(i, batch, seed=0, augment=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(min(3, steps)):  # warm-up, as in bench_bnlab (whose first 3 steps cancel out)
        step(i)
    t = clock(device)
    for i in range(3, steps):
        step(i)
    return batch * (steps - 3) / (clock(device) - t)


class _CropFlipDataset(torch.utils.data.Dataset):
    """Per-image CPU augmentation, the usual way (pad 4, random crop, flip, to float, normalize)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: tuple, std: tuple) -> None:
        self.x, self.y = x, y
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = F.pad(self.x[i].float() / 255, (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2,)).tolist()
        img = img[:, dy : dy + 32, dx : dx + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return (img - self.mean) / self.std, self.y[i]


def bench_usual(
    depth: int, batch: int, steps: int, device: torch.device, n_train: int, workers: int
) -> float:
    from bnlab.config import DataConfig
    from bnlab.data import load
    from bnlab.models import build_model

    splits = load(DataConfig(name="synthetic", synthetic_train=n_train, val_size=0), seed=0)
    ds = _CropFlipDataset(splits.train_x, splits.train_y, splits.mean, splits.std)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=True,
    )
    torch.manual_seed(0)
    model = build_model(depth=depth).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    done, t = 0, None
    while done < steps:
        for x, y in loader:
            if done == 3:
                sync(device)
                t = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the usual per-step host sync (logging)
            done += 1
            if done >= steps:
                break
    sync(device)
    assert t is not None
    return batch * (steps - 3) / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[20])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast for (a) and (b) (CUDA)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--skip-usual", action="store_true")
    ap.add_argument(
        "--compile",
        default=None,
        help="torch.compile mode for (a) (train.compile) and (b) on CUDA, e.g. reduce-overhead (CUDA graphs)",
    )
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="CPU: time (a) and (b) in wall time (quiet machine; comparable with (c)) or process CPU time",
    )
    ap.add_argument(
        "--repeats", type=int, default=5, help="interleaved repetitions of (a) and (b) (>= 5); medians"
    )
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="a smoke test of every code path (bench/gpu.sh --dry-run): any --repeats, a small matmul; "
        "its numbers are not measurements",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.repeats < (1 if args.dry_run else 5):
        ap.error("--repeats must be >= 5 (the ratio is a median with its spread)")
    if args.steps < 4:
        ap.error("--steps must be >= 4 (the first 3 steps are the warm-up that cancels out)")
    CLOCK["kind"] = args.clock
    COMPILE["mode"] = args.compile
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    n_train = args.batch * (args.steps + 2)
    rate, rate_dtype = matmul_rate(device, args.dry_run)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU x{torch.get_num_threads()} threads"
    )
    print(f"device {name}; torch {torch.__version__}; matmul rate {rate / 1e12:.3f} TFLOP/s ({rate_dtype})")
    results = []
    for depth in args.depths:
        fpi = flops_per_image({"depth": depth}, min(args.batch, 32), device)
        reset_mem(device)
        runs_a, runs_b = [], []
        for _ in range(args.repeats):  # interleaved, so slow spells of a shared machine hit both alike
            runs_a.append(
                bench_bnlab(depth, args.batch, args.steps, str(device), args.amp, args.channels_last, n_train)
            )
            runs_b.append(
                bench_bare(depth, args.batch, args.steps, device, args.amp, args.channels_last, n_train)
            )
        ratios = [x / y for x, y in zip(runs_a, runs_b)]  # each repeat's (a)/(b), measured side by side
        a, b, ratio = statistics.median(runs_a), statistics.median(runs_b), statistics.median(ratios)
        mem_a = peak_mem_gb(device)
        c = (
            None
            if args.skip_usual
            else bench_usual(depth, args.batch, args.steps, device, n_train, args.workers)
        )
        row = {
            "depth": depth,
            "batch": args.batch,
            "steps": args.steps,
            "device": name,
            "bnlab_img_s": round(a, 1),
            "bare_img_s": round(b, 1),
            "usual_img_s": None if c is None else round(c, 1),
            "bnlab_over_bare": round(ratio, 3),  # median over repeats
            "bnlab_over_bare_min": round(min(ratios), 3),
            "bnlab_over_bare_max": round(max(ratios), 3),
            "repeats": args.repeats,
            "bnlab_over_usual": None if c is None else round(a / c, 3),
            "gflops_per_image": round(fpi / 1e9, 4),
            "peak_mem_gb": round(mem_a, 3),
            "fraction_of_matmul_rate": round(a * fpi / rate, 4),
            "amp": args.amp,
            "channels_last": args.channels_last,
            "compile": args.compile,
        }
        results.append(row)
        print(
            f"ResNet-{depth} batch {args.batch}: bnlab {a:.1f} img/s | bare {b:.1f} img/s | "
            f"usual {'-' if c is None else f'{c:.1f}'} img/s | bnlab/bare median {ratio:.3f} "
            f"(min-max {min(ratios):.3f}-{max(ratios):.3f}, {args.repeats} repeats) | "
            f"bnlab/usual {'-' if c is None else f'{a / c:.2f}'} | {fpi / 1e9:.3f} GFLOP/img | "
            f"peak {mem_a:.2f} GB | {100 * a * fpi / rate:.1f}% of matmul rate",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"matmul_flops": rate, "dry_run": args.dry_run, "results": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
