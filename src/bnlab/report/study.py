"""Collect a runs root into report sections: per experiment its runs, figures (PNG/PDF + base64), our numbers
beside the paper's, the verdict by its rule, environment and the command that regenerates it.

Pure data out (dataclasses); bnlab.report.html and bnlab.report.markdown render them.
"""

from __future__ import annotations

import base64
import logging
import math
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import matplotlib.figure
import matplotlib.style
import pandas as pd

from bnlab.analyses import analysis
from bnlab.analyses.spec import PROFILES, Spec, all_specs, find_specs
from bnlab.errors import UserError
from bnlab.report.rules import Verdict, evaluate
from bnlab.store.files import read_json
from bnlab.store.runset import RunSet, experiments_of

log = logging.getLogger("bnlab.report")
SMOKE_BANNER = "smoke — plumbing check — not comparable with the paper"
ENV_KEYS = (
    "device",
    "device_name",
    "python",
    "torch",
    "numpy",
    "bnlab",
    "cuda",
    "threads",
    "git_sha",
    "git_dirty",
)


def style_path() -> Path:
    """The one matplotlib style of bnlab's figures."""
    return Path(str(resources.files("bnlab.report"))) / "style.mplstyle"


@dataclass
class FigureOut:
    name: str
    description: str
    png: Path | None = None
    pdf: Path | None = None
    data_uri: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    missing_data: bool = False  # error is "no data to draw", not a bug


@dataclass
class Row:
    quantity: str  # the label
    key: str
    ours: float | None
    paper: Any
    source: str


@dataclass
class Section:
    spec: Spec
    profile: str
    runs: pd.DataFrame
    pending: int
    figures: list[FigureOut]
    rows: list[Row]
    verdict: Verdict
    rule_verdict: Verdict | None
    notes: list[str]
    env: list[dict[str, Any]]
    command: str
    paper_figure: str
    claim_source: str
    tests: str
    cost_s: float
    comparable: bool

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"


@dataclass
class Study:
    root: Path
    profile: str
    sections: list[Section]
    command: str
    env: list[dict[str, Any]]
    other_profiles: dict[str, int]
    untagged: int
    untagged_runs: list[Any] = field(default_factory=list)  # report.untagged.UntaggedRun


def resolve_profile(runs: pd.DataFrame, profile: str | None, reproduce: dict[str, Any]) -> str:
    if profile:
        if profile not in PROFILES:
            raise UserError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
        return profile
    if reproduce.get("profile") in PROFILES:
        return str(reproduce["profile"])
    tags = Counter(
        t.split("/", 1)[1] for v in runs.get("meta.experiments", []) for t in experiments_of(v) if "/" in t
    )
    return tags.most_common(1)[0][0] if tags else "smoke"


def _pending(root: Path, tag: str) -> int:
    """Runs planned for `tag` (meta.json written) that have not started (no config.yaml yet)."""
    n = 0
    for meta in root.glob("*/meta.json"):
        if (meta.parent / "config.yaml").exists():
            continue
        if tag in experiments_of((read_json(meta, {}) or {}).get("experiments")):
            n += 1
    return n


def _env(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """The distinct environments (env.json) of `runs`, each with the number of runs that used it."""
    seen: dict[tuple, dict[str, Any]] = {}
    for d in runs.get("run_dir", []):
        env = read_json(Path(str(d)) / "env.json", None)
        if not isinstance(env, dict):
            continue
        key = tuple(str(env.get(k)) for k in ENV_KEYS)
        if key not in seen:
            seen[key] = {k: env.get(k) for k in ENV_KEYS} | {"runs": 0}
        seen[key]["runs"] += 1
    return list(seen.values())


def _finite(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _watermark(fig: matplotlib.figure.Figure) -> None:
    fig.text(
        0.5,
        0.5,
        "SMOKE — not comparable with the paper",
        ha="center",
        va="center",
        rotation=20,
        fontsize=20,
        color="red",
        alpha=0.13,
        zorder=1000,
    )


def render_figure(
    name: str,
    fn: Callable[[RunSet, Spec], matplotlib.figure.Figure],
    runs: RunSet,
    spec: Spec,
    out: Path,
    stem: str,
    smoke: bool,
) -> FigureOut:
    """Draw one figure under the bnlab style into out/<stem>.{png,pdf}; an exception becomes `error`."""
    doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
    fo = FigureOut(name, doc)
    runs.notes = []
    try:
        with matplotlib.style.context(str(style_path())):
            fig = fn(runs, spec)
            if smoke:
                _watermark(fig)
            png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
            fig.savefig(png)
            fig.savefig(pdf)
        fo.png, fo.pdf = png, pdf
        fo.data_uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    except UserError as e:  # nothing to draw (e.g. every run still running): said in the section
        log.warning("figure %s not drawn: %s", name, e)
        fo.error, fo.missing_data = str(e), True
    except Exception as e:  # a broken figure is reported in its section, never crashes the report
        log.warning("figure %s failed", name, exc_info=True)
        fo.error = f"{type(e).__name__}: {e}"
    fo.notes = list(runs.notes)
    return fo


def measure(spec: Spec, runs: RunSet) -> tuple[dict[str, float], list[str]]:
    """quantities() of spec's analysis on `runs`: (values by key, notes). A key the analysis returns that
    the spec does not declare, or a declared key it does not return, is named in the notes."""
    runs.notes = []
    notes: list[str] = []
    try:
        q = dict(analysis(spec).quantities(runs, spec))
    except Exception as e:  # a broken analysis leaves the numbers unmeasured, named in the notes
        log.warning("quantities of %s failed", spec.id, exc_info=True)
        return {}, [f"our numbers could not be computed: {type(e).__name__}: {e}"]
    declared = spec.paper.labels()
    extra = sorted(set(q) - set(declared))
    missing = sorted(set(declared) - set(q))
    if extra:
        notes.append(
            f"the analysis returned undeclared quantities (add them to the spec): {', '.join(extra)}"
        )
    if missing:
        notes.append(f"the analysis did not return: {', '.join(missing)}")
    return q, notes + runs.notes


def _command(root: Path, profile: str, reproduce: dict[str, Any], spec: Spec | None) -> str:
    parts = ["bnlab", "reproduce", "--profile", profile]
    if spec is not None:
        parts += ["--only", spec.id]
    parts += ["--runs", str(root)]
    for o in reproduce.get("overrides", []) or []:
        parts += ["--set", str(o)]
    return " ".join(shlex.quote(p) for p in parts)


def collect_section(
    spec: Spec,
    root_runs: RunSet,
    root: Path,
    profile: str,
    figures_dir: Path,
    reproduce: dict[str, Any],
    stem_prefix: str = "",
) -> Section:
    paper = spec.paper
    prof = spec.profile(profile)
    tag = f"{spec.id}/{profile}"
    runs = root_runs.experiment(spec.id, profile, needs=paper.needs)
    figures: list[FigureOut] = []
    q: dict[str, float] = {}
    notes: list[str] = []
    if len(runs):
        try:
            mod = analysis(spec)
        except UserError as e:
            notes.append(str(e))
        else:
            for name, fn in mod.FIGURES.items():
                stem = f"{stem_prefix}{spec.id}_{name}"
                figures.append(render_figure(name, fn, runs, spec, figures_dir, stem, profile == "smoke"))
            q, notes = measure(spec, runs)
    old = root_runs.superseded(tag)
    if len(old):
        notes.append(
            f"{len(old)} run(s) of an earlier plan of {tag} in this root are left out (meta.json 'superseded'; "
            f"rerun that plan to bring them back): {', '.join(map(str, old['run_id'][:6]))}"
            + (", …" if len(old) > 6 else "")
        )
    rows = [Row(v.label, v.key, _finite(q.get(v.key)), v.paper, v.source) for v in paper.values]
    rule_verdict = None
    if paper.rule is None:
        verdict = Verdict("inconclusive", f"no verdict rule in {spec.id}'s spec (paper.rule)")
    else:
        try:
            rule_verdict = evaluate(paper.rule, q)
        except UserError as e:
            rule_verdict = Verdict("inconclusive", f"the verdict rule is malformed: {e}")
        if prof.skip:
            verdict = Verdict(
                "inconclusive", f"not run under the {profile} profile ({prof.tests or 'skipped'})"
            )
        elif not len(runs):
            verdict = Verdict(
                "inconclusive", f"no runs of {spec.id} under the {profile} profile in this runs root"
            )
        elif profile not in paper.comparable_profiles:
            verdict = Verdict(
                "inconclusive",
                f"the {profile} profile does not test this claim ({prof.tests or 'plumbing'});"
                f" the rule alone gives '{rule_verdict.verdict}': {rule_verdict.reason}",
            )
        else:
            verdict = rule_verdict
    return Section(
        spec=spec,
        profile=profile,
        runs=runs.runs,
        pending=_pending(root, tag),
        figures=figures,
        rows=rows,
        verdict=verdict,
        rule_verdict=rule_verdict,
        notes=notes,
        env=_env(runs.runs),
        command=_command(root, profile, reproduce, spec),
        paper_figure=paper.figure,
        claim_source=paper.claim_source,
        tests=prof.tests,
        cost_s=prof.cost_s,
        comparable=profile in paper.comparable_profiles,
    )


def collect(
    root: str | Path,
    figures_dir: Path,
    profile: str | None = None,
    command: str | None = None,
    stem_prefix: str = "",
    only: list[str] | None = None,
) -> Study:
    """Every experiment spec's section (or those `only` names) for the runs under `root` (figures written
    into `figures_dir`)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"runs root {str(root)!r} does not exist; pass the folder given to --runs")
    figures_dir.mkdir(parents=True, exist_ok=True)
    root_runs = RunSet.open(root)
    runs = root_runs.runs
    reproduce = read_json(root / "reproduce.json", {}) or {}
    prof = resolve_profile(runs, profile, reproduce)
    cmd = command or reproduce.get("command") or _command(root, prof, reproduce, None)
    sections = [
        collect_section(s, root_runs, root, prof, figures_dir, reproduce, stem_prefix)
        for s in (find_specs(only) if only else all_specs())
    ]
    other: Counter[str] = Counter()
    untagged = 0
    for v in runs.get("meta.experiments", pd.Series(dtype=object)):
        tags = experiments_of(v)
        if not tags:
            untagged += 1
        for t in tags:
            if "/" in t and t.split("/", 1)[1] != prof:
                other[t.split("/", 1)[1]] += 1
    if "meta.experiments" not in runs.columns:
        untagged = len(runs)
    from bnlab.report.untagged import collect_untagged  # runs of no experiment: their own section

    return Study(
        root=root,
        profile=prof,
        sections=sections,
        command=str(cmd),
        env=_env(runs),
        other_profiles=dict(other),
        untagged=untagged,
        untagged_runs=collect_untagged(root_runs, figures_dir, stem_prefix),
    )
