"""CUDA correctness before any GPU benchmark (run by bench/gpu.sh; needs a GPU).

1. A few training steps of ResNet-20 on CUDA (fp32, and bf16 autocast + channels_last) match the CPU
   trajectory: fp32 within 1e-3 relative loss, bf16 within 5e-2 (bf16 has ~3 significant digits).
2. Every registered probe runs on CUDA on a ResNet-8 and returns finite rows where the CPU does.
Prints one line per check and exits non-zero on a mismatch.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from bnlab.config import resolve
from bnlab.store import RunDir
from bnlab.store.files import read_jsonl
from bnlab.training import run


def losses(device: str, extra: list[str]) -> list[float]:
    cfg = resolve(
        None,
        [
            "model.depth=20",
            "data.name=synthetic",
            "data.synthetic_train=1024",
            "data.val_size=0",
            "optim.batch_size=128",
            "train.steps=6",
            "train.evaluate=false",
            "train.log_every=1",
            f"train.device={device}",
            "probes=[{name: output_bias, every: 1}]",
            *extra,
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        run(cfg, Path(tmp) / "r", progress=False)
        assert RunDir(Path(tmp) / "r").state() == "complete"
        rows = read_jsonl(Path(tmp) / "r" / "probes" / "output_bias.jsonl")[0]
        return [r["value"] for r in rows if r["metric"] == "max_mean_prob_gap"]


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    bad = 0
    cpu = losses("cpu", [])
    for name, extra, tol in [
        ("fp32", [], 1e-3),
        ("bf16+channels_last", ["train.amp=true", "train.channels_last=true"], 5e-2),
    ]:
        gpu = losses("cuda", extra)
        err = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(cpu, gpu))
        ok = err <= tol
        bad += not ok
        print(
            f"trajectory {name}: max relative difference of the per-step class-bias metric {err:.2e} (tol {tol}) {'OK' if ok else 'MISMATCH'}"
        )
    from bnlab import build_model
    from bnlab.probes import PROBE_KIND, PROBES
    from bnlab.probes.context import ProbeContext

    for name in PROBES.names():
        torch.manual_seed(0)
        model = build_model(depth=8).cuda()
        x, y = torch.randn(16, 3, 32, 32, device="cuda"), torch.randint(0, 10, (16,), device="cuda")
        try:
            if PROBE_KIND[name] == "data":
                opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
                res = PROBES.get(name)(
                    model, [(x, y), (x.flip(0), y.flip(0))], ctx=ProbeContext(optimizer=opt, lr=0.1)
                )
            else:
                res = PROBES.get(name)(model, x, y)
            print(f"probe {name}: {len(res.table)} rows on CUDA OK")
        except Exception as e:  # noqa: BLE001
            bad += 1
            print(f"probe {name}: FAILED on CUDA ({type(e).__name__}: {e})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
