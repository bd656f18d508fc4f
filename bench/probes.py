"""Probe cost on ResNet-56 (BN), batch 64, CPU: each probe's time over references measured in the same run.

    python bench/probes.py [--depth 56] [--batch 64] [--reps 3] [--threads 1] [--clock cpu|wall]

The default clock is this process's CPU time with one thread: on a shared machine wall time swings 5-10x
with other load, CPU time of a single-threaded process does not (multi-threaded CPU time counts spin-waits).

References: one forward+backward of the model on the batch (median of --reps), and for `coupled`
per-example gradients a plain loop of B backward passes through one full-batch forward. Targets (issue):
kernel_alignment sum_abs+all+spatial <= 2x, full table <= 4x; frozen per-example <= 3x; coupled <= 1.5x loop.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import bnlab
from bnlab.probes import PROBES, per_example_gradients

CLOCK: Callable[[], float] = time.process_time


def timed(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=56)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--skip-coupled", action="store_true")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = bnlab.build_model(name="resnet_cifar", depth=args.depth, norm="batch")
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()

    def fwd_bwd() -> None:
        torch.autograd.grad(F.cross_entropy(model(x), y), params)

    fwd_bwd()  # warm-up
    ref = timed(fwd_bwd, args.reps)  # for orientation only: ratios use a reference timed next to each probe
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads "
        f"{torch.get_num_threads()}, ResNet-{args.depth} BN, batch {args.batch}"
    )
    print(f"reference forward+backward: {ref:.3f} s ({args.clock} time)")
    print(
        f"{'measurement':58s} {'time s':>8s} {'ratio':>7s} {'target':>7s}  (min over reps / min of the interleaved reference)"
    )

    def row(
        name: str,
        fn: Callable[[], object],
        target: float | None,
        base_fn: Callable[[], object] = fwd_bwd,
        reps: int = args.reps,
    ) -> None:
        # interleave reference and probe so load from other processes hits both alike; the minimum over reps
        # is the least disturbed run of each
        pairs = [(timed(base_fn, 1), timed(fn, 1)) for _ in range(reps)]
        t = min(p for _, p in pairs)
        ratio = t / min(b for b, _ in pairs)
        tgt = f"<= {target:g}" if target else ""
        ok = "" if target is None else ("ok" if ratio <= target else "OVER")
        print(f"{name:58s} {t:8.3f} {ratio:7.2f} {tgt:>7s} {ok}", flush=True)

    ka = PROBES.get("kernel_alignment")
    row(
        "kernel_alignment sum_abs+all+spatial (all convs)",
        lambda: ka(model, x, y, reduce=("all", "spatial")),
        2,
    )
    row("kernel_alignment full table (spatial, batch, all)", lambda: ka(model, x, y), 4)
    for name in ("gradient_histogram", "activation_moments", "output_bias", "gradient_spectrum"):
        row(name, lambda name=name: PROBES.get(name)(model, x, y), None)
    row("per_example_gradients frozen", lambda: per_example_gradients(model, x, y, "frozen"), 3)
    row("per_example_gradients eval", lambda: per_example_gradients(model, x, y, "eval"), None)
    if args.skip_coupled:
        return

    def loop() -> None:
        losses = F.cross_entropy(model(x), y, reduction="none")
        for i in range(args.batch):
            torch.autograd.grad(losses[i], params, retain_graph=True)

    print(f"reference for the rows below: a loop of {args.batch} backward passes through one forward")
    row(
        "per_example_gradients coupled (vs the loop)",
        lambda: per_example_gradients(model, x, y, "coupled"),
        1.5,
        base_fn=loop,
        reps=1,
    )
    row(
        "gradient_variance (coupled, vs the loop)",
        lambda: PROBES.get("gradient_variance")(model, x, y),
        None,
        base_fn=loop,
        reps=1,
    )


if __name__ == "__main__":
    main()
