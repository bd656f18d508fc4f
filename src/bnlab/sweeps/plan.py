"""The plan printed before a sweep: runs per experiment, how many are finished, estimated time.

The estimate times two training steps of each distinct (model, batch size) on this machine
(synthetic input, no data loading) and multiplies by each run's step budget; tasks that are not
plain training use the spec's stated cost."""

from __future__ import annotations

import time
from functools import cache

import torch

from bnlab.config import Config


@cache
def _step_seconds(model_json: str, batch_size: int, device: str) -> float:
    import json

    from bnlab.models import build_model

    mcfg = json.loads(model_json)
    mcfg["num_classes"] = mcfg.get("num_classes") or 10
    model = build_model(**mcfg).to(device)
    x = torch.randn(
        batch_size,
        mcfg.get("in_channels", 3),
        mcfg.get("image_size", 32),
        mcfg.get("image_size", 32),
        device=device,
    )
    y = torch.randint(0, mcfg["num_classes"], (batch_size,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)
    times = []
    for _ in range(2):
        t = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def estimate_run_seconds(cfg: Config, train_size: int = 45000) -> float | None:
    """Seconds for a training run of `cfg` here (steps x measured step time x 1.15 for evaluation);
    a max-lr search is (bisection steps + 2) trials per seed of that many steps."""
    if cfg.task == "max_lr":
        from bnlab.tasks.max_lr_task import MaxLrOptions, trial_config

        opts = MaxLrOptions.parse(cfg.task_options, cfg.task)
        trial = estimate_run_seconds(trial_config(cfg, 0.1, 0, opts.steps), train_size)
        if trial is None:
            return None
        return trial * (opts.iters + 2) * len(opts.seeds)
    if cfg.task != "train":
        return None
    import json

    device = (
        "cuda"
        if (cfg.train.device == "auto" and torch.cuda.is_available())
        else (cfg.train.device if cfg.train.device != "auto" else "cpu")
    )
    n = cfg.data.subset or (cfg.data.synthetic_train if cfg.data.name == "synthetic" else train_size)
    n = max(n - (cfg.data.val_size if cfg.data.subset is None else 0), cfg.optim.batch_size)
    spe = max(1, n // cfg.optim.batch_size)
    steps = cfg.train.steps if cfg.train.steps is not None else int(round((cfg.train.epochs or 0) * spe))
    if steps == 0:
        return 2.0
    try:
        per = _step_seconds(
            json.dumps(cfg.model.model_dump(mode="json"), sort_keys=True), cfg.optim.batch_size, device
        )
    except Exception:  # noqa: BLE001 - an estimate must never stop a sweep
        return None
    return steps * per * 1.15


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


class Eta:
    """Time left in a sweep from the plan's per-run estimates (run id -> seconds; runs already finished have
    none), rescaled by how long the runs done so far took against their estimates."""

    def __init__(self, estimates: dict[str, float]) -> None:
        self.left_est = dict(estimates)
        self.done_est = 0.0
        self.t0 = time.monotonic()

    def done(self, rid: str) -> None:
        self.done_est += self.left_est.pop(rid, 0.0)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def seconds_left(self) -> float:
        rate = self.elapsed() / self.done_est if self.done_est > 0 else 1.0
        return sum(self.left_est.values()) * rate

    def text(self) -> str:
        if not self.left_est:
            return "nothing left"
        return f"~{fmt_seconds(self.seconds_left())} left"
