"""Monitor: bnlab's probes inside a user's own training loop.

    monitor = bnlab.Monitor(model, optimizer, probes="cheap", schedule=10, runs="runs")
    with monitor:
        for step, (x, y) in enumerate(loader):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            monitor.step(step, x, y, loss=loss)   # after backward, before optimizer.step()
            optimizer.step()

At a step its schedule names, it runs its probes on (x, y) and the gradient in `.grad`, and hands each
result to its writers (the run directory always). It leaves the user's `.grad`, parameters, buffers,
optimizer state, module modes and the global torch/numpy/Python RNG states exactly as it found them
(bnlab.monitor.preserve), so a loop trains bit-identically with or without it. Models wrapped by
torch.compile or DDP are unwrapped for the probes (bnlab.probes.unwrap_model); under torch.distributed
only rank 0 measures and writes.

The run directory is the standard one (DESIGN.md): config.yaml says `kind: monitor` and what the monitor
knows of the model and optimizer; env.json, status.json (running -> complete, or failed when the `with`
block raises), metrics.jsonl (the loss every `loss_every` steps and at measured steps), summary.json
(steps, wall_s, probe_s: seconds spent measuring), probes/<name>.jsonl and probes/<name>.step<k>.npz.

Run id rule (a monitor does not own its config, so its id is not the config hash of trained runs):
`mon-<UTC start, YYYYmmdd-HHMMSS>-<6 hex of sha256(host, pid, start time in ns, model class)>`, or the
`name=` given. A monitor never reuses a run directory: an existing one is an error. Checks that a run id is
the hash of its config skip runs whose config says `kind: monitor`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from bnlab.errors import UserError
from bnlab.monitor.forward_tap import NAME as TAPPED
from bnlab.monitor.forward_tap import MomentsTap, tap_allowed
from bnlab.monitor.grad_histogram import grad_histogram
from bnlab.monitor.preserve import untouched
from bnlab.monitor.presets import GRAD, ProbeSpec, probes_of
from bnlab.monitor.schedule import Schedule, schedule_of
from bnlab.monitor.writers import Writer, make_writers
from bnlab.probes.norm_stats import unwrap_model
from bnlab.probes.result import ProbeResult
from bnlab.store.files import atomic_write_json, atomic_write_text
from bnlab.store.rundir import RunDir, environment


def monitor_run_id(model: nn.Module, started_ns: int) -> str:
    """The run id rule of the module docstring."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started_ns / 1e9))
    key = f"{socket.gethostname()}|{os.getpid()}|{started_ns}|{type(model).__qualname__}"
    return f"mon-{stamp}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"


def describe_model(model: nn.Module) -> dict[str, Any]:
    inner = unwrap_model(model)
    types: dict[str, int] = {}
    for m in inner.modules():
        if not list(m.children()):
            types[type(m).__name__] = types.get(type(m).__name__, 0) + 1
    return {
        "class": f"{type(inner).__module__}.{type(inner).__qualname__}",
        "wrapper": None if inner is model else type(model).__name__,
        "parameters": int(sum(p.numel() for p in inner.parameters())),
        "layers": types,
        "training": bool(inner.training),
    }


def describe_optimizer(optimizer: torch.optim.Optimizer | None) -> dict[str, Any] | None:
    if optimizer is None:
        return None
    groups = []
    for g in optimizer.param_groups:
        groups.append(
            {k: v for k, v in g.items() if k != "params" and isinstance(v, int | float | bool | str)}
        )
    return {"class": type(optimizer).__name__, "param_groups": groups}


def _rank() -> int:
    d = torch.distributed
    return d.get_rank() if d.is_available() and d.is_initialized() else 0


class Monitor:
    """bnlab's probes in a user's training loop (module docstring). Arguments:

    model, optimizer: the user's (optimizer optional: layer_stats' update ratio needs a torch SGD).
    probes: "cheap" (default), "full", or a list of probe names / (name, options) pairs (bnlab.probes).
    schedule: a Schedule, N (every N steps), a list of steps, "log", or None: log-spaced (4 per decade,
        then every 1000 steps), step 0 included.
    runs: the runs root the run directory is made in (runs/<run id>); run_dir: that directory itself.
    name: the run id (default: the rule in the module docstring).
    writers: extra writers: "tensorboard", "wandb" or Writer objects (the run directory is always written).
    loss_fn: the loss probes differentiate (default: mean cross-entropy, the probes' default).
    config: anything JSON/YAML-able the user wants kept in config.yaml under `user`.
    loss_every: record the loss given to step() every this many steps (a host read of the loss).
    reuse_forward: take activation_moments from the user's own forward of a due step when that gives the
        probe's result exactly (bnlab.monitor.forward_tap), instead of a second forward; False: always the
        second forward.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        probes: object = "cheap",
        schedule: object = None,
        runs: str | Path = "runs",
        run_dir: str | Path | None = None,
        name: str | None = None,
        writers: list[Any] | tuple[Any, ...] = (),
        loss_fn: Any = None,
        config: dict[str, Any] | None = None,
        loss_every: int = 10,
        reuse_forward: bool = True,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.probes: tuple[ProbeSpec, ...] = probes_of(probes)
        self.schedule: Schedule = schedule_of(schedule)
        self.loss_every = max(1, int(loss_every))
        self.active = _rank() == 0
        self.closed = False
        self.last_step = -1
        self.probe_s = 0.0
        self.measured = 0
        self.reused_forwards = 0  # measured steps whose activation_moments came from the user's forward
        self.started = time.time_ns()
        self.run_id = name or monitor_run_id(model, self.started)
        self.run_dir = Path(run_dir) if run_dir is not None else Path(runs) / self.run_id
        self.writers: list[Writer] = []
        inner = unwrap_model(model)
        self._tap_spec = next((p for p in self.probes if p.name == TAPPED and p.source != GRAD), None)
        self._tap = (
            MomentsTap(inner)
            if reuse_forward
            and self._tap_spec is not None
            and tap_allowed(model, inner, self._tap_spec.options)
            else None
        )
        self._moments: ProbeResult | None = None  # the last activation_moments result: the tap's blocks
        if not self.active:
            return
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise UserError(
                f"run directory {str(self.run_dir)!r} already exists; give another name= or run_dir="
            )
        self.config = {
            "kind": "monitor",
            "model": describe_model(model),
            "optimizer": describe_optimizer(optimizer),
            "probes": [p.as_config() for p in self.probes],
            "schedule": self.schedule.describe(),
            "user": config or {},
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rd = RunDir(self.run_dir)
        atomic_write_text(rd.config, yaml.safe_dump(self.config, sort_keys=False))
        device = next((str(p.device) for p in model.parameters()), "cpu")
        atomic_write_json(self.run_dir / "env.json", environment(device, torch.get_num_threads(), False))
        rd.set_status("running", 0)
        self.writers = make_writers(list(writers), self.run_dir, self.run_id, self.config)

    # --- the loop ------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        return self.schedule.due(int(step))

    def step(self, step: int, inputs: torch.Tensor, targets: torch.Tensor, *, loss: Any = None) -> list[str]:
        """Call after `loss.backward()`, before `optimizer.step()`. Runs the probes due at `step` and
        records the loss; returns the names of the probes that ran (empty on other steps)."""
        if self.closed:
            raise UserError("this Monitor is closed; make a new one for another run")
        step = int(step)
        self.last_step = max(self.last_step, step)
        if not self.active:
            return []
        tapped = self._tap.take(inputs) if self._tap is not None and self._tap.armed else None
        due = self.due(step)
        if loss is not None and (due or step % self.loss_every == 0):
            value = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
            row = {"loss": value, "wall_s": (time.time_ns() - self.started) / 1e9}
            if self.optimizer is not None:
                row["lr"] = float(self.optimizer.param_groups[0]["lr"])
            for w in self.writers:
                w.scalars(step, row)
        if not due:
            self._arm(step)
            return []
        t0 = time.perf_counter()
        with untouched(self.model):
            results = [
                (
                    p.name,
                    tapped
                    if p is self._tap_spec and tapped is not None
                    else self._run(p, step, inputs, targets),
                )
                for p in self.probes
            ]
        self.reused_forwards += tapped is not None
        for p, (name, result) in zip(self.probes, results, strict=True):
            if p is self._tap_spec:
                self._moments = result
            for w in self.writers:
                w.probe(step, name, result)
        self._arm(step)
        self.probe_s += time.perf_counter() - t0
        self.measured += 1
        return [n for n, _ in results]

    def _arm(self, step: int) -> None:
        """Hook the user's next forward for activation_moments when the next step is due."""
        if self._tap is not None and self._moments is not None and self.due(step + 1):
            self._tap.arm(self._moments)

    def _run(self, spec: ProbeSpec, step: int, inputs: torch.Tensor, targets: torch.Tensor):
        from bnlab.probes.context import ProbeContext
        from bnlab.probes.guard import call_probe
        from bnlab.probes.registry import PROBE_KIND, PROBES

        if spec.source == GRAD:
            return grad_histogram(self.model, **spec.options)
        fn = PROBES.get(spec.name)
        if PROBE_KIND.get(spec.name) == "data":
            ctx = ProbeContext(
                step=step, optimizer=self.optimizer, run_dir=self.run_dir, loss_fn=self.loss_fn
            )
            return call_probe(fn, spec.name, self.model, [(inputs, targets)], ctx=ctx, **spec.options)
        return call_probe(fn, spec.name, self.model, inputs, targets, loss_fn=self.loss_fn, **spec.options)

    # --- the end -------------------------------------------------------------------------------
    def close(self, state: str = "complete", reason: str | None = None) -> Path:
        """Finish the run (status, summary, writers); returns the run directory. Closing twice is a no-op."""
        if self.closed or not self.active:
            self.closed = True
            return self.run_dir
        self.closed = True
        if self._tap is not None:
            self._tap.disarm()
        for w in self.writers:
            w.close()
        steps = self.last_step + 1
        wall = (time.time_ns() - self.started) / 1e9
        summary = {"steps": steps, "wall_s": wall, "probe_s": self.probe_s, "measured_steps": self.measured}
        atomic_write_json(RunDir(self.run_dir).summary, summary)
        RunDir(self.run_dir).set_status(state, steps, reason=reason)
        print(f"bnlab monitor: {self.run_dir} ({state}, {self.measured} measured steps)", file=sys.stderr)
        return self.run_dir

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close("failed", f"{exc_type.__name__}: {exc}")
