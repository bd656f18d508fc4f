"""TaskOptions: the typed `task_options` of one task kind (pydantic, extra="forbid").

The config keeps `task_options` as the plain dict the user wrote (so a run id is the hash of what was set,
and typing the options re-keys no run); each task parses it with its own options model, once when the
config is resolved (`bnlab.tasks.check`) and again when the task runs. A misspelt option is one sentence
naming the valid ones.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bnlab.errors import UserError

T = TypeVar("T", bound="TaskOptions")


class TaskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls: type[T], raw: dict[str, Any], task: str) -> T:
        """`raw` (cfg.task_options) -> options; any problem becomes a one-sentence UserError."""
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise UserError(options_error(e, cls, task)) from None


def options_error(err: ValidationError, model: type[BaseModel], task: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "task_options"
    if first["type"] == "extra_forbidden":
        valid = ", ".join(model.model_fields)
        return f"unknown option task_options.{loc} for task {task}; valid options: {valid}"
    msg = first["msg"].removeprefix("Value error, ")
    return f"invalid task_options.{loc} for task {task}: {msg}"
