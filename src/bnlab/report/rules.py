"""Verdict rules: data (each spec's `paper.rule`) interpreted by a small engine, never typed-in verdicts.

A rule is a mapping with a `kind` (a name in RULES) and the kind's fields; `evaluate(rule, values)` returns
a Verdict (reproduced | partly | not | inconclusive) with the reason in words. `values` maps quantity
keys (what the experiment's analysis returns; the spec declares them) to floats; a missing or non-finite quantity makes the verdict
"inconclusive" and the reason names it.

    {kind: value_at_least, ours: Q, threshold: t, partly: p}   Q >= t: reproduced; Q >= p: partly; else not
    {kind: value_at_most,  ours: Q, threshold: t, partly: p}   Q <= t: reproduced; Q <= p: partly; else not
    {kind: ratio_at_least, ours: Q | numerator: A, denominator: B, threshold: t, partly: p}
                                                               as value_at_least, on a positive ratio
    {kind: abs_at_most,    ours: Q, threshold: t, partly: p}   |Q| <= t: reproduced; |Q| <= p: partly
    {kind: value_within,   ours: Q, low, high, partly_low, partly_high}
    {kind: at_least_se, ours: Q, se: S, threshold: t, partly: p, k: 2}
                     a noisy estimate Q with standard error S, interval [Q - kS, Q + kS]: lower end >= t:
                     reproduced; lower end >= p: partly; upper end < t: not (surely below); else inconclusive
    {kind: at_most_se,  ours: Q, se: S, threshold: t, partly: p, k: 2}
                     Q consistent with Q <= t: lower end <= t: reproduced; lower end <= p: partly; else not
    {kind: equivalence, ours: D, se: S, margin: m, partly_margin: pm, k: 2}
                     an equivalence test: [D - kS, D + kS] inside [-m, m]: reproduced; inside [-pm, pm]:
                     partly; entirely outside [-m, m]: not; else inconclusive
    {kind: requires, condition: {rule}, rule: {rule}}
                     the rule's verdict where the condition (e.g. "the runs reached a plateau", "the design
                     puts the claim at risk") is reproduced; otherwise inconclusive, naming the condition
    {kind: all_of, rules: [...]}    every part reproduced: reproduced; every part not: not; else partly;
                                    any part inconclusive: inconclusive
    {kind: any_of, rules: [...]}    the best part's verdict
    {kind: none, reason: "..."}     always inconclusive (a question, not a claim)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bnlab.errors import UserError
from bnlab.registry import Registry

VERDICTS = ("reproduced", "partly", "not", "inconclusive")
RANK = {"not": 0, "partly": 1, "reproduced": 2}


@dataclass
class Verdict:
    verdict: str
    reason: str
    parts: list[Verdict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")


RuleFn = Callable[[Mapping[str, Any], Mapping[str, float]], Verdict]
RULES: Registry[RuleFn] = Registry("verdict rule")


def evaluate(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """The verdict of `rule` on the measured `values` (quantity name -> number)."""
    if not isinstance(rule, Mapping) or "kind" not in rule:
        raise UserError(f"a verdict rule needs a 'kind' (one of: {', '.join(RULES.names())}); got {rule!r}")
    return RULES.get(str(rule["kind"]))(rule, values)


def _field(rule: Mapping[str, Any], key: str) -> Any:
    if key not in rule:
        raise UserError(
            f"verdict rule {rule.get('kind')!r} needs the field {key!r}; add it to the spec's paper.rule"
        )
    return rule[key]


def _value(values: Mapping[str, float], name: str) -> float | None:
    v = values.get(name)
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _missing(name: str, values: Mapping[str, float]) -> Verdict:
    why = "not measured" if name not in values else f"not finite ({values[name]})"
    return Verdict("inconclusive", f"'{name}' {why}")


def _g(x: float) -> str:
    return f"{x:.3g}"


def _graded(ok: bool, weak: bool | None, text: str, strong: str, partly: str | None) -> Verdict:
    if ok:
        return Verdict("reproduced", f"{text} {strong}")
    if weak:
        return Verdict("partly", f"{text} misses {strong} but meets {partly}")
    return Verdict("not", f"{text} misses {strong}" + (f" and {partly}" if partly else ""))


_HOLDS = {">=": operator.ge, "<=": operator.le}


def _against(rule: Mapping[str, Any], v: float, t: float, op: str, text: str) -> Verdict:
    """`v` (shown as `text`) graded by `op` against threshold `t` and the rule's optional `partly` bound."""
    holds, p = _HOLDS[op], rule.get("partly")
    return _graded(
        holds(v, t),
        None if p is None else holds(v, float(p)),
        text,
        f"{op} {_g(t)}",
        None if p is None else f"{op} {_g(float(p))}",
    )


def _ours_against(
    rule: Mapping[str, Any], values: Mapping[str, float], op: str, absolute: bool = False
) -> Verdict:
    """The quantity `ours` (or its magnitude) graded by `op` against the rule's threshold and partly."""
    name, t = str(_field(rule, "ours")), float(_field(rule, "threshold"))
    v = _value(values, name)
    if v is None:
        return _missing(name, values)
    if absolute:
        return _against(rule, abs(v), t, op, f"|'{name}'| = {_g(abs(v))}")
    return _against(rule, v, t, op, f"'{name}' = {_g(v)}")


@RULES.register("value_at_least")
def value_at_least(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """ours >= threshold: reproduced; ours >= partly: partly; else not."""
    return _ours_against(rule, values, ">=")


@RULES.register("value_at_most")
def value_at_most(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """ours <= threshold: reproduced; ours <= partly: partly; else not."""
    return _ours_against(rule, values, "<=")


@RULES.register("abs_at_most")
def abs_at_most(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """|ours| <= threshold: reproduced; |ours| <= partly: partly; else not."""
    return _ours_against(rule, values, "<=", absolute=True)


@RULES.register("ratio_at_least")
def ratio_at_least(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """A positive ratio (the quantity `ours`, or numerator / denominator) against threshold and partly."""
    t = float(_field(rule, "threshold"))
    if "ours" in rule:
        name = str(rule["ours"])
        v = _value(values, name)
        if v is None:
            return _missing(name, values)
    else:
        a, b = str(_field(rule, "numerator")), str(_field(rule, "denominator"))
        got = _require(values, a, b)
        if isinstance(got, Verdict):
            return got
        va, vb = got
        if vb == 0:
            return Verdict("inconclusive", f"'{b}' is 0: the ratio is undefined")
        name, v = f"{a} / {b}", va / vb
    if v <= 0:
        return Verdict("inconclusive", f"'{name}' = {_g(v)} is not a positive ratio")
    return _against(rule, v, t, ">=", f"'{name}' = {_g(v)}")


@RULES.register("value_within")
def value_within(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """low <= ours <= high: reproduced; partly_low <= ours <= partly_high: partly; else not."""
    name = str(_field(rule, "ours"))
    lo, hi = float(_field(rule, "low")), float(_field(rule, "high"))
    v = _value(values, name)
    if v is None:
        return _missing(name, values)
    plo, phi = rule.get("partly_low"), rule.get("partly_high")
    weak = None
    if plo is not None or phi is not None:
        weak = (plo is None or v >= float(plo)) and (phi is None or v <= float(phi))
    pr = (
        None
        if weak is None
        else f"[{_g(float(plo) if plo is not None else -math.inf)}, {_g(float(phi) if phi is not None else math.inf)}]"
    )
    return _graded(lo <= v <= hi, weak, f"'{name}' = {_g(v)}", f"[{_g(lo)}, {_g(hi)}]", pr)


def _parts(rule: Mapping[str, Any], values: Mapping[str, float]) -> list[Verdict]:
    rules = _field(rule, "rules")
    if not isinstance(rules, list) or not rules:
        raise UserError(f"verdict rule {rule.get('kind')!r} needs a non-empty list 'rules'")
    return [evaluate(r, values) for r in rules]


def _join(parts: list[Verdict]) -> str:
    return "; ".join(f"{p.verdict}: {p.reason}" for p in parts)


@RULES.register("all_of")
def all_of(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """Every part reproduced: reproduced; every part not: not; any inconclusive: inconclusive; else partly."""
    parts = _parts(rule, values)
    kinds = {p.verdict for p in parts}
    if "inconclusive" in kinds:
        verdict = "inconclusive"
    elif kinds == {"reproduced"}:
        verdict = "reproduced"
    elif kinds == {"not"}:
        verdict = "not"
    else:
        verdict = "partly"
    return Verdict(verdict, _join(parts), parts)


@RULES.register("any_of")
def any_of(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """The best verdict among the parts (inconclusive only if every part is)."""
    parts = _parts(rule, values)
    decided = [p for p in parts if p.verdict != "inconclusive"]
    if not decided:
        return Verdict("inconclusive", _join(parts), parts)
    best = max(decided, key=lambda p: RANK[p.verdict])
    return Verdict(best.verdict, _join(parts), parts)


def _require(values: Mapping[str, float], *names: str) -> list[float] | Verdict:
    """The finite values of `names`, or the inconclusive Verdict naming the first that is missing."""
    got = [_value(values, n) for n in names]
    for n, v in zip(names, got):
        if v is None:
            return _missing(n, values)
    return [float(v) for v in got]  # type: ignore[arg-type]


def _interval(rule: Mapping[str, Any], values: Mapping[str, float]) -> tuple[str, float, float] | Verdict:
    """(text, lower, upper) of the rule's noisy quantity `ours` ± k standard errors `se`, or the
    inconclusive Verdict naming what is missing."""
    name, se_name = str(_field(rule, "ours")), str(_field(rule, "se"))
    got = _require(values, name, se_name)
    if isinstance(got, Verdict):
        return got
    v, se = got
    if se < 0:
        return Verdict("inconclusive", f"'{se_name}' = {_g(se)} is not a standard error")
    k = float(rule.get("k", 2.0))
    lo, hi = v - k * se, v + k * se
    return f"'{name}' = {_g(v)} ± {_g(k)}·{_g(se)} = [{_g(lo)}, {_g(hi)}]", lo, hi


def _on_interval(fn: Callable[[Mapping[str, Any], str, float, float], Verdict]) -> RuleFn:
    """A rule on the interval of a noisy estimate: fn(rule, text, lower, upper) once both numbers exist."""

    def rule_fn(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
        got = _interval(rule, values)
        return got if isinstance(got, Verdict) else fn(rule, *got)

    rule_fn.__doc__ = fn.__doc__
    return rule_fn


def _threshold(rule: Mapping[str, Any]) -> tuple[float, Any]:
    return float(_field(rule, "threshold")), rule.get("partly")


@RULES.register("at_least_se")
@_on_interval
def at_least_se(rule: Mapping[str, Any], text: str, lo: float, hi: float) -> Verdict:
    """Interval above threshold: reproduced; above partly: partly; entirely below threshold: not."""
    t, p = _threshold(rule)
    if lo >= t:
        return Verdict("reproduced", f"{text}: the whole interval is >= {_g(t)}")
    if p is not None and lo >= float(p):
        return Verdict("partly", f"{text}: the whole interval is >= {_g(float(p))}, not >= {_g(t)}")
    if hi < t:
        return Verdict("not", f"{text}: the whole interval is below {_g(t)}")
    return Verdict("inconclusive", f"{text} straddles {_g(t)}: the estimate is too noisy to decide")


@RULES.register("at_most_se")
@_on_interval
def at_most_se(rule: Mapping[str, Any], text: str, lo: float, hi: float) -> Verdict:
    """Consistent with ours <= threshold (lower end <= t): reproduced; lower end <= partly: partly; else not."""
    t, p = _threshold(rule)
    if lo <= t:
        return Verdict("reproduced", f"{text}: consistent with <= {_g(t)}")
    if p is not None and lo <= float(p):
        return Verdict("partly", f"{text}: above {_g(t)} but consistent with <= {_g(float(p))}")
    return Verdict("not", f"{text}: the whole interval is above {_g(t) if p is None else _g(float(p))}")


@RULES.register("equivalence")
@_on_interval
def equivalence(rule: Mapping[str, Any], text: str, lo: float, hi: float) -> Verdict:
    """Interval inside ±margin: reproduced; inside ±partly_margin: partly; outside ±margin: not."""
    m, pm = float(_field(rule, "margin")), rule.get("partly_margin")
    if -m <= lo and hi <= m:
        return Verdict("reproduced", f"{text} lies inside ±{_g(m)}")
    if pm is not None and -float(pm) <= lo and hi <= float(pm):
        return Verdict("partly", f"{text} lies inside ±{_g(float(pm))} but not ±{_g(m)}")
    if hi < -m or lo > m:
        return Verdict("not", f"{text} lies entirely outside ±{_g(m)}")
    return Verdict("inconclusive", f"{text} overlaps ±{_g(m)}: too noisy to call equivalent or different")


@RULES.register("requires")
def requires(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """The inner rule's verdict where the condition holds (is reproduced); otherwise inconclusive."""
    cond = evaluate(_field(rule, "condition"), values)
    if cond.verdict != "reproduced":
        what = str(rule.get("because", "its precondition"))
        return Verdict("inconclusive", f"{what} does not hold ({cond.verdict}: {cond.reason})", [cond])
    inner = evaluate(_field(rule, "rule"), values)
    return Verdict(inner.verdict, inner.reason, [cond, inner])


@RULES.register("none")
def no_rule(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """Always inconclusive: the experiment answers a question, it tests no claim."""
    return Verdict("inconclusive", str(rule.get("reason", "no verdict rule for this experiment")))
