"""Monitor overhead: a ResNet-20 training loop bare, with the `cheap` preset every 10 steps and with `full`
every 100 steps, in one run; prints each time and its ratio over the bare loop (targets: cheap <= 1.10x,
full <= 1.5x; Cockpit's published economy configuration costs 1.5x at every step).

    python bench/monitor.py [--steps 100] [--batch 64] [--repeats 3]

Times are process CPU time (time.process_time: robust to other jobs on a shared machine) and wall time;
the arms are interleaved `repeats` times and each arm's median is reported, with the spread (min-max) of
its per-repeat ratios over the bare loop of the same repeat. Synthetic CIFAR-shaped data.
Before timing, every arm runs once for 2 steps (a measurement at step 0), so the process's first-call
costs (imports, allocator growth, first double backward) are charged to no arm. Each arm's line says how
many steps it measured, checked against its schedule (cheap/10: steps 0, 10, ...; full/100: 0, 100, ...),
and at how many of them activation_moments came from the loop's own forward (bnlab.monitor.forward_tap).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import nn

from bnlab import build_model
from bnlab.monitor import Monitor


def loop(steps: int, batch: int, monitor_kw: dict | None, root: str) -> tuple[float, float, int, int]:
    """(process CPU s, wall s, measured steps, reused forwards) of `steps` training steps, with a Monitor if
    monitor_kw."""
    torch.manual_seed(0)
    model = build_model("resnet_cifar", depth=20, norm="batch")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    data = [(torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))) for _ in range(4)]
    mon = Monitor(model, opt, runs=root, **monitor_kw) if monitor_kw is not None else None
    c0, w0 = time.process_time(), time.perf_counter()
    for step in range(steps):
        x, y = data[step % len(data)]
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if mon is not None:
            mon.step(step, x, y, loss=loss)
        opt.step()
    measured = reused = 0
    if mon is not None:
        mon.close()
        measured, reused = mon.measured, mon.reused_forwards
        expected = sum(mon.due(s) for s in range(steps))
        assert measured == expected, (monitor_kw, measured, expected)
    return time.process_time() - c0, time.perf_counter() - w0, measured, reused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    arms = {
        "bare": None,
        "cheap/10": {"probes": "cheap", "schedule": 10},
        "full/100": {"probes": "full", "schedule": 100},
    }
    times: dict[str, list[tuple[float, float, int, int]]] = {k: [] for k in arms}
    with tempfile.TemporaryDirectory() as root:
        for kw in arms.values():  # warm-up (module docstring)
            loop(2, a.batch, kw, root)
        for _ in range(a.repeats):
            for name, kw in arms.items():
                times[name].append(loop(a.steps, a.batch, kw, root))
    load = os.getloadavg()[0]
    print(
        f"ResNet-20, batch {a.batch}, {a.steps} steps, {a.repeats} interleaved repeats, torch threads "
        f"{torch.get_num_threads()}, load average {load:.1f} on {os.cpu_count()} cores"
    )
    bare = times["bare"]
    cpu0 = statistics.median(t[0] for t in bare)
    wall0 = statistics.median(t[1] for t in bare)
    for name, t in times.items():
        cpu, wall = statistics.median(x[0] for x in t), statistics.median(x[1] for x in t)
        # per repeat, over the bare loop of the same repeat: the spread of the ratio
        rc = [x[0] / b[0] for x, b in zip(t, bare, strict=True)]
        rw = [x[1] / b[1] for x, b in zip(t, bare, strict=True)]
        print(
            f"{name:10s} cpu {cpu:7.1f} s  ratio {cpu / cpu0:5.2f}x ({min(rc):.2f}-{max(rc):.2f})   "
            f"wall {wall:7.1f} s  ratio {wall / wall0:5.2f}x ({min(rw):.2f}-{max(rw):.2f})   "
            f"measured steps {t[0][2]}, reused forwards {t[0][3]}"
        )


if __name__ == "__main__":
    main()
