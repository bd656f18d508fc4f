"""RunSet: the one reader of a runs root. Analyses and the report read runs only through it.

    runs = RunSet.open("runs")                 # every run under the root
    e1 = runs.experiment("E1", "cpu")          # the runs tagged "E1/cpu" in their meta.json
    e1.runs                                    # one row per run: run_id, run_dir, state, step, reason,
                                               # dotted config columns, summary.*, meta.*
    e1.probe("sgd_noise")                      # probe rows of those runs (+ run_id, label)
    e1.arrays(row, "gradient_histogram")       # probe arrays of one run at one step (step keys decoded)
    e1.metrics(row)                            # metrics.jsonl of one run
    e12b.of("E1")                              # another experiment's runs (the spec must declare `needs`)

Whatever a reader leaves out (a failed run, an unreadable file, non-finite values) it says with `note()`;
the report prints the notes under the figure or table they belong to, so nothing disappears silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bnlab.store import load_runs
from bnlab.store.files import read_jsonl
from bnlab.store.probe_files import read_probe_arrays

OK_STATES = ("complete", "diverged")  # terminal states that are results
# config columns that tell the runs of one experiment apart, in label order
LABEL_KEYS = (
    "model.norm",
    "model.placement",
    "optim.lr",
    "model.init.conv",
    "model.fixup",
    "model.skipinit",
    "model.block",
    "model.init.balanced_output_bias",
    "model.depth",
    "optim.batch_size",
    "task",
)
NORM_NAMES = {"batch": "BN", "none": "no BN"}
# probe tables written before the statistics vocabulary was unified (column norm_mode)
_LEGACY_NORM_MODE = {"batch_stats": "batch", "running_stats": "running", "none": "none"}


def _fmt(key: str, v: object) -> str:
    if key == "model.norm":
        return NORM_NAMES.get(str(v), str(v))
    if key == "optim.lr":
        return f"lr {float(v):g}"  # type: ignore[arg-type]
    if key == "model.block":
        return "pre-act" if v == "pre" else "post-act"
    if key == "model.placement":
        return f"norm: {v}"
    if key == "model.init.balanced_output_bias":
        return "balanced bias" if bool(v) else "default bias"
    if key == "model.depth":
        return f"depth {v}"
    if key == "optim.batch_size":
        return f"|B| {v}"
    if key in ("model.fixup", "model.skipinit"):
        return key.split(".")[-1] if bool(v) else ""
    if key == "model.init.conv":
        return f"{v} init"
    return str(v)


def experiments_of(value: object) -> list[str]:
    """The experiment tags ("E1/cpu") of a run's meta.experiments value."""
    return [str(v) for v in value] if isinstance(value, list) else []


def split_batches(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Split multi-batch probe arrays ("b<i>/<key>", written by bnlab.probes.runner) into one dict per
    batch; single-batch arrays pass as one."""
    if not any(k.startswith("b") and "/" in k and k.split("/", 1)[0][1:].isdigit() for k in arrays):
        return [arrays]
    out: dict[int, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        head, rest = k.split("/", 1)
        out.setdefault(int(head[1:]), {})[rest] = v
    return [out[i] for i in sorted(out)]


class RunSet:
    """Runs of a root (or of one experiment in it), with lazy, cached readers of their files.

    runs: one row per run (see the module docstring). root: the RunSet of the whole root, for `of()`.
    needs: the experiment ids `of()` may read (the spec's `needs`); None allows any."""

    def __init__(
        self,
        runs: pd.DataFrame,
        root: RunSet | None = None,
        *,
        tag: str | None = None,
        needs: Sequence[str] | None = None,
    ) -> None:
        self.runs = (
            runs.reset_index(drop=True)
            if len(runs)
            else pd.DataFrame(columns=["run_id", "run_dir", "state", "step", "reason"])
        )
        self.root = root
        self.tag = tag  # "E1/cpu" for an experiment's runs
        self.needs = None if needs is None else tuple(needs)
        self.notes: list[str] = []
        self.skipped: list[str] = []  # runs of the root that load_runs left out, with the reason
        self._tables: dict[tuple[str, str], pd.DataFrame] = (
            root._tables if root is not None else {}
        )  # shared cache: one read of each file per report

    @classmethod
    def open(cls, root: str | Path) -> RunSet:
        """Every run under `root`; runs left out (edited config, unreadable config) are in `skipped`."""
        runs = load_runs(root)
        rs = cls(runs)
        rs.skipped = list(runs.attrs.get("skipped", []))
        return rs

    @property
    def profile(self) -> str | None:
        """The profile of an experiment's runs ("E1/cpu" -> "cpu")."""
        return self.tag.split("/", 1)[1] if self.tag and "/" in self.tag else None

    def __len__(self) -> int:
        return len(self.runs)

    # --- selection -------------------------------------------------------------------------------
    def tagged(self, tag: str) -> pd.DataFrame:
        r = self.runs
        if not len(r) or "meta.experiments" not in r.columns:
            return r.iloc[0:0]
        return r[r["meta.experiments"].apply(lambda v: tag in experiments_of(v))]

    def superseded(self, tag: str) -> pd.DataFrame:
        """Runs that belonged to `tag` under an earlier plan (meta.json `superseded`; see
        bnlab.sweeps.local.retire_membership): kept on disk, not part of the experiment."""
        r = self.runs
        if not len(r) or "meta.superseded" not in r.columns:
            return r.iloc[0:0]
        return r[r["meta.superseded"].apply(lambda v: tag in experiments_of(v))]

    def experiment(self, exp_id: str, profile: str, needs: Sequence[str] = ()) -> RunSet:
        """The runs tagged `<exp_id>/<profile>`; `needs`: other experiments this one may read with of()."""
        base = self.root or self
        tag = f"{exp_id}/{profile}"
        return RunSet(base.tagged(tag), base, tag=tag, needs=needs)

    def of(self, exp_id: str) -> RunSet:
        """Another experiment's runs under the same profile (declared in the spec's `needs`)."""
        if self.needs is not None and exp_id not in self.needs:
            raise KeyError(
                f"{self.tag}: reads the runs of {exp_id} without declaring it; add `needs: [{exp_id}]` "
                "to the spec's paper block"
            )
        view = (self.root or self).experiment(exp_id, self.profile or "")
        view.notes = self.notes  # one caption
        return view

    def where(self, **eq: object) -> pd.DataFrame:
        """Rows whose dotted config columns (given with "__" for ".") equal the values (floats compared
        closely): `runs.where(model__norm="none", optim__lr=0.1)`."""
        out = self.runs
        for key, want in eq.items():
            col = key.replace("__", ".")
            if col not in out.columns:
                return out.iloc[0:0]
            if isinstance(want, float):
                out = out[np.isclose(pd.to_numeric(out[col], errors="coerce").astype(float), want)]
            else:
                out = out[out[col] == want]
        return out

    # --- notes (the caption of what is being drawn or measured) --------------------------------------
    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # --- labels ----------------------------------------------------------------------------------
    def label_keys(self, runs: pd.DataFrame | None = None, exclude: Sequence[str] = ()) -> list[str]:
        r = self.runs if runs is None else runs
        return [
            k
            for k in LABEL_KEYS
            if k in r.columns and k not in exclude and r[k].astype(str).nunique(dropna=False) > 1
        ]

    def label(self, row: pd.Series, keys: Sequence[str] | None = None) -> str:
        keys = self.label_keys() if keys is None else keys
        text = ", ".join(p for p in (_fmt(k, row[k]) for k in keys if k in row.index) if p)
        return text or str(row.get("run_id", "run"))

    def labels(self, runs: pd.DataFrame | None = None, exclude: Sequence[str] = ()) -> pd.Series:
        r = self.runs if runs is None else runs
        keys = self.label_keys(r, exclude)
        return r.apply(lambda row: self.label(row, keys), axis=1) if len(r) else pd.Series(dtype=str)

    # --- filters that say what they drop -----------------------------------------------------------
    def usable(self, runs: pd.DataFrame | None = None, states: Iterable[str] = OK_STATES) -> pd.DataFrame:
        """Runs in one of `states`; the others (failed, running, never finished) are named in a note."""
        r = self.runs if runs is None else runs
        if not len(r):
            return r
        ok = r["state"].isin(list(states))
        for _, row in r[~ok].iterrows():
            why = f": {row['reason']}" if isinstance(row.get("reason"), str) and row.get("reason") else ""
            self.note(f"left out run {row['run_id']} ({self.label(row)}): state {row['state']}{why}")
        return r[ok]

    def finite(self, df: pd.DataFrame, column: str, what: str, positive: bool = False) -> pd.DataFrame:
        """Rows of `df` whose `column` is finite (and > 0 for a log axis); the rest are counted in a note."""
        if not len(df):
            return df
        v = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(v) & ((v > 0) if positive else True)
        if (~ok).any():
            kind = "non-finite or non-positive (log axis)" if positive else "non-finite"
            self.note(f"{what}: {int((~ok).sum())} of {len(v)} values {kind} left out")
        return df[ok]

    # --- readers ---------------------------------------------------------------------------------
    def probe(self, name: str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows of probes/<name>.jsonl of `runs` (default: all of this set's), with run_id and label columns.
        The statistics mode is the column `norm_stats` (batch | frozen | running | none), also for runs
        written before it had that name."""
        r = self.runs if runs is None else runs
        frames = []
        labels = self.labels(r)
        for i, (_, row) in enumerate(r.iterrows()):
            key = (str(row["run_dir"]), name)
            if key not in self._tables:
                rows = read_jsonl(Path(str(row["run_dir"])) / "probes" / f"{name}.jsonl")[0]
                self._tables[key] = pd.DataFrame(rows)
            t = self._tables[key]
            if len(t):
                t = t.copy()
                t.insert(0, "run_id", row["run_id"])
                t["label"] = labels.iloc[i]
                frames.append(t)
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True)
        if "paper_layer" in df.columns:
            df["paper_layer"] = pd.to_numeric(df["paper_layer"], errors="coerce").astype("Int64")
        if "norm_mode" in df.columns:
            legacy = df["norm_mode"].map(lambda v: _LEGACY_NORM_MODE.get(v, v))
            df["norm_stats"] = df["norm_stats"].fillna(legacy) if "norm_stats" in df.columns else legacy
            df = df.drop(columns="norm_mode")
        return df

    def arrays(self, row: pd.Series, name: str, step: int | None = None) -> dict[str, np.ndarray]:
        """The arrays of probe `name` of one run at `step` (default: the first step stored), keys without
        the step."""
        by_step = self.array_steps(row, name)
        if step is None and by_step:
            step = min(by_step)
        return by_step.get(step, {}) if step is not None else {}

    def array_steps(self, row: pd.Series, name: str) -> dict[int, dict[str, np.ndarray]]:
        """The arrays of probe `name` of one run, split by the step they were measured at (both layouts of
        bnlab.store.probe_files: one file per step, or the single probes/<name>.npz of older runs)."""
        by_step, notes = read_probe_arrays(Path(str(row["run_dir"])) / "probes", name)
        for n in notes:
            self.note(f"run {row['run_id']}: {n}")
        return by_step

    def metrics(self, row: pd.Series) -> pd.DataFrame:
        return pd.DataFrame(read_jsonl(Path(str(row["run_dir"])) / "metrics.jsonl")[0])
