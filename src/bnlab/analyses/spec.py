"""Experiment specs: data, not code. One YAML file per experiment in experiments/ (packaged as
bnlab/analyses/specs/), expanded under a profile into runs (one resolved Config each).

    id: E1                      # E1 ... E12e
    name: lr_study
    claim: "..."                # the paper's claim this experiment tests
    base: {model: {...}, ...}   # a config (any Config section)
    grid: {optim.lr: [0.1, 0.003], train.seed: [0, 1]}   # dotted keys -> lists; the runs are the product
          # "a+b": [[a1, b1], [a2, b2]] is one zipped axis (e.g. each lr with its own epoch budget)
    figures: [lr_curves]        # figure names (bnlab.figures registry)
    profiles:
      smoke: {set: {train.epochs: 0.1}, grid: {train.seed: [0]}, cost_s: 60, tests: "plumbing only"}
      cpu:   {...}
      fast:  {...}
      paper: {...}
"""

from __future__ import annotations

import itertools
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bnlab.config import Config, apply_overrides, run_id, validate
from bnlab.errors import UserError

PROFILES = ("smoke", "cpu", "fast", "paper")


class ProfileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    set: dict[str, Any] = Field(default_factory=dict)  # dotted overrides on top of base
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # replaces axes of the spec's grid
    cost_s: float = 0.0  # estimated wall time on the profile's reference machine (DESIGN.md table)
    tests: str = ""  # which claim this profile still tests (and what it cuts)
    skip: bool = False  # not run under this profile (say why in `tests`)


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    claim: str
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    figures: list[str] = Field(default_factory=list)
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)
    paper: str = ""  # what the paper shows (figure/table), for the report

    def profile(self, name: str) -> ProfileSpec:
        if name not in PROFILES:
            raise UserError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
        return self.profiles.get(name, ProfileSpec())

    def configs(self, profile: str, overrides: list[str] | None = None) -> list[Config]:
        """Every run of this spec under `profile`: base + profile.set + grid point + user overrides."""
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
                cfg = validate(raw)
            except UserError as e:
                raise UserError(f"experiment {self.id} ({self.name}), profile {profile}: {e}") from None
            rid = run_id(cfg)
            if rid not in seen:
                seen.add(rid)
                out.append(cfg)
        return out


def _spec_dirs() -> list[Path]:
    """Packaged specs (the wheel force-includes the repo's experiments/ as bnlab/analyses/specs),
    else the repo's experiments/ folder (editable installs)."""
    packaged = Path(str(resources.files("bnlab.analyses"))) / "specs"
    if packaged.is_dir():
        return [packaged]
    repo = Path(__file__).resolve().parents[3] / "experiments"
    return [repo] if repo.is_dir() else []


@cache
def all_specs() -> tuple[Spec, ...]:
    specs = []
    for d in _spec_dirs():
        for path in sorted(d.glob("*.yaml")):
            specs.append(load_spec(path))
    return tuple(sorted(specs, key=lambda s: _id_key(s.id)))


def _id_key(sid: str) -> tuple[int, str]:
    num = "".join(ch for ch in sid[1:] if ch.isdigit())
    return (int(num) if num else 999, sid)


def load_spec(path: str | Path) -> Spec:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read experiment spec {str(p)!r} ({e})") from None
    try:
        return Spec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise UserError(
            f"experiment spec {p.name}: {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None


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
