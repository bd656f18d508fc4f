"""Which probes a Monitor runs at a measured step: a preset name or a list of probe names / (name, options).

    cheap  gradient_histogram from the user's `.grad` (no extra backward), layer_stats (grad/weight norms,
           update ratio of the coming SGD step), activation_moments (one no-grad forward at the first measurement,
           then taken from the user's own forward when that is exact: bnlab.monitor.forward_tap).
    full   cheap + kernel_alignment (E8 Table 1 ratios), gradient_spectrum (E9 ranks) and hessian_top_eig
           (λ_max on the step's minibatch by Lanczos with full reorthogonalization, method lanczos_reorth:
           it stops at the first Krylov step whose Ritz pair has ‖Hv − λv‖ ≤ 1e-3·|λ|, 20 Hessian-vector
           products at most). No coupled per-example gradients (their cost is B backward passes).

Measured overhead (`python bench/monitor.py --steps 100 --batch 64 --repeats 2`: ResNet-20, CIFAR-sized
synthetic inputs, cheap every 10 steps and full every 100 steps, ratios over the bare loop in the same run;
bench/RESULTS.md, "Monitor overhead"):
  before 2026-12-06 (ARPACK Lanczos, ncv 20: 21 HVPs; one fsync per jsonl row; npz read back per step),
  shared 2-core AMD EPYC VM, idle: bare 12.9 s wall, cheap/10 1.13x, full/100 1.79x (the one `full`
  measurement ~10 s against a ~0.13 s step).
  after (2026-12-06, same machine, load 2.7, 2 repeats): bare 13.4 s wall / 25.6 s CPU, cheap/10 1.12x
  CPU (1.14x wall; its cost is activation_moments' extra forward, ~0.15 of ~0.31 s CPU per measurement
  against a 0.256 s CPU training step), full/100 1.49x CPU (1.50x wall; λ_max in 10 HVPs instead of 21,
  λ 24.158016 vs ARPACK's 24.158043).
  after per-step probe files and activation_moments from the loop's own forward (bnlab.monitor.forward_tap;
  2026-12-06, same VM but oversubscribed, load ~8, 3 repeats): cheap/10 1.00x CPU (0.98-1.09 over repeats),
  full/100 1.26x CPU (1.08-1.35); noisy, to be re-measured on a quiet machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bnlab.errors import UserError

GRAD = "grad"  # source of the cheap gradient histogram: the user's .grad


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "probe"  # "probe": the registered probe; "grad": read from the user's .grad

    def as_config(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options), "source": self.source}


CHEAP = (
    ProbeSpec("gradient_histogram", source=GRAD),
    ProbeSpec("layer_stats"),
    ProbeSpec("activation_moments"),
)
FULL = CHEAP + (
    ProbeSpec("kernel_alignment"),
    ProbeSpec("gradient_spectrum"),
    ProbeSpec("hessian_top_eig", {"method": "lanczos_reorth", "iters": 20, "tol": 1e-3}),
)
PRESETS = {"cheap": CHEAP, "full": FULL}


def probes_of(value: object) -> tuple[ProbeSpec, ...]:
    """ProbeSpecs from Monitor(probes=...): "cheap", "full", or a list of names, (name, options) pairs and
    ProbeSpecs; names must be registered probes (bnlab.probes.PROBES)."""
    from bnlab.probes.registry import PROBES

    if value is None:
        return CHEAP
    if isinstance(value, str):
        if value in PRESETS:
            return PRESETS[value]
        value = [value]
    if not isinstance(value, list | tuple):
        raise UserError(f"probes must be 'cheap', 'full' or a list of probe names, not {value!r}")
    out = []
    for item in value:
        if isinstance(item, ProbeSpec):
            spec = item
        elif isinstance(item, str):
            spec = ProbeSpec(item)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
            spec = ProbeSpec(str(item[0]), dict(item[1]))
        else:
            raise UserError(f"a probe is a name or a (name, options) pair, not {item!r}")
        if spec.source != GRAD and spec.name not in PROBES.names():
            raise UserError(PROBES.unknown(spec.name))
        out.append(spec)
    if not out:
        raise UserError("probes is empty; give 'cheap', 'full' or at least one probe name")
    return tuple(out)
