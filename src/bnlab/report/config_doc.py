"""docs/config.md, generated from the pydantic models of `bnlab.config` (fields, types, defaults, and the comment
beside each field in the source) and the tasks' typed options: `python -m bnlab.report.config_doc > docs/config.md`.
A test keeps the committed file in sync (tests/report/test_config_doc.py)."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from bnlab import config

INTRO = "# Config schema\n\nEvery run is one `bnlab.config.Config` (pydantic, `extra=\"forbid\"`: an unknown key is an error). Give a YAML file\n(`--config F`, the same sections) and/or overrides `--set a.b=value` (values parsed as YAML; `1e-3` is a number).\nThe run id is a 12-hex hash of the resolved config without {excluded} (fields that do not change a result;\n`data.root` is kept for `data.name=arrays`). Validation happens before anything is written: a bad value exits 2 with one sentence.\n`bnlab.config.validate` / `bnlab.config.resolve` check the schema; `bnlab.tasks.check` / `bnlab.tasks.resolve` (what the\nCLI and spec expansion use) also check the registry names (`bnlab ls models|norms|inits|datasets|probes`: a registered\ninit is accepted, there is no second list) and the task's typed options.\n\nExamples: `--set optim.warmup.kind=constant --set optim.warmup.steps=400 --set optim.warmup.factor=0.1` is\nHe et al.'s 0.01-for-400-steps at lr 0.1; `--set 'probes=[{name: output_bias, at: [0]}]'` adds a probe.\n\n"

TASK_INTRO = '## `task_options` (per task, pydantic models with `extra="forbid"` in `bnlab.tasks`)\n\nA misspelt option is refused when the config is resolved (`--set task_options.step=300` for a max_lr search:\nexit 2, "unknown option task_options.step for task max_lr; valid options: steps, seeds, lo, hi, iters, start").\n\n'

DEFAULTS = "## Defaults worth knowing\n\n- `model.init.conv = kaiming_fan_in` (He et al., the ResNet default) and `model.init.fc = default` (PyTorch's Linear init).\n  The paper says Xavier; every experiment spec sets `model.init.conv: xavier` where it follows the paper (PAPER.md).\n- `train.divergence.mode = relative` (loss > 1e3 x the first loss): an unnormalized ResNet-110 starts near 1e3 (Xavier)\n  or 1e9 (Kaiming) on our pipeline; `absolute` is the paper's wording (loss > 1e3).\n- `optim.milestones = [0.5, 0.75]` are fractions of the budget; `gamma = 0.1`.\n- `train.amp`, `train.channels_last`, `train.compile` are off by default so that the paper's experiments run in fp32.\n"


def field_notes(model: type[BaseModel]) -> dict[str, tuple[str, str]]:
    """field -> (its type as written, without a validator's Annotated wrapper; its comment: on its line, or
    on the comment lines just above it) from the class's source."""
    src = textwrap.dedent(inspect.getsource(model))
    lines = src.splitlines()
    out = {}
    for node in ast.parse(src).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ann = node.annotation
            if isinstance(ann, ast.Subscript) and getattr(ann.value, "id", "") == "Annotated":
                ann = ann.slice.elts[0]  # type: ignore[attr-defined]
            text = ast.get_source_segment(src, ann) or ""
            first = lines[node.lineno - 1]
            comment = first.split("  # ", 1)[1].strip() if "  # " in first else ""
            above, i = [], node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#"):
                above.insert(0, lines[i].strip().lstrip("#").strip())
                i -= 1
            if not comment and above:
                comment = " ".join(above)
            if not comment and node.end_lineno != node.lineno and "  # " in lines[node.end_lineno - 1]:
                comment = lines[node.end_lineno - 1].split("  # ", 1)[1].strip()
            out[node.target.id] = (" ".join(text.split()), comment)
    return out


def _default(info: Any) -> str:
    if info.default_factory is not None:
        f = info.default_factory
        name = getattr(f, "__name__", "")
        if name == "<lambda>":
            return f"`{f()!r}`"
        return f"`{name}`"
    d = info.default
    if d is PydanticUndefined:
        return "required"
    return f'`"{d}"`' if isinstance(d, str) else f"`{d!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _nested(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    ann = model.model_fields[name].annotation
    for t in (ann, *typing.get_args(ann)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def model_section(model: type[BaseModel], title: str) -> list[str]:
    notes = field_notes(model)
    lines = [f"## `{title}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        ann, comment = notes.get(name, ("", ""))
        lines.append(f"| `{name}` | `{_cell(ann)}` | {_cell(_default(info))} | {_cell(comment)} |")
    return lines + [""]


def sections(
    model: type[BaseModel] = config.Config, title: str = "(top level)"
) -> list[tuple[str, type[BaseModel]]]:
    """(title, model) of every config section, parents before children; the top level last."""
    out = []
    for name in model.model_fields:
        sub = _nested(model, name)
        if sub is not None:
            is_list = typing.get_origin(model.model_fields[name].annotation) is list
            prefix = "" if title == "(top level)" else f"{title}."
            out += sections(sub, f"{prefix}{name}{'[]' if is_list else ''}")
    return [(title, model)] + out if title != "(top level)" else out + [(title, model)]


def task_rows() -> list[str]:
    from bnlab.tasks import TASKS

    rows = ["| task | model | options (default) |", "|---|---|---|"]
    for name in TASKS.names():
        parse = TASKS.get(name).options
        cls = getattr(parse, "__self__", None)
        if cls is None:
            rows.append(
                f"| `{name}` | — | none read (a {name} run of a spec that crosses `task: [{name}, max_lr]` carries "
                "the max_lr options; they are ignored) |"
            )
            continue
        notes = field_notes(cls)
        opts = []
        for f, info in cls.model_fields.items():
            comment = notes.get(f, ("", ""))[1]
            opts.append(
                f"`{f}` ({_cell(_default(info)).strip('`')}{': ' + _cell(comment) if comment else ''})"
            )
        extra = ""
        if name == "rmt":  # one options model per kind
            from bnlab.tasks.rmt_task import KINDS

            kinds = " \\| ".join(KINDS)
            opts = [f'`kind` ("spectra": {kinds})']
            extra = " + that kind's keyword arguments (`bnlab.rmt.study`)"
        rows.append(f"| `{name}` | `{cls.__name__}` | {', '.join(opts)}{extra} |")
    return rows


def config_markdown() -> str:
    excluded = ", ".join(f"`{'.'.join(k)}`" for k in sorted(config.HASH_EXCLUDE))
    lines = [INTRO.rstrip().replace("{excluded}", excluded), ""]
    for title, model in sections():
        lines += model_section(model, title)
    lines += [TASK_INTRO.rstrip(), ""] + task_rows() + ["", DEFAULTS.rstrip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(config_markdown())
