"""`run(cfg, run_dir)`: one training run, top to bottom, resumable.

A step is a pure function of (weights, optimizer state, step number): the minibatch and its
augmentation are drawn from generators seeded by (seed, step), so a run resumed from any checkpoint
replays exactly the steps an uninterrupted run would have taken (bit-identical on CPU).

Order inside a step: lr for this step -> minibatch -> forward -> divergence check -> backward ->
scheduled probes (they see `.grad`, before the update) -> clip -> remember θ (for the diverging-step
experiment) -> optimizer step -> evaluation / checkpoint when due.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnlab.config import Config, to_yaml
from bnlab.errors import UserError
from bnlab.store.checkpoint import load_latest, save_checkpoint
from bnlab.store.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from bnlab.store.rundir import RunDir, environment, write_probe
from bnlab.training.divergence import DivergenceCheck
from bnlab.training.evaluate import evaluate, recalibrate_bn
from bnlab.training.optim import make_optimizer
from bnlab.training.progress import Progress
from bnlab.training.schedules import lr_at


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name} but CUDA is not available here; use train.device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"train.device={name!r} is not a device name (auto, cpu, cuda, cuda:N)") from None


def build(cfg: Config, device: torch.device):
    """(model, splits, device data) for a config: the same objects the loop uses, for probes and tools."""
    from bnlab import data as data_mod
    from bnlab.models import build_model

    splits = data_mod.load(cfg.data, seed=cfg.train.seed)
    mcfg = cfg.model.model_dump()
    mcfg["num_classes"] = mcfg["num_classes"] or splits.num_classes
    mcfg["in_channels"] = splits.train_x.shape[1]
    mcfg["image_size"] = splits.train_x.shape[-1]
    torch.manual_seed(cfg.train.seed)  # the weights at init depend on the seed only
    model = build_model(**mcfg).to(device)
    if cfg.train.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stub lacks memory_format
    dd = data_mod.DeviceData(splits, device)
    return model, splits, dd


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    if cfg.train.steps is not None:
        return int(cfg.train.steps)
    return int(round(float(cfg.train.epochs or 0) * steps_per_epoch))


def run(cfg: Config, run_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one run in `run_dir`; returns the final status dict.

    A diverged run is a result (state "diverged"), not an error. Bad input raises UserError before
    anything is written."""
    rd = RunDir(run_dir)
    if rd.is_terminal():
        return rd.status()
    tcfg, ocfg = cfg.train, cfg.optim
    device = resolve_device(tcfg.device)
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    if tcfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    model, splits, dd = build(cfg, device)  # may raise UserError (missing data): nothing written yet

    rd.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rd.config, to_yaml(cfg))
    atomic_write_json(
        rd.path / "env.json", environment(str(device), torch.get_num_threads(), tcfg.deterministic)
    )

    spe = dd.steps_per_epoch(ocfg.batch_size)
    total = total_steps(cfg, spe)
    eval_every = max(1, int(round(tcfg.eval_every * spe)))
    ckpt_every = max(1, int(round(tcfg.checkpoint_every * spe)))
    optimizer = make_optimizer(model, ocfg)
    div = DivergenceCheck(tcfg.divergence.mode, tcfg.divergence.threshold)
    loss_fn = nn.CrossEntropyLoss()

    if cfg.model.init.balanced_output_bias:
        from bnlab.nn.init import balance_output_bias

        cal_x, _ = dd.probe_batches(1, min(512, dd.n_train), seed=tcfg.seed + 7919)[0]  # calibration batch
        balance = balance_output_bias(model, cal_x)
        atomic_write_json(rd.path / "balance.json", balance)
        if balance["gap"] >= 1e-3:
            rd.add_warning(
                f"balanced_output_bias reached a gap of {balance['gap']:.2e} (>= 1e-3) on the calibration "
                "batch: the logits are too large for a float32 bias to balance"
            )

    # --- resume ---------------------------------------------------------------------------------
    step, wall_before = 0, 0.0
    acc: dict[str, Any] = {
        "loss": 0.0,
        "correct": 0,
        "count": 0,
    }  # running train metrics since the last evaluation
    recent: list[float] = []  # the last 10 minibatch losses (stability rule of max_stable_lr)
    state, warnings = load_latest(rd.ckpt, map_location=device)
    if warnings:
        for w in warnings:
            rd.add_warning(w)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, wall_before = int(state["step"]), float(state["wall_s"])
        div.reference = state["ref_loss"]
        acc = dict(state["acc"])
        recent = list(state["recent"])
        rd.truncate_metrics(step)
    else:
        rd.truncate_metrics(-1)  # a run that never checkpointed starts its metrics afresh
        for p in rd.probes.glob("*"):  # and its probe files too (they are rewritten identically)
            p.unlink()
    rd.set_status("running", step, warnings=list(getattr(splits, "notes", [])))

    schedules = [(p, p.steps(total)) for p in cfg.probes]
    t0 = time.perf_counter()
    last_ckpt_time = time.monotonic()
    bar = Progress(total, enabled=progress, start=step, description=rd.path.name)
    images_this_session = 0
    tb = _tensorboard(rd.path, step) if tcfg.tensorboard else None
    prev_state: dict[str, Any] | None = None  # θ and optimizer state before the last update (sync_every 1)

    def wall() -> float:
        return wall_before + time.perf_counter() - t0

    def checkpoint(at: int) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": at,
            "ref_loss": div.reference,
            "acc": dict(acc),
            "recent": list(recent),
            "wall_s": wall(),
        }
        save_checkpoint(rd.ckpt, state, at, keep=tcfg.keep_checkpoints)

    def do_eval(at: int, final: bool = False) -> dict[str, Any]:
        epoch = at / spe
        lr_now = lr_at(max(at - 1, 0), total, ocfg)
        rows = []
        if acc["count"]:
            rows.append(
                {"split": "train", "loss": acc["loss"] / acc["count"], "acc": acc["correct"] / acc["count"]}
            )
        if tcfg.recalibrate_bn:
            recalibrate_bn(model, dd, ocfg.batch_size, seed=tcfg.seed)
        for split in ("train_eval", "val", "test") if tcfg.evaluate else ():
            n = tcfg.eval_train_subset if split == "train_eval" else None
            if split == "test" and not final:
                n = tcfg.eval_test_subset
            res = evaluate(model, dd.eval_batches(split, 500, n=n, seed=tcfg.seed))
            if res is not None:
                rows.append({"split": split, "loss": res[0], "acc": res[1]})
        out = {}
        for r in rows:
            line = {"step": at, "epoch": round(epoch, 6), **r, "lr": lr_now, "wall_s": round(wall(), 3)}
            rd.append_metric(line)
            out[r["split"]] = r
            if tb is not None:
                tb.add_scalar(f"{r['split']}/loss", r["loss"], at)
                tb.add_scalar(f"{r['split']}/acc", r["acc"], at)
        acc.update(loss=0.0, correct=0, count=0)
        return out

    def run_probes(at: int) -> None:
        for sched, steps in schedules:
            if at in steps:
                result = _run_probe(model, dd, sched, cfg, optimizer, at, lr_at(at, total, ocfg), rd.path)
                write_probe(rd.path, sched.name, result, step=at)

    last_eval: dict[str, Any] = {}
    # With sync_every > 1 (meant for CUDA) the losses stay on the device and are read every `sync_every` steps
    # (and before any evaluation, checkpoint or probe), so the GPU never waits for the host; the first
    # diverging step is still found exactly from the buffered losses (tested on CPU).
    sync_every = tcfg.sync_every
    fwd = torch.compile(model) if tcfg.compile and device.type == "cuda" else model
    dev_loss = torch.zeros((), dtype=torch.float64, device=device)  # sums since the last read
    dev_correct = torch.zeros((), dtype=torch.int64, device=device)
    buffered: list[tuple[int, torch.Tensor]] = []  # (step, loss on device) not yet read

    def drain() -> tuple[int, float, str] | None:
        """Read the buffered losses; fold them into the accumulators; first divergence -> (step, loss, reason)."""
        nonlocal recent
        if not buffered:
            return None
        vals = torch.stack([v for _, v in buffered]).double().cpu().tolist()
        for (s_i, _), v in zip(buffered, vals):
            verdict = div.check(v)
            if verdict is not None:
                buffered.clear()
                return s_i, v, verdict
            recent = (recent + [v])[-10:]
        fold()
        buffered.clear()
        return None

    def fold() -> None:
        """Move the device-side loss/accuracy sums into the running train metrics (one host read)."""
        acc["loss"] += float(dev_loss)
        acc["correct"] += int(dev_correct)
        dev_loss.zero_()
        dev_correct.zero_()

    def diverged(
        at: int, value: float, verdict: str, lr_then: float, snapshot: dict | None
    ) -> dict[str, Any]:
        finite = value if math.isfinite(value) else None
        rd.append_metric(
            {
                "step": at,
                "epoch": round(at / spe, 6),
                "split": "train",
                "loss": finite,
                "acc": None,
                "lr": lr_then,
                "wall_s": round(wall(), 3),
            }
        )
        if snapshot is not None and snapshot["step"] == at - 1:
            _save_diverging(rd, snapshot, at, value, div)
        rd.set_status("diverged", at, reason=verdict, loss=finite)
        bar.close(f"diverged at step {at}: {verdict}")
        return rd.status()

    try:
        while step < total:
            lr = lr_at(step, total, ocfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = dd.train_batch(step, ocfg.batch_size, seed=tcfg.seed, augment=cfg.data.augment)
            if tcfg.channels_last and device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            model.train()
            with torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=tcfg.amp and device.type == "cuda"
            ):
                out = fwd(x)
                loss = loss_fn(out.float(), y)
            loss_det = loss.detach()
            buffered.append((step, loss_det))
            if sync_every == 1:  # read now: a diverging loss stops the run before its update
                fired = drain()
                if fired is not None:
                    return diverged(*fired, lr, prev_state)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if schedules:
                run_probes(step)
            if tcfg.layer_stats_every and step % tcfg.layer_stats_every == 0:
                write_probe(rd.path, "layer_stats", _layer_stats(model, optimizer, step, lr), step=step)
            if ocfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), ocfg.grad_clip)
            if sync_every == 1:
                prev_state = _snapshot(model, optimizer, step)
            optimizer.step()

            dev_loss.add_(loss_det.double() * y.numel())
            dev_correct.add_((out.detach().argmax(1) == y).sum())
            acc["count"] += y.numel()
            if sync_every == 1:
                fold()
            images_this_session += y.numel()
            step += 1
            due_eval = step % eval_every == 0 or step == total
            due_ckpt = step < total and (
                step % ckpt_every == 0 or time.monotonic() - last_ckpt_time > 60 * tcfg.checkpoint_minutes
            )
            due_probe = schedules and any(step in st for _, st in schedules)
            if sync_every > 1 and (len(buffered) >= sync_every or due_eval or due_ckpt or due_probe):
                fired = drain()
                if fired is not None:
                    return diverged(fired[0], fired[1], fired[2], lr_at(fired[0], total, ocfg), None)
            if not buffered:
                bar.update(
                    step,
                    loss=recent[-1] if recent else float("nan"),
                    lr=lr,
                    img_s=images_this_session / max(time.perf_counter() - t0, 1e-9),
                )
            if due_eval:
                last_eval = do_eval(step, final=step == total)
                bar.note(_eval_note(step / spe, last_eval))
            if due_ckpt:
                checkpoint(step)
                last_ckpt_time = time.monotonic()
                rd.set_status("running", step, loss=recent[-1] if recent else None)
        if any(total in steps for _, steps in schedules):
            optimizer.zero_grad(set_to_none=True)
            run_probes(total)
    except KeyboardInterrupt:
        bar.close("interrupted")
        rd.set_status("running", step, reason="interrupted (resume by running the same command again)")
        raise
    except OSError as e:
        bar.close("failed")
        rd.set_status("failed", step, reason=f"write failed: {e.strerror or e}")
        raise

    elapsed = time.perf_counter() - t0
    metrics = rd.read_metrics()
    summary = _summary(metrics, total, wall(), images_this_session / elapsed if elapsed > 0 else None)
    summary["first_loss"] = div.reference
    summary["last10_loss"] = sum(recent) / len(recent) if recent else None
    atomic_write_json(rd.summary, summary)
    rd.set_status("complete", total, loss=summary.get("train_loss"))
    if tb is not None:
        tb.close()
    bar.close("complete")
    return rd.status()


def _tensorboard(run_dir: Path, step: int):
    """A SummaryWriter on run_dir/tb when tensorboard is installed (events after `step` are purged on resume)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the `tb` extra is not installed
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=step if step > 0 else None)


def _layer_stats(model: nn.Module, optimizer: torch.optim.Optimizer, step: int, lr: float):
    from bnlab.probes.context import ProbeContext
    from bnlab.probes.layer_stats import layer_stats

    return layer_stats(model, ctx=ProbeContext(step=step, optimizer=optimizer, lr=lr))


def _eval_note(epoch: float, ev: dict[str, Any]) -> str:
    parts = [f"epoch {epoch:.2f}"]
    for split in ("train", "test"):
        if split in ev:
            parts.append(f"{split} loss {ev[split]['loss']:.3f} acc {ev[split]['acc']:.3f}")
    return "  ".join(parts)


def _summary(metrics: list[dict], steps: int, wall_s: float, img_per_s: float | None) -> dict[str, Any]:
    last: dict[str, dict] = {}
    for m in metrics:
        if m.get("acc") is not None:
            last[m["split"]] = m
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        out[f"{split}_loss"] = last.get(split, {}).get("loss")
        out[f"{split}_acc"] = last.get(split, {}).get("acc")
    out.update(
        steps=steps, wall_s=round(wall_s, 3), img_per_s=None if img_per_s is None else round(img_per_s, 2)
    )
    return out


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> dict[str, Any]:
    """θ and optimizer state before this step's update (kept one step, for the diverging-step probe)."""
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": _clone_opt_state(optimizer.state_dict()),
        "step": step,
    }


def _clone_opt_state(sd: dict[str, Any]) -> dict[str, Any]:
    return {
        "state": {
            k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in v.items()}
            for k, v in sd["state"].items()
        },
        "param_groups": [dict(g) for g in sd["param_groups"]],
    }


def _save_diverging(
    rd: RunDir, prev: dict[str, Any], fired_step: int, loss: float, div: DivergenceCheck
) -> None:
    import io

    buf = io.BytesIO()
    torch.save(
        {
            **prev,
            "fired_step": fired_step,
            "loss": loss if math.isfinite(loss) else float("inf"),
            "threshold": div.limit(),
        },
        buf,
    )
    atomic_write_bytes(rd.ckpt / "diverging.pt", buf.getvalue())


def _run_probe(model, dd, sched, cfg: Config, optimizer, step: int, lr: float, run_dir: Path):
    from bnlab.probes.context import ProbeContext
    from bnlab.probes.runner import apply_probe, probe_batch_seed

    batches = dd.probe_batches(
        sched.batches, sched.batch_size or cfg.optim.batch_size, seed=probe_batch_seed(cfg)
    )
    ctx = ProbeContext(step=step, optimizer=optimizer, lr=lr, run_dir=run_dir, config=cfg)
    return apply_probe(sched.name, model, batches, ctx, sched.options)
