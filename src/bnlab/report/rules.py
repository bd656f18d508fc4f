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
        va, vb = _value(values, a), _value(values, b)
        if va is None:
            return _missing(a, values)
        if vb is None:
            return _missing(b, values)
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


@RULES.register("none")
def no_rule(rule: Mapping[str, Any], values: Mapping[str, float]) -> Verdict:
    """Always inconclusive: the experiment answers a question, it tests no claim."""
    return Verdict("inconclusive", str(rule.get("reason", "no verdict rule for this experiment")))
