"""Run every probe at initialization on your own model and plot the results.

The model below is defined here, with a normalization layer of its own (`MyNorm`, not a torch norm
subclass). Probes find Conv2d/Linear layers by type, read block outputs from `block_outputs()` (or
`modules=`), and need nothing else from the model. Every probe is a function importable from
`bnlab.probes` under its name. Per-example gradients use `batch` statistics (gradients through them): for
a norm that mixes examples in ways bnlab cannot see, `frozen`/`running` refuse and name the module.

    python examples/own_model.py [OUT_DIR] [--batch 16]

Writes one PNG per figure to OUT_DIR (default: a new temp dir); the last stdout line is OUT_DIR.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from bnlab.figures import init_probes as figs
from bnlab.probes import (
    ProbeContext,
    activation_moments,
    gradient_histogram,
    gradient_predictiveness,
    gradient_spectrum,
    gradient_variance,
    kernel_alignment,
    output_bias,
    per_example_gradients,
    representation_rank,
    signal_propagation,
    weight_grad_norms,
)


class MyNorm(nn.Module):
    """Batch norm written by hand: batch statistics, learnable scale and shift, no running statistics."""

    def __init__(self, c: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(c))
        self.shift = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=(0, 2, 3), keepdim=True)
        var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + self.eps) * self.scale.view(1, -1, 1, 1) + self.shift.view(
            1, -1, 1, 1
        )


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not norm)
        self.n1 = MyNorm(c_out) if norm else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not norm)
        self.n2 = MyNorm(c_out) if norm else nn.Identity()
        self.skip = (
            nn.Conv2d(c_in, c_out, 1, stride, bias=False) if (stride != 1 or c_in != c_out) else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.n2(self.conv2(torch.relu(self.n1(self.conv1(x)))))
        return torch.relu(out + self.skip(x))


class SmallNet(nn.Module):
    def __init__(self, norm: bool, width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.Sequential(
            Block(width, width, 1, norm),
            Block(width, 2 * width, 2, norm),
            Block(2 * width, 2 * width, 1, norm),
        )
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(torch.relu(self.stem(x))).mean(dim=(2, 3)))

    def block_outputs(self) -> list[str]:
        return ["stem"] + [f"blocks.{i}" for i in range(len(self.blocks))]


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=None, help="output folder (default: a new temp dir)")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bnlab_own_model_"))
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 16, 16)
    y = torch.randint(0, 10, (args.batch,))
    results: dict[str, dict] = {}
    for label, norm in (("MyNorm", True), ("no norm", False)):
        model = SmallNet(norm)
        res = {
            probe.__name__: probe(model, x, y)
            for probe in (activation_moments, output_bias, kernel_alignment, gradient_spectrum)
        }
        res["gradient_histogram"] = gradient_histogram(model, x, y, per_example="batch")
        res["gradient_variance"] = gradient_variance(model, x, y, per_example="batch")
        # the follow-up experiments' probes (E13-E15, E17) on the same model
        res["gradient_predictiveness"] = gradient_predictiveness(model, [(x, y)], ctx=ProbeContext(lr=0.1))
        res["representation_rank"] = representation_rank(model, x, y)
        res["signal_propagation"] = signal_propagation(
            model, x, y, modules=[f"blocks.{i}" for i in range(len(model.blocks))], skip_name="skip"
        )
        res["weight_grad_norms"] = weight_grad_norms(model, x, y, norm_stats="batch")
        grads = per_example_gradients(model, x, y, "batch")
        print(
            f"{label}: per-example gradients (batch statistics) of {len(grads)} parameters, "
            f"fc.weight {tuple(grads['fc.weight'].shape)}",
            file=sys.stderr,
        )
        results[label] = res

    layer, conv = "blocks.1.conv2", "blocks.1.conv1"
    figures = {
        "gradient_histograms": figs.gradient_histograms(
            {k: r["gradient_histogram"].arrays for k, r in results.items()}, layer
        ),
        "kernel_alignment": figs.kernel_alignment_bars(
            {k: r["kernel_alignment"].table for k, r in results.items()}
        ),
        "depth_profile": figs.depth_profile({k: r["activation_moments"].table for k, r in results.items()}),
        "logit_gradients": figs.logit_gradient_heatmaps(
            {k: r["output_bias"].arrays for k, r in results.items()}
        ),
        "spectra": figs.normalized_spectra(
            {k: r["gradient_spectrum"].arrays for k, r in results.items()}, [conv, layer]
        ),
    }
    for name, fig in figures.items():
        fig.savefig(out / f"{name}.png", dpi=80)
    for label, res in results.items():
        t = res["kernel_alignment"].table
        med = t[(t.reduce == "all") & (t.metric == "ratio")].value.median()
        top = res["output_bias"].table.set_index("metric").value["top_class_share"]
        print(
            f"{label}: median all-reduce alignment ratio {med:.3g}, top class share {top:.2f}, "
            f"effective beta-smoothness {res['gradient_predictiveness'].value('beta_max'):.3g}",
            file=sys.stderr,
        )
    print(out)
    return out


if __name__ == "__main__":
    main()
