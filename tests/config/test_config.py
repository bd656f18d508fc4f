import pytest
import yaml

from bnlab.config import Config, apply_overrides, canonical, parse_override, resolve, run_id, to_yaml
from bnlab.errors import UserError


def test_round_trip_yaml_and_hash_stable(tmp_path):
    cfg = resolve(
        None, ["model.depth=14", "optim.lr=0.01", "optim.warmup.kind=linear", "optim.warmup.steps=10"]
    )
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg))
    again = resolve(path)
    assert again == cfg
    assert run_id(again) == run_id(cfg)
    assert len(run_id(cfg)) == 12


def test_hash_ignores_root_device_threads_but_not_lr():
    a = resolve(None, [])
    b = resolve(None, ["data.root=/somewhere", "train.device=cpu", "train.threads=3"])
    c = resolve(None, ["optim.lr=0.05"])
    assert run_id(a) == run_id(b)
    assert run_id(a) != run_id(c)
    assert "root" not in canonical(a)["data"]


def test_hash_is_a_known_constant_for_defaults():
    # a change of this value means every existing run id changes: bump deliberately
    assert run_id(Config()) == run_id(resolve({}, []))


@pytest.mark.parametrize(
    "bad",
    [
        "model.nonsense=1",
        "optim.lr=-1",
        "optim.lr=0",
        "model.depth=21",
        "model.norm=unicorn",
        "optim.lr=fast",
        "train.divergence.mode=sometimes",
        "optim.milestones=[0.8,0.2]",
        "model.init.conv=magic",
        "data.name=mnist",
        "optim.batch_size=0",
        "noequals",
        "=3",
        "probes=[{name: nope, every: 1}]",
    ],
)
def test_bad_overrides_are_one_sentence_user_errors(bad):
    from bnlab.tasks import resolve as resolve_to_run

    with pytest.raises(UserError) as e:
        resolve_to_run(None, [bad])
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 300


@pytest.mark.parametrize(
    "name",
    ["model.norm=unicorn", "model.init.conv=magic", "data.name=mnist", "probes=[{name: nope, every: 1}]"],
)
def test_config_validates_the_schema_only_and_the_resolver_checks_names(name):
    cfg = resolve(None, [name])  # bnlab.config imports no registry
    from bnlab.tasks import check

    with pytest.raises(UserError, match=r"choose one of|`bnlab ls \w+` lists all"):
        check(cfg)


def test_a_registered_init_is_accepted(monkeypatch):
    """The INITS registry is the single source of init choices: no list in the config to keep in sync."""
    from bnlab.nn.init import INITS, default
    from bnlab.tasks import resolve as resolve_to_run

    monkeypatch.setitem(INITS._items, "my_init", default)
    assert resolve_to_run(None, ["model.init.conv=my_init"]).model.init.conv == "my_init"


def test_override_values_are_yaml():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=1e-3") == (["a"], 1e-3)
    assert parse_override("a=true") == (["a"], True)
    assert apply_overrides({"x": {"y": 1}}, ["x.z=2"]) == {"x": {"y": 1, "z": 2}}


def test_yaml_file_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve(tmp_path / "missing.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        resolve(p)
    p.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(UserError, match="mapping"):
        resolve(p)


def test_an_unknown_name_among_many_gives_the_closest_names_in_one_short_sentence():
    from bnlab.registry import MAX_LISTED, Registry

    many = Registry("widget", lister="bnlab ls widgets")
    for i in range(MAX_LISTED + 5):
        many.register(f"widget_{i:02d}")(object())
    many.register("gradient_histogram")(object())
    msg = many.unknown("gradient_histo")
    assert "did you mean gradient_histogram" in msg and "`bnlab ls widgets` lists all 16" in msg
    assert "widget_03" not in msg  # not the whole list
    few = Registry("norm")
    few.register("batch")(object())
    assert few.unknown("bach").endswith("choose one of: batch")
    unlisted = Registry("verdict rule")  # no command lists these: every name, however many
    for i in range(MAX_LISTED + 5):
        unlisted.register(f"rule_{i:02d}")(object())
    assert "choose one of: rule_00" in unlisted.unknown("nope")
