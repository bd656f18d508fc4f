"""docs/experiments.md, generated from the specs (claims, costs per profile, figures) and paper_values.yaml
(the paper's figure, verdict rule), plus each experiment's formula and how to point it at your own model
or data. `python -m bnlab.report.docs > docs/experiments.md`; a test keeps the committed file in sync.
"""

from __future__ import annotations

import json
from typing import Any

from bnlab.analyses.spec import PROFILES, Spec, all_specs
from bnlab.report.study import paper_values

FORMULA = {
    "E1": "Train to a plateau for each (norm, lr); compare final test accuracy, mean ± std over seeds. "
    "Divergence: minibatch loss > 10³ (relative to the start).",
    "E2": "ℓ(x) = (1/N) Σᵢ ℓᵢ(x); C = Eᵢ‖∇ℓᵢ − ∇ℓ‖²; E‖α∇ℓ − α∇_SGD‖² ≤ (α²/|B|)·C "
    "(exactly (N−b)/(b(N−1))·C·α² without replacement). Full gradient = E[g_B] over many minibatches of the "
    "same size; the bound holds for no-BN, or frozen/eval statistics only.",
    "E3": "Histogram of the entries of ∂L/∂K of the 3×3 kernel of paper layer 55 at initialization, pooled "
    "over minibatches (or per-example gradients in `coupled` mode).",
    "E4": "r(η) = L_B(θ_t − η g_t) / L_B(θ_t), g_t = ∇L_B(θ_t), same minibatch, η log-spaced in [1e-5, 1].",
    "E5": "Δθ = the update that made the unnormalized net diverge; at θ + sΔθ, s ∈ [0, 1], every channel's "
    "mean and variance over (batch, x, y) at paper layers 8, 44, 80.",
    "E6": "log₁₀|channel mean| and log₁₀ channel std at block outputs (layers 6, 18, …, 102, 110), averaged "
    "over channels (error bar: spread over channels), at initialization.",
    "E7": "∂L/∂z_{n,k} = (softmax(z)_{n,k} − 1[y_n = k]) / B for 128 images × 10 classes; top-class share = "
    "largest fraction of images predicted as one class; input dependence = Σ_k Var_n p_nk / Σ_k mean_n p_nk².",
    "E8": "∂L/∂K_{o,i,x',y'} = Σ_b Σ_{x,y} d, d = ∂L/∂O_{b,o,x,y} · I_{b,i,x+x',y+y'}; ratio = Σ|d| / |Σd| "
    "summed over space, over the batch, and over both (Σ|d| via one extra conv weight-gradient on |I|, |g|).",
    "E9": "Singular values σ_i of the conv gradient reshaped to out × (in·k·k) and of the channel "
    "activations; normalized spectrum σ_i² / Σσ²; top-1 share = σ_1² / Σσ².",
    "E9b": "Per-example gradients (coupled mode): variance across a layer's entries vs variance across the "
    "minibatch, per layer, BN vs no BN.",
    "E10": "Theorem 1: squared singular values of a product of M Gaussian N×N matrices (variance 1/N) have "
    "density x = sin^{M+1}((M+1)φ)/(sin φ · sin^M(Mφ)), ρ = sin²φ · sin^{M−1}(Mφ)/(π sin^M((M+1)φ)); "
    "Lyapunov exponents λ_k = ½[ln(2/N) + ψ((N−k+1)/2)], so ln κ ≈ depth·(λ₁ − λ_N); products accumulated by QR.",
    "E11a": "Largest stable lr by log-bisection: a trial (lr, seed) is K steps at constant lr; stable = no "
    "divergence and last-10 loss below the first; censored when the search hits its range end.",
    "E11b": "The largest stable lr and accuracy with one norm layer (before pooling or right before the FC) "
    "vs BN everywhere and no norm; share of BN's gain = (x_single − x_none) / (x_all − x_none), x = log₁₀ lr.",
    "E12a": "The largest stable lr (as E11a) per normalization layer: batch, group, layer, instance, "
    "batch renorm, ghost batch, none.",
    "E12b": "Test accuracy of the unnormalized net at lr 1e-4 against the noise scale α / ((1 − m)|B|) "
    "(Smith & Le) for several |B|, beside BN's (E1, lr 0.1, |B| = 128).",
    "E12c": "Output bias b_k set at init so the mean softmax over a batch is uniform; top-class share and the "
    "largest stable lr with and without it.",
    "E12d": "The largest stable lr (as E11a) of the unnormalized net per initialization: Kaiming, Xavier, "
    "orthogonal, delta-orthogonal, Fixup, SkipInit.",
    "E12e": "Mean gradient over minibatches: input-independent fraction ‖E g_B‖² / E‖g_B‖²; radial part "
    "|⟨g, w⟩|/‖w‖ vs tangential part per weight; top Hessian eigenvalue λ_max (power iteration / Lanczos) "
    "with lr·λ_max against SGD's stability limit 2(1+β).",
}

TRAIN_LIKE = {"E1", "E11b", "E12b"}
MAX_LR = {"E11a", "E11b", "E12a", "E12c", "E12d"}


def _own(spec: Spec) -> str:
    probes = sorted({str(p.get("name")) for p in spec.base.get("probes", []) if isinstance(p, dict)})
    task = spec.base.get("task", "train")
    lines = [
        f"- The whole experiment on your data: `bnlab sweep {spec.id} --profile cpu --runs runs "
        "--set data.name=arrays --set data.root=my_data.npz` (train_x, train_y, test_x, test_y), or "
        "`data.name=cifar100`; `bnlab report runs` then reports it against the paper.",
        "- A built-in model at another size: `--set model.name=vgg_cifar`, `--set model.depth=56`, "
        "`--set model.norm=group` (the same `--set` works with `bnlab reproduce --only`).",
    ]
    if probes:
        calls = "; ".join(f'`PROBES.get("{p}")(model, x, y)`' for p in probes)
        lines.append(
            f"- Any `nn.Module` (no training needed): {calls} returns a ProbeResult (table + arrays); "
            "layers are found by type, block outputs from `block_outputs()` or `modules=` "
            "(see examples/own_model.py)."
        )
    if task == "rmt":
        lines.append(
            "- Other sizes: `bnlab rmt spectra --n 500 --ms 1 2 4 --out DIR`, `bnlab rmt condition`, "
            "`bnlab rmt jacobian --width 128` (bnlab.rmt.study in Python)."
        )
    if spec.id in MAX_LR:
        lines.append(
            "- The bisection itself: `--set task_options.steps=300 --set task_options.seeds=[0,1]` "
            "(each run's summary.json: max_stable_lr, min_unstable_lr, censored)."
        )
    if spec.id in TRAIN_LIKE:
        lines.append(
            "- One configuration by itself: `bnlab train --set optim.lr=0.01 --set model.norm=none ...`; "
            "curves come from metrics.jsonl."
        )
    return "\n".join(lines)


def _rule(rule: dict[str, Any]) -> str:
    return "`" + json.dumps(rule, ensure_ascii=False) + "`"


def experiments_markdown() -> str:
    pv = paper_values()
    out = [
        "# Experiments",
        "",
        "<!-- generated by `python -m bnlab.report.docs > docs/experiments.md`; edit the specs "
        "(experiments/*.yaml), src/bnlab/report/paper_values.yaml or src/bnlab/report/docs.py instead -->",
        "",
        "Every experiment of “Understanding Batch Normalization” (Bjorck et al., NeurIPS 2018) and the "
        "reviewers' follow-ups is one spec in `experiments/`. Run them all with "
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
        entry = pv["experiments"].get(s.id, {})
        comparable = entry.get("comparable_profiles", pv.get("comparable_profiles", []))
        out += [
            f"## {s.id}",
            "",
            f"**{s.name}** — {s.claim}",
            "",
            f"- Paper: {entry.get('paper_figure', s.paper)} (claim source: {entry.get('claim_source', '?')})",
            f"- Formula: {FORMULA.get(s.id, '—')}",
            f"- Figures: {', '.join(f'`{f}`' for f in s.figures)} (bnlab.figures.report_figures.FIGURES)",
            f"- Verdict rule (paper_values.yaml): {_rule(entry.get('rule', {}))}; comparable under: "
            f"{', '.join(comparable)}",
            "",
            "Run it:",
            "",
            "```bash",
            f"bnlab reproduce --profile cpu --only {s.id} --runs runs   # then: bnlab report runs --only {s.id}",
            f"bnlab sweep {s.id} --profile cpu --runs runs                # the runs only, no report",
            "```",
            "",
            "```python",
            "from bnlab.experiments.reproduce import reproduce",
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
        for p in PROFILES:
            ps = s.profile(p)
            out.append(f"| {p} | {'skip' if ps.skip else f'{ps.cost_s:,.0f}'} | {ps.tests or '—'} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    sys.stdout.write(experiments_markdown())
