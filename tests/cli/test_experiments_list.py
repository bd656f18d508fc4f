"""`bnlab experiments` off a terminal: full names, a total row; the README quotes that total."""

import re
from pathlib import Path

from bnlab.analyses.spec import all_specs
from bnlab.cli.experiments import stated_totals
from bnlab.cli.main import main
from bnlab.sweeps.plan import fmt_seconds


def test_names_are_not_cut_off_a_terminal_and_the_total_is_the_sum(capsys):
    assert main(["experiments"]) == 0
    out = capsys.readouterr().out
    for s in all_specs():
        assert f" {s.name} " in out, s.name
    total = next(ln for ln in out.splitlines() if "total" in ln)
    assert fmt_seconds(stated_totals()["cpu"]) in total
    assert stated_totals()["cpu"] == sum(
        0 if s.profile("cpu").skip else s.profile("cpu").cost_s for s in all_specs()
    )


def test_readme_states_the_cpu_total_that_bnlab_experiments_prints():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    m = re.search(
        r"stated costs add up to ([\d.]+ (?:h|min|s)), the `total` row of `bnlab experiments`", readme
    )
    assert m, "README's cpu-profile sentence is missing"
    assert m.group(1) == fmt_seconds(stated_totals()["cpu"])
