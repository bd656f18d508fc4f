"""docs/config.md is generated from the pydantic models of bnlab.config and the tasks' options models: the
committed file must match, and every field of every section is in it."""

from pathlib import Path

from bnlab.config import Config
from bnlab.report.config_doc import config_markdown, field_notes, sections

DOC = Path(__file__).parents[2] / "docs" / "config.md"


def test_docs_config_md_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == config_markdown(), (
        "docs/config.md is stale: run `python -m bnlab.report.config_doc > docs/config.md`"
    )


def test_every_field_is_documented_with_its_default():
    text = config_markdown()
    titles = [t for t, _ in sections()]
    assert titles[:2] == ["model", "model.init"] and "probes[]" in titles and titles[-1] == "(top level)"
    for title, model in sections():
        part = text.split(f"## `{title}`\n", 1)[1].split("\n## ", 1)[0]
        for name in model.model_fields:
            assert f"| `{name}` |" in part, (title, name)
    for name in ("sync_every", "tensorboard", "layer_stats_every"):  # the fields the hand-written page lacked
        assert f"| `{name}` |" in text


def test_comments_and_types_come_from_the_source():
    notes = field_notes(Config.model_fields["optim"].annotation)
    assert notes["lr"] == (
        "float",
        "per 128 examples unless batch_size says otherwise",
    )  # Annotated unwrapped
    assert notes["momentum"][0] == "float"
