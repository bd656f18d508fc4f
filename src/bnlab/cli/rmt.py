"""bnlab rmt spectra|condition|jacobian --out DIR: E10's tables (csv) and figures (png), no training.

Each subcommand calls bnlab.rmt.study functions and bnlab.figures.rmt; the last stdout line is --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DISTS = ["gaussian", "uniform", "rademacher", "student_t", "orthogonal"]


def _int_in(low: int, high: int, why: str):  # noqa: ANN202 - an argparse type
    """An argparse type: an integer in [low, high] (argparse turns the ValueError into one sentence)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"{v} is outside [{low}, {high}] ({why})")
        return v

    return parse


SIZE = _int_in(1, 4096, "a dense eigen/SVD problem larger than 4096 takes hours here")
COUNT = _int_in(1, 100_000, "a positive count")
SEED = _int_in(0, 2**32 - 1, "numpy seeds are 32-bit")
DEPTH = _int_in(1, 1_000_000, "a positive number of factors")


def add_parser(sub) -> argparse.ArgumentParser:  # noqa: ANN001 (argparse's private subparsers type)
    p = sub.add_parser("rmt", help="random-matrix theory (E10): spectra, condition numbers, Jacobian spectra")
    kinds = p.add_subparsers(dest="rmt_kind", metavar="KIND", required=True)

    s = kinds.add_parser("spectra", help="Theorem 1 histograms (the paper's figure) and universality (KS)")
    s.add_argument("--n", type=SIZE, default=1000, help="matrix size N (default 1000, as in the paper)")
    s.add_argument(
        "--ms",
        type=_int_in(1, 100, "factors M of a product"),
        nargs="+",
        default=[1, 3, 5],
        help="numbers of factors M",
    )
    s.add_argument("--draws", type=COUNT, default=10, help="independent products per M")
    s.add_argument("--bins", type=_int_in(1, 10_000, "histogram bins"), default=50, help="histogram bins")
    s.add_argument("--dists", nargs="+", default=["gaussian"], choices=DISTS[:4], help="entry laws")
    s.add_argument("--seed", type=SEED, default=0)

    c = kinds.add_parser("condition", help="ln kappa vs depth (exact, naive, Lyapunov) and Lyapunov spectra")
    c.add_argument("--n", type=SIZE, default=64, help="matrix size")
    c.add_argument("--depth", type=DEPTH, default=60, help="largest depth for ln kappa vs depth")
    c.add_argument("--seeds", type=_int_in(1, 1000, "seeds 0..S-1"), default=3, help="seeds 0..S-1")
    c.add_argument("--dists", nargs="+", default=DISTS, choices=DISTS)
    c.add_argument("--lyapunov-depth", type=DEPTH, default=4000, help="factors for the Lyapunov exponents")
    c.add_argument("--normalized-n", type=SIZE, default=256, help="size for the representation-rank table")

    j = kinds.add_parser(
        "jacobian", help="ln kappa of input-output Jacobians of deep linear/ReLU MLPs, +- BN"
    )
    j.add_argument("--width", type=SIZE, default=64)
    j.add_argument(
        "--depths",
        type=_int_in(1, 1000, "layers of an MLP"),
        nargs="+",
        default=[1, 2, 4, 6, 8, 12, 16, 24, 32],
    )
    j.add_argument("--activations", nargs="+", default=["linear", "relu"], choices=["linear", "relu", "tanh"])
    j.add_argument(
        "--batch",
        type=_int_in(1, 65536, "a batch that fits in memory"),
        default=128,
        help="batch size (>= 2 width keeps the batch full rank)",
    )
    j.add_argument("--examples", type=COUNT, default=4, help="per-example Jacobians per network")
    j.add_argument("--mode", default="batch", choices=["batch", "frozen", "running"])
    j.add_argument(
        "--threads",
        type=_int_in(1, 1024, "torch threads"),
        default=1,
        help="torch threads (tiny matrices: 1 is fastest)",
    )
    j.add_argument("--seed", type=SEED, default=0)

    for q in (s, c, j):
        q.add_argument("--out", required=True, help="output directory for csv tables and png figures")
        q.add_argument("--dpi", type=_int_in(10, 1200, "figure resolution"), default=120)
    return p


def _save(fig, path: Path, dpi: int) -> None:  # noqa: ANN001
    fig.savefig(path, dpi=dpi)
    print(f"wrote {path}", file=sys.stderr)


def _table(result, path: Path) -> None:  # noqa: ANN001
    result.table.to_csv(path, index=False)
    print(f"wrote {path}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from bnlab.figures import rmt as figs
    from bnlab.rmt import study

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.rmt_kind == "spectra":
        res = study.spectra(args.n, tuple(args.ms), args.draws, args.bins, tuple(args.dists), args.seed)
        _table(res, out / "spectra.csv")
        ks = res.table[res.table["metric"] == "ks"][["dist", "m", "value"]].rename(columns={"value": "ks"})
        ks.to_csv(out / "ks.csv", index=False)
        for dist in args.dists:
            name = "spectra.png" if dist == args.dists[0] else f"spectra_{dist}.png"
            _save(figs.spectra_figure(res.table, dist), out / name, args.dpi)
        if len(args.dists) > 1:
            _save(figs.universality_figure(res.table), out / "universality.png", args.dpi)
    elif args.rmt_kind == "condition":
        seeds = tuple(range(args.seeds))
        cond = study.condition(args.n, args.depth, tuple(args.dists), seeds, args.lyapunov_depth)
        _table(cond, out / "condition.csv")
        _save(figs.condition_figure(cond.table), out / "condition.png", args.dpi)
        lyap = study.lyapunov(args.n, args.lyapunov_depth, seeds, tuple(args.dists))
        _table(lyap, out / "lyapunov.csv")
        _save(figs.lyapunov_figure(lyap.table), out / "lyapunov.png", args.dpi)
        norm = study.normalized(args.normalized_n, dists=tuple(d for d in args.dists if d != "orthogonal"))
        _table(norm, out / "normalized.csv")
    else:
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(args.threads)
        try:
            res = study.mlp_jacobians(
                args.width,
                tuple(args.depths),
                tuple(args.activations),
                args.batch,
                args.examples,
                args.seed,
                args.mode,
            )
        finally:
            torch.set_num_threads(old)
        _table(res, out / "jacobian.csv")
        _save(figs.jacobian_figure(res.table), out / "jacobian.png", args.dpi)
    print(out)
    return 0
