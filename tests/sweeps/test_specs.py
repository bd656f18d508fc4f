"""Every experiment spec expands to valid configs under every profile, with distinct run ids."""

import pytest

from bnlab.analyses.spec import PROFILES, all_specs, find_specs
from bnlab.config import run_id
from bnlab.tasks import TASKS


@pytest.mark.parametrize("profile", PROFILES)
def test_every_spec_expands_under_every_profile(profile):
    specs = all_specs()
    assert {s.id for s in specs} >= {
        "E1",
        "E2",
        "E3",
        "E4",
        "E5",
        "E6",
        "E7",
        "E8",
        "E9",
        "E10",
        "E11a",
        "E11b",
        "E12a",
        "E12b",
        "E12c",
        "E12d",
        "E12e",
    }
    for spec in specs:
        prof = spec.profile(profile)
        cfgs = spec.configs(profile)
        assert cfgs or prof.skip, (spec.id, profile)
        assert len({run_id(c) for c in cfgs}) == len(cfgs)
        assert all(c.task in TASKS for c in cfgs)
        assert prof.tests, f"{spec.id} {profile}: say which claim this profile still tests"


def test_find_specs_by_id_name_and_family():
    assert [s.id for s in find_specs(["E1"])] == ["E1"]
    assert [s.id for s in find_specs(["lr_study"])] == ["E1"]
    assert {s.id for s in find_specs(["E12"])} == {"E12a", "E12b", "E12c", "E12d", "E12e"}
