"""CUDA correctness before any GPU benchmark (run by bench/gpu.sh).

1. A few training steps of ResNet-20 on CUDA (fp32; bf16 autocast + channels_last; bf16 + CUDA graphs
   via train.compile=reduce-overhead) match the CPU trajectory of the per-step class-bias metric: fp32
   within 1e-3 relative, bf16 within 5e-2 (bf16 has ~3 significant digits).
2. The hot path's host syncs (torch.cuda.set_sync_debug_mode): with the default train.sync_every the
   loop syncs far less than once per step; with train.sync_every=1, at least once per step.
3. Every registered probe runs on CUDA on a ResNet-8 and returns rows.
Prints one line per check and exits non-zero on a mismatch.

`--dry-run`: the same code paths on the CPU at tiny sizes (ResNet-8, batch 8, 2 steps; every probe on
4 images of 4 x 4; the "device" side is the CPU too, so the fp32 trajectories agree trivially; the sync
count is not measured), so that a typo is found before GPU minutes are spent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from bnlab.config import resolve
from bnlab.store import RunDir
from bnlab.store.files import read_jsonl
from bnlab.training import run

SIZES = {"batch": 128, "train": 256, "test": 64}  # the runs' sizes; --dry-run: 8, 16, 8


def _cfg(device: str, depth: int, steps: int, extra: list[str]):
    return resolve(
        None,
        [
            f"model.depth={depth}",
            "data.name=synthetic",
            f"data.synthetic_train={max(SIZES['train'], 32 * steps)}",
            f"data.synthetic_test={SIZES['test']}",
            "data.val_size=0",
            f"optim.batch_size={SIZES['batch']}",
            f"train.steps={steps}",
            "train.evaluate=false",
            "train.log_every=1",
            "train.tensorboard=false",
            f"train.device={device}",
            *extra,
        ],
    )


def trajectory(device: str, depth: int, steps: int, extra: list[str]) -> list[float]:
    """The per-step class-bias metric (output_bias probe) of a short run."""
    cfg = _cfg(device, depth, steps, ["probes=[{name: output_bias, every: 1}]", *extra])
    with tempfile.TemporaryDirectory() as tmp:
        run(cfg, Path(tmp) / "r", progress=False)
        assert RunDir(Path(tmp) / "r").state() == "complete"
        rows = read_jsonl(Path(tmp) / "r" / "probes" / "output_bias.jsonl")[0]
        return [r["value"] for r in rows if r["metric"] == "max_mean_prob_gap"]


def host_syncs(device: str, depth: int, steps: int, extra: list[str]) -> int | None:
    """Synchronizing CUDA calls during a run (None on CPU, where there is nothing to count)."""
    quiet = ["train.layer_stats_every=0", "train.eval_every=100000", "train.checkpoint_every=100000"]
    cfg = _cfg(device, depth, steps, quiet + extra)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.startswith("cuda"):
            torch.cuda.set_sync_debug_mode("warn")
        try:
            run(cfg, Path(tmp) / "r", progress=False)
        finally:
            if device.startswith("cuda"):
                torch.cuda.set_sync_debug_mode("default")
    if not device.startswith("cuda"):
        return None
    return sum("synchroniz" in str(w.message) for w in caught)


def check_probes(device: str, n: int, size: int) -> int:
    """Every registered probe on a ResNet-8 with n images of size x size (the dry run: tiny, as in
    tests/probes/test_calling.py; some probes' default options take minutes on a CPU at 32 x 32)."""
    from bnlab import build_model
    from bnlab.probes import PROBE_KIND, PROBES
    from bnlab.probes.context import ProbeContext

    bad = 0
    for name in PROBES.names():
        torch.manual_seed(0)
        t0, c0 = time.perf_counter(), time.process_time()
        model = build_model(depth=8).to(device)
        x = torch.randn(n, 3, size, size, device=device)
        y = torch.randint(0, 10, (n,), device=device)
        try:
            if PROBE_KIND[name] == "data":
                opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
                res = PROBES.get(name)(
                    model, [(x, y), (x.flip(0), y.flip(0))], ctx=ProbeContext(optimizer=opt, lr=0.1)
                )
            else:
                res = PROBES.get(name)(model, x, y)
            ok = len(res.table) > 0
            bad += not ok
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(
                f"probe {name}: {len(res.table)} rows on {device} in {secs:.1f}s ({cpu:.1f} CPU-s) "
                f"{'OK' if ok else 'EMPTY'}",
                flush=True,
            )
        except Exception as e:  # noqa: BLE001 - every probe is tried; each failure is one line
            bad += 1
            print(f"probe {name}: FAILED on {device} ({type(e).__name__}: {e})", flush=True)
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: every code path, no GPU")
    a = ap.parse_args()
    if a.dry_run:
        device, depth, steps, sync_steps = "cpu", 8, 2, 2
        SIZES.update(batch=8, train=16, test=8)
    elif torch.cuda.is_available():
        device, depth, steps, sync_steps = "cuda", 20, 6, 200
    else:
        print("no CUDA device: nothing to check (use --dry-run on a CPU)")
        return 1
    bad = 0
    cpu = trajectory("cpu", depth, steps, [])
    for name, extra, tol in [
        ("fp32", [], 1e-3),
        ("bf16+channels_last", ["train.amp=true", "train.channels_last=true"], 5e-2),
        ("bf16+compile reduce-overhead", ["train.amp=true", "train.compile=reduce-overhead"], 5e-2),
    ]:
        got = trajectory(device, depth, steps, extra)
        err = max(abs(p - q) / max(abs(p), 1e-6) for p, q in zip(cpu, got))
        ok = len(got) == len(cpu) == steps + 1 and err <= tol
        bad += not ok
        print(
            f"trajectory {name}: max relative difference of the per-step class-bias metric {err:.2e} "
            f"(tol {tol}) {'OK' if ok else 'MISMATCH'}",
            flush=True,
        )
    default = host_syncs(device, depth, sync_steps, [])
    every = host_syncs(device, depth, sync_steps, ["train.sync_every=1"])
    if default is None or every is None:
        print(f"host syncs: not counted on {device} (CUDA only); both runs completed OK", flush=True)
    else:
        ok = default <= sync_steps / 10 and every >= sync_steps
        bad += not ok
        print(
            f"host syncs over {sync_steps} steps: default sync_every {default} ({default / sync_steps:.3f}/step), "
            f"sync_every=1 {every} {'OK' if ok else 'TOO MANY'}",
            flush=True,
        )
    bad += check_probes(device, *((4, 4) if a.dry_run else (16, 32)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
