"""docs/experiments.md, generated from the experiments themselves: each spec (claim, costs per profile, and
its paper block: figure, formula, values by key, verdict rule by key, needs) and each analysis module's
FIGURES, plus how to point the experiment at your own model or data (from the spec's task and probes).
`python -m bnlab.report.docs > docs/experiments.md`; a test keeps the committed file in sync.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bnlab.analyses import analysis, module_name
from bnlab.analyses.spec import PROFILES, Spec, all_specs
from bnlab.errors import UserError
from bnlab.probes import PROBE_KIND

# how each probe kind is called on a user's own model (bnlab.probes)
PROBE_CALL = {"batch": "(model, x, y)", "data": "(model, batches, ctx=ctx)"}
BOUND = {"value_at_least": "≥", "ratio_at_least": "≥", "value_at_most": "≤", "abs_at_most": "≤"}


def tasks(spec: Spec) -> set[str]:
    """The run kinds of `spec`: its base `task` and any `task` grid axis (under every profile)."""
    out = {str(spec.base.get("task", "train"))}
    for grid in [spec.grid, *(p.grid for p in spec.profiles.values())]:
        out |= {str(t) for t in grid.get("task", [])}
    return out


def probes(spec: Spec) -> list[str]:
    """The probes the spec's base config attaches to its runs (by registry name)."""
    return sorted({str(p["name"]) for p in spec.base.get("probes", []) or [] if isinstance(p, dict)})


def _own(spec: Spec) -> str:
    names = probes(spec)
    kinds = tasks(spec)
    lines = (
        []
        if kinds == {"rmt"}
        else [  # random matrices: no model, no data
            f"- The whole experiment on your data: `bnlab sweep {spec.id} --profile cpu --runs runs "
            "--set data.name=arrays --set data.root=my_data.npz` (train_x, train_y, test_x, test_y), or "
            "`data.name=cifar100`; `bnlab report runs` then reports it against the paper.",
            "- A built-in model at another size: `--set model.name=vgg_cifar`, `--set model.depth=56`, "
            "`--set model.norm=group` (the same `--set` works with `bnlab reproduce --only`).",
        ]
    )
    if names:
        calls = "; ".join(
            f"`from bnlab.probes import {p}; {p}{PROBE_CALL[PROBE_KIND.get(p, 'batch')]}`" for p in names
        )
        lines.append(
            f"- Any `nn.Module` (no training needed): {calls} returns a ProbeResult (table + arrays); "
            "layers are found by type, block outputs from `block_outputs()` or `modules=` "
            "(see examples/own_model.py)."
        )
    if "rmt" in kinds:
        lines.append(
            "- Other sizes: `bnlab rmt spectra --n 500 --ms 1 2 4 --out DIR`, `bnlab rmt condition`, "
            "`bnlab rmt jacobian --width 128` (bnlab.rmt.study in Python)."
        )
    if "max_lr" in kinds:
        lines.append(
            "- The bisection itself: `--set task_options.steps=300 --set task_options.seeds=[0,1]` "
            "(each run's summary.json: max_stable_lr, min_unstable_lr, censored)."
        )
    if "train" in kinds and not names:
        lines.append(
            "- One configuration by itself: `bnlab train --set optim.lr=0.01 --set model.norm=none ...`; "
            "curves come from metrics.jsonl."
        )
    return "\n".join(lines)


def rule_text(rule: Mapping[str, Any] | None) -> str:
    """A verdict rule in words, quantities by key: `a` ≥ 5 (partly ≥ 1); unknown kinds as JSON."""
    if not rule:
        return "none"
    kind = rule.get("kind")
    partly = rule.get("partly")
    if kind in BOUND:
        if kind == "ratio_at_least" and "ours" not in rule:
            what = f"`{rule.get('numerator')}` / `{rule.get('denominator')}`"
        else:
            what = f"|`{rule.get('ours')}`|" if kind == "abs_at_most" else f"`{rule.get('ours')}`"
        text = f"{what} {BOUND[str(kind)]} {rule.get('threshold')}"
        return text + (f" (partly {BOUND[str(kind)]} {partly})" if partly is not None else "")
    if kind == "value_within":
        text = f"{rule.get('low')} ≤ `{rule.get('ours')}` ≤ {rule.get('high')}"
        if rule.get("partly_low") is not None or rule.get("partly_high") is not None:
            text += f" (partly {rule.get('partly_low')} … {rule.get('partly_high')})"
        return text
    if kind in ("all_of", "any_of"):
        parts = "; ".join(rule_text(r) for r in rule.get("rules", []) or [])
        return f"{'all' if kind == 'all_of' else 'any'} of: {parts}"
    if kind == "none":
        return f"none, always inconclusive ({rule.get('reason', 'a question, not a claim')})"
    return "`" + json.dumps(dict(rule), ensure_ascii=False) + "`"


def figures(spec: Spec) -> list[str]:
    """`name` — caption title (the figure function's docstring's first line) of each of the analysis's FIGURES."""
    try:
        figs = analysis(spec).FIGURES
    except UserError:
        return ["— (no analysis module yet)"]
    out = []
    for name, fn in figs.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        out.append(f"`{name}` — {doc[0]}" if doc else f"`{name}`")
    return out


def _cell(v: Any) -> str:
    return "—" if v is None else str(v).replace("|", "\\|")


def section(s: Spec) -> list[str]:
    p = s.paper
    out = [
        f"## {s.id}",
        "",
        f"**{s.name}** — {s.claim}",
        "",
        f"- Paper: {p.figure or '—'} (claim source: {p.claim_source or '?'})",
        f"- Formula: {p.formula or '—'}",
        f"- Verdict rule: {rule_text(p.rule)}; comparable under: {', '.join(p.comparable_profiles)}",
    ]
    if p.needs:
        out.append(f"- Needs the runs of: {', '.join(f'[{n}](#{n.lower()})' for n in p.needs)}")
    out.append(f"- Figures (bnlab.analyses.{module_name(s)}.FIGURES):")
    out += [f"  - {f}" for f in figures(s)]
    if p.values:
        out += ["", "| key | quantity | paper | source |", "|---|---|---|---|"]
        out += [f"| `{v.key}` | {_cell(v.label)} | {_cell(v.paper)} | {_cell(v.source)} |" for v in p.values]
    out += [
        "",
        "Run it:",
        "",
        "```bash",
        f"bnlab reproduce --profile cpu --only {s.id} --runs runs   # then: bnlab report runs --only {s.id}",
        f"bnlab sweep {s.id} --profile cpu --runs runs                # the runs only, no report",
        "```",
        "",
        "```python",
        "from bnlab.sweeps.reproduce import reproduce",
        f'html = reproduce("cpu", ["{s.id}"], "runs")  # runs + report; returns report.html',
        "```",
        "",
        "Your own model or data:",
        "",
        _own(s),
        "",
        "| profile | cost (s) | what it tests |",
        "|---|---:|---|",
    ]
    for name in PROFILES:
        ps = s.profile(name)
        out.append(f"| {name} | {'skip' if ps.skip else f'{ps.cost_s:,.0f}'} | {_cell(ps.tests or None)} |")
    return out + [""]


def experiments_markdown() -> str:
    out = [
        "# Experiments",
        "",
        "<!-- generated by `python -m bnlab.report.docs > docs/experiments.md`; edit the specs "
        "(experiments/*.yaml), the analyses (src/bnlab/analyses/) or src/bnlab/report/docs.py instead -->",
        "",
        "Every experiment of “Understanding Batch Normalization” (Bjorck et al., NeurIPS 2018) and the "
        "reviewers' follow-ups is one spec in `experiments/` (its grid, profiles and paper block: the "
        "paper's values by key and the verdict rule) beside one analysis module in `src/bnlab/analyses/` "
        "(our numbers by the same keys, its figures). Run them all with "
        "`bnlab reproduce --profile P --runs runs`, then read `runs/report/report.html` (rebuild it with "
        "`bnlab report runs`; compare two runs roots with `bnlab compare RUNS_A RUNS_B`).",
        "",
        "Profiles: smoke (2 CPU cores, plumbing only), cpu (2 cores, the claims CPU can carry), fast (one GPU), "
        "paper (the paper's settings). Costs are estimated wall seconds on the profile's reference machine; "
        "a verdict counts only under the profiles listed as comparable.",
        "",
        "| id | name | " + " | ".join(f"{p} (s)" for p in PROFILES) + " |",
        "|---|---|" + "---:|" * len(PROFILES),
    ]
    specs = list(all_specs())
    for s in specs:
        costs = " | ".join("skip" if s.profile(p).skip else f"{s.profile(p).cost_s:,.0f}" for p in PROFILES)
        out.append(f"| [{s.id}](#{s.id.lower()}) | {s.name} | {costs} |")
    out.append("")
    for s in specs:
        out += section(s)
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    sys.stdout.write(experiments_markdown())
