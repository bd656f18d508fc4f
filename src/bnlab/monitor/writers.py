"""Where a Monitor's measurements go: every writer has `probe(step, name, result)`, `scalars(step, values)`
and `close()`. The run directory is always written; TensorBoard (the `tb` extra) and Weights & Biases
(the `wandb` extra) are optional.

    RunDirWriter       probes/<name>.jsonl, probes/<name>.step<k>.npz and metrics.jsonl of the standard
                       run directory
    TensorBoardWriter  <run_dir>/tb: gradient_histogram as histograms (one per layer), every other finite
                       table row as a scalar "<probe>/<metric>/<layer>[/<key>]" (layer_stats norms and
                       ratios, kernel_alignment ratios, ...)
    WandbWriter        the same tags through wandb.log (histograms as wandb.Histogram); mode "offline" by
                       default (`wandb sync <run_dir>/wandb/offline-run-*` uploads it later)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from bnlab.errors import UserError
from bnlab.probes.result import ProbeResult
from bnlab.store.rundir import ProbeWriter, RunDir

KEY_SKIP = {"probe", "layer", "paper_layer", "metric", "value", "step"}


class Writer(Protocol):
    def probe(self, step: int, name: str, result: ProbeResult) -> None: ...

    def scalars(self, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def scalar_tags(name: str, result: ProbeResult) -> dict[str, float]:
    """Every finite row of a probe table as "<probe>/<metric>/<layer>[/<key column value>...]" -> value."""
    out: dict[str, float] = {}
    table = result.table
    keys = [c for c in table.columns if c not in KEY_SKIP and not pd.api.types.is_numeric_dtype(table[c])]
    for r in table.to_dict(orient="records"):
        try:
            v = float(r["value"])
        except (TypeError, ValueError):
            continue
        if not math.isfinite(v):
            continue
        parts = [name, str(r["metric"]), str(r["layer"])]
        parts += [str(r[k]) for k in keys if r.get(k) is not None and str(r[k]) not in ("", "nan", "<NA>")]
        out["/".join(parts)] = v
    return out


def layer_histograms(result: ProbeResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (counts, edges)} from a gradient_histogram result's linear-bin arrays."""
    out = {}
    for k, counts in result.arrays.items():
        if k.endswith("/hist_counts"):
            layer = k[: -len("/hist_counts")]
            edges = result.arrays.get(f"{layer}/hist_edges")
            if edges is not None and len(edges) == len(counts) + 1:
                out[layer] = (np.asarray(counts, dtype=float), np.asarray(edges, dtype=float))
    return out


class RunDirWriter:
    """probes/<name>.jsonl rows and per-step probes/<name>.step<k>.npz arrays through store.ProbeWriter:
    each measured step appends its rows and writes its own arrays' file; nothing written before is read
    back or rewritten."""

    def __init__(self, run_dir: Path) -> None:
        self.rd = RunDir(run_dir)
        self.writer = ProbeWriter(run_dir)

    def probe(self, step: int, name: str, result: ProbeResult) -> None:
        self.writer.write(name, result, step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.rd.append_metric({"step": int(step), "epoch": None, "split": "train", "acc": None, **values})

    def close(self) -> None: ...


class TensorBoardWriter:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise UserError("the TensorBoard writer needs the tb extra: pip install 'bnlab[tb]'") from e
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def probe(self, step: int, name: str, result: ProbeResult) -> None:
        if name == "gradient_histogram":
            for layer, (counts, edges) in layer_histograms(result).items():
                centers = (edges[:-1] + edges[1:]) / 2  # sums from bin centres (TensorBoard shows bins)
                self.writer.add_histogram_raw(
                    f"gradient_histogram/{layer}",
                    min=float(edges[0]),
                    max=float(edges[-1]),
                    num=int(counts.sum()),
                    sum=float((counts * centers).sum()),
                    sum_squares=float((counts * centers**2).sum()),
                    bucket_limits=edges[1:].tolist(),
                    bucket_counts=counts.tolist(),
                    global_step=step,
                )
        for tag, v in scalar_tags(name, result).items():
            self.writer.add_scalar(tag, v, step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            if isinstance(v, int | float) and math.isfinite(v):
                self.writer.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


class WandbWriter:
    def __init__(
        self,
        run_dir: Path,
        run_id: str,
        config: dict[str, Any],
        project: str = "bnlab",
        mode: str = "offline",
    ) -> None:
        try:
            import wandb
        except ImportError as e:
            raise UserError("the W&B writer needs the wandb extra: pip install 'bnlab[wandb]'") from e
        self.wandb = wandb
        self.run = wandb.init(
            project=project,
            name=run_id,
            id=run_id,
            dir=str(run_dir),
            mode=mode,
            config=config,
            reinit="create_new",
        )

    def probe(self, step: int, name: str, result: ProbeResult) -> None:
        logged: dict[str, Any] = dict(scalar_tags(name, result))
        if name == "gradient_histogram":
            for layer, (counts, edges) in layer_histograms(result).items():
                logged[f"gradient_histogram/{layer}"] = self.wandb.Histogram(np_histogram=(counts, edges))
        self.run.log(logged, step=step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


def make_writers(names: list[Any], run_dir: Path, run_id: str, config: dict[str, Any]) -> list[Writer]:
    """The run directory's writer, then each of `names`: a Writer, "tensorboard" or "wandb"."""
    out: list[Writer] = [RunDirWriter(run_dir)]
    for w in names:
        if w == "tensorboard":
            out.append(TensorBoardWriter(run_dir / "tb"))
        elif w == "wandb":
            out.append(WandbWriter(run_dir, run_id, config))
        elif isinstance(w, str):
            raise UserError(f"unknown writer {w!r}; choose tensorboard or wandb, or pass a Writer object")
        else:
            out.append(w)
    return out
