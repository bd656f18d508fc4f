"""Experiment specs: data, not code. One YAML file per experiment in experiments/ (packaged as
bnlab/analyses/specs/), expanded under a profile into runs (one resolved Config each).

    id: E1                      # E1 ... E12e
    name: lr_study
    claim: "..."                # the paper's claim this experiment tests
    base: {model: {...}, ...}   # a config (any Config section)
    grid: {optim.lr: [0.1, 0.003], train.seed: [0, 1]}   # dotted keys -> lists; the runs are the product
          # "a+b": [[a1, b1], [a2, b2]] is one zipped axis (e.g. each lr with its own epoch budget)
    paper:                      # what the paper shows and how the report judges our runs against it
      claim_source: "text"
      figure: "Fig. 1: ..."
      formula: "..."
      values:                   # keys are what the analysis's quantities() returns
        - {key: acc_gap, label: "BN - no BN test acc (points)", paper: -0.6, source: "derived from Fig. 1"}
      rule: {kind: abs_at_most, ours: acc_gap, threshold: 2.0, partly: 5.0}   # bnlab.report.rules
      comparable_profiles: [cpu, fast, paper]
      needs: [E1]               # other experiments whose runs the analysis reads
    profiles:
      smoke: {set: {train.epochs: 0.1}, grid: {train.seed: [0]}, cost_s: 60, tests: "plumbing only"}
      cpu:   {...}
      fast:  {...}
      paper: {...}
"""

from __future__ import annotations

import itertools
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from bnlab.config import Config, apply_overrides, run_id, validate
from bnlab.config_checks import read_yaml_file
from bnlab.errors import UserError

PROFILES = ("smoke", "cpu", "fast", "paper")


class ProfileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: dict[str, Any] = Field(default_factory=dict)  # dotted overrides on top of base
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # replaces axes of the spec's grid
    cost_s: float = 0.0  # estimated wall time on the profile's reference machine (DESIGN.md table)
    tests: str = ""  # which claim this profile still tests (and what it cuts)
    skip: bool = False  # not run under this profile (say why in `tests`)


class PaperValue(BaseModel):
    """One number the report shows: ours (quantities()[key]) beside the paper's, with its provenance."""

    model_config = ConfigDict(extra="forbid")
    key: str  # the analysis's quantity key (identifier-like; never an English sentence)
    label: str  # how the report names it
    paper: Any = None  # the paper's value: a number, a phrase ("heavy-tailed (>> 0)") or null
    source: str = "not in the paper"  # "text", "Fig. N, approximate, read off the figure", ...

    @model_validator(mode="after")
    def _key_is_identifier(self) -> PaperValue:
        if not self.key.replace("_", "a").isalnum():
            raise ValueError(f"value key {self.key!r} must be an identifier (letters, digits, _)")
        return self


RULE_REFS = ("ours", "numerator", "denominator", "se")  # rule fields that name a quantity key


def rule_keys(rule: Any) -> list[str]:
    """Every quantity key a verdict rule refers to (nested rules included)."""
    if not isinstance(rule, dict):
        return []
    out = [str(rule[f]) for f in RULE_REFS if f in rule]
    for sub in (rule.get("rules", []) or []) + [rule.get("condition"), rule.get("rule")]:
        out += rule_keys(sub)
    return out


class PaperBlock(BaseModel):
    """The paper's side of an experiment: claim source, figure, formula, values by key, verdict rule."""

    model_config = ConfigDict(extra="forbid")
    claim_source: str = ""
    figure: str = ""  # what the paper shows (figure/table)
    formula: str = ""
    values: list[PaperValue] = Field(default_factory=list)
    rule: dict[str, Any] | None = None  # bnlab.report.rules; refers to values by key
    comparable_profiles: list[str] = Field(default_factory=lambda: ["cpu", "fast", "paper"])
    needs: list[str] = Field(default_factory=list)  # experiments whose runs the analysis also reads

    @model_validator(mode="after")
    def _consistent(self) -> PaperBlock:
        keys = [v.key for v in self.values]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"value keys listed twice: {', '.join(dup)}")
        unknown = [k for k in rule_keys(self.rule) if k not in keys]
        if unknown:
            raise ValueError(
                f"the rule refers to {', '.join(map(repr, unknown))}, which no value declares "
                f"(declared: {', '.join(keys) or 'none'})"
            )
        bad = [p for p in self.comparable_profiles if p not in PROFILES]
        if bad:
            raise ValueError(f"unknown comparable profile(s) {bad}; choose from {', '.join(PROFILES)}")
        return self

    def labels(self) -> dict[str, str]:
        return {v.key: v.label for v in self.values}


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    claim: str
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)
    paper: PaperBlock = Field(default_factory=PaperBlock)
    _path: Path | None = PrivateAttr(default=None)  # the YAML file it was read from

    @property
    def path(self) -> Path | None:
        return self._path

    def profile(self, name: str) -> ProfileSpec:
        if name not in PROFILES:
            raise UserError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
        return self.profiles.get(name, ProfileSpec())

    def configs(self, profile: str, overrides: list[str] | None = None) -> list[Config]:
        """Every run of this spec under `profile`: base + profile.set + grid point + user overrides."""
        from bnlab.tasks import check  # on use: listing specs needs no torch

        prof = self.profile(profile)
        if prof.skip:
            return []
        grid = {**self.grid, **prof.grid}
        keys = list(grid)
        out: list[Config] = []
        seen: set[str] = set()
        for values in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            raw = apply_overrides(self.base, prof.set)
            point: dict[str, Any] = {}
            for k, v in zip(keys, values):
                if "+" in k:
                    parts = k.split("+")
                    if not isinstance(v, list | tuple) or len(v) != len(parts):
                        raise UserError(
                            f"experiment {self.id}: grid axis {k!r} needs lists of {len(parts)} values"
                        )
                    point.update(zip(parts, v))
                else:
                    point[k] = v
            raw = apply_overrides(raw, point)
            raw = apply_overrides(raw, overrides or [])
            try:
                cfg = check(validate(raw))  # schema, then registry names and typed task options
            except UserError as e:
                raise UserError(f"experiment {self.id} ({self.name}), profile {profile}: {e}") from None
            rid = run_id(cfg)
            if rid not in seen:
                seen.add(rid)
                out.append(cfg)
        return out


ENV_DIRS = "BNLAB_EXPERIMENTS"  # extra folders of specs + analyses, os.pathsep-separated


def builtin_dir() -> Path | None:
    """Packaged specs (the wheel force-includes the repo's experiments/ as bnlab/analyses/specs),
    else the repo's experiments/ folder (editable installs)."""
    packaged = Path(str(resources.files("bnlab.analyses"))) / "specs"
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[3] / "experiments"
    return repo if repo.is_dir() else None


def spec_dirs() -> tuple[Path, ...]:
    """The built-in specs, then the folders in $BNLAB_EXPERIMENTS (`--experiments DIR` sets it): a user's
    own experiments, each a spec `<ID>_<name>.yaml` beside its analysis `<id>_<name>.py`."""
    extra = [Path(p).expanduser() for p in os.environ.get(ENV_DIRS, "").split(os.pathsep) if p]
    for d in extra:
        if not d.is_dir():
            raise UserError(
                f"experiments folder {str(d)!r} does not exist (from --experiments / ${ENV_DIRS})"
            )
    base = builtin_dir()
    return tuple(([base] if base else []) + extra)


def add_spec_dirs(dirs: list[str] | None) -> None:
    """Make the folders `dirs` (a command's `--experiments DIR`) part of this process's experiments,
    through $BNLAB_EXPERIMENTS, so that child processes and executors find them too."""
    if not dirs:
        return
    have = [p for p in os.environ.get(ENV_DIRS, "").split(os.pathsep) if p]
    new = [str(Path(d).expanduser().resolve()) for d in dirs]
    os.environ[ENV_DIRS] = os.pathsep.join(dict.fromkeys(have + new))
    spec_dirs()  # a folder that does not exist is one sentence now, not later


def all_specs() -> tuple[Spec, ...]:
    return _specs_in(spec_dirs())


@cache
def _specs_in(dirs: tuple[Path, ...]) -> tuple[Spec, ...]:
    specs: dict[str, Spec] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            s = load_spec(path)
            if s.id in specs:
                raise UserError(f"experiment id {s.id} is defined twice: {specs[s.id].path} and {path}")
            specs[s.id] = s
    return tuple(sorted(specs.values(), key=lambda s: _id_key(s.id)))


def _id_key(sid: str) -> tuple[int, str]:
    num = "".join(ch for ch in sid[1:] if ch.isdigit())
    return (int(num) if num else 999, sid)


def load_spec(path: str | Path) -> Spec:
    p = Path(path)
    try:
        raw = read_yaml_file(p)  # UTF-8, bounded depth and alias expansion, one-sentence errors
    except UserError as e:
        raise UserError(f"experiment spec {p.name}: {e}") from None
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise UserError(
            f"experiment spec {p.name}: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None
    spec._path = p
    return spec


def find_specs(selectors: list[str] | None) -> list[Spec]:
    """Specs named by id (E1, E12a), by name (lr_study), by a YAML path, or all when selectors is empty."""
    specs = list(all_specs())
    if not selectors:
        return specs
    out: list[Spec] = []
    for sel in selectors:
        if sel.endswith((".yaml", ".yml")):
            out.append(load_spec(sel))
            continue
        hits = [s for s in specs if sel in (s.id, s.name) or (sel.upper() == s.id.upper())]
        if not hits:  # "E12" names the whole E12a..e family
            hits = [s for s in specs if s.id.rstrip("abcdefgh") == sel.upper()]
        if not hits:
            raise UserError(
                f"no experiment {sel!r}; `bnlab experiments` lists them ({', '.join(s.id for s in specs)})"
            )
        out.extend(h for h in hits if h not in out)
    return out
