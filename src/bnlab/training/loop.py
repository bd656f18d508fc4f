"""`run(cfg, run_dir)`: one training run, top to bottom, resumable.

A step is a pure function of (weights, optimizer state, step number): the minibatch and its
augmentation are drawn from generators seeded by (seed, step), so a run resumed from any checkpoint
replays exactly the steps an uninterrupted run would have taken (bit-identical on CPU).

Order inside a step: lr -> minibatch -> forward -> divergence check -> backward -> observers (they see
`.grad`, before the update) -> clip -> observers (before the update) -> optimizer step -> evaluation /
checkpoint when due. What a run asks for beyond training (probes, layer stats, TensorBoard, the
diverging-step snapshot, the loss window) are observers (bnlab.training.observers).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnlab.config import Config, to_yaml
from bnlab.errors import UserError
from bnlab.store.checkpoint import save_checkpoint
from bnlab.store.files import atomic_write_json, atomic_write_text
from bnlab.store.rundir import RunDir, environment
from bnlab.training.divergence import DivergenceCheck
from bnlab.training.evaluate import evaluate_splits
from bnlab.training.fast_path import compiled_forward, host_read_every, mark_step
from bnlab.training.meter import TrainMeter
from bnlab.training.observers import Observer, RunContext, observers_for
from bnlab.training.optim import make_optimizer
from bnlab.training.progress import Progress
from bnlab.training.resume import interrupt_reason, resume_point, saved_metrics, say
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


def run(
    cfg: Config, run_dir: str | Path, *, progress: bool = True, observers: Sequence[Observer] = ()
) -> dict[str, Any]:
    """Train (or resume) one run in `run_dir`; returns the final status dict.

    `observers`: added to those the config asks for (`observers_for(cfg)`), e.g. a task's own.
    A diverged run is a result (state "diverged"), not an error. Bad input raises UserError before
    anything is written."""
    rd = RunDir(run_dir)
    rd.check_links()  # never read, write or delete through a link out of the run directory
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
    spe = dd.steps_per_epoch(
        ocfg.batch_size
    )  # UserError if the batch exceeds the data: still nothing written
    total = total_steps(cfg, spe)

    rd.path.mkdir(parents=True, exist_ok=True)
    status_note = rd.check_status()  # a malformed status.json is set aside, not a traceback
    atomic_write_text(rd.config, to_yaml(cfg))
    env = environment(str(device), torch.get_num_threads(), tcfg.deterministic)
    atomic_write_json(rd.path / "env.json", env)

    eval_every = max(1, int(round(tcfg.eval_every * spe)))
    ckpt_every = max(1, int(round(tcfg.checkpoint_every * spe)))
    optimizer = make_optimizer(model, ocfg)
    div = DivergenceCheck(tcfg.divergence.mode, tcfg.divergence.threshold)
    loss_fn = nn.CrossEntropyLoss()
    if cfg.model.init.balanced_output_bias:
        _balance_output_bias(model, dd, rd, tcfg.seed)
    obs = [*observers_for(cfg), *observers]
    meter = TrainMeter(device)

    # --- resume ---------------------------------------------------------------------------------
    def restore(state: dict[str, Any]) -> None:
        div.reference = state["ref_loss"]
        meter.load_state_dict(state["acc"])
        for o in obs:
            if o.state_key is not None and o.state_key in state:
                o.load_state_dict(state[o.state_key])

    resumed = resume_point(rd, model, optimizer, device, restore)
    step, wall_before = resumed.step, resumed.wall_s
    if resumed.state is not None:
        notes = rd.truncate_metrics(step, saved_metrics(resumed.state))
        if progress:
            say(f"resuming from step {step} (run {rd.path.name})")
    else:
        notes = rd.truncate_metrics(-1)  # a run that never checkpointed starts its metrics afresh
        for p in rd.probes.glob("*"):  # and its probe files too (they are rewritten identically)
            if p.is_file() and ".corrupt-" not in p.name:
                p.unlink()
    notes = [*([status_note] if status_note else []), *resumed.warnings, *notes]
    for w in notes if progress else ():
        say(f"warning: {w}")
    rd.set_status("running", step, warnings=[*notes, *getattr(splits, "notes", [])])
    last_ckpt_step = step
    ctx = RunContext(cfg, model, optimizer, dd, rd.path, total, step, div)
    for o in obs:
        o.start(ctx)

    # Reading every `sync_every` steps (default: 50 on CUDA, 1 on CPU; bnlab.training.fast_path), the losses
    # stay on the device in between (and are read before any evaluation, checkpoint or observer action), so
    # the GPU never waits for the host; the first diverging step is still found exactly from the buffered
    # losses (tested on CPU). An observer that must see each loss before its update (the diverging-step
    # snapshot) makes the run read every step.
    sync_every = host_read_every(tcfg.sync_every, device, obs)
    fwd = compiled_forward(model, tcfg.compile, device)
    t0 = time.perf_counter()
    last_ckpt_time = time.monotonic()
    bar = Progress(total, enabled=progress, start=step, description=rd.path.name, log_every=tcfg.log_every)
    images_this_session = 0
    last_loss: float | None = None

    def wall() -> float:
        return wall_before + time.perf_counter() - t0

    def read_losses() -> tuple[int, float, str] | None:
        """Check the buffered losses in step order: the first diverging one -> (step, loss, reason)."""
        nonlocal last_loss
        for s, v in meter.read():
            verdict = div.check(v)
            if verdict is not None:
                return s, v, verdict
            last_loss = v
            for o in obs:
                o.on_loss(s, v)
        meter.fold()
        return None

    def diverged(at: int, value: float, verdict: str) -> dict[str, Any]:
        finite = value if math.isfinite(value) else None
        row = {"step": at, "epoch": round(at / spe, 6), "split": "train", "loss": finite, "acc": None}
        if not any(r["step"] == at and r["split"] == "train" for r in rd.read_metrics()):
            # (an evaluation at this step already wrote its train row: one row per (step, split))
            rd.append_metric({**row, "lr": lr_at(at, total, ocfg), "wall_s": round(wall(), 3)})
        for o in obs:
            o.on_diverged(at, value, verdict)
        rd.set_status("diverged", at, reason=verdict, loss=finite)
        bar.close(f"diverged at step {at}: {verdict}")
        return rd.status()

    def evaluate_now(at: int) -> None:
        rows = {"train": meter.take()} if meter.count else {}
        rows.update(evaluate_splits(model, dd, tcfg, ocfg.batch_size, final=at == total))
        for split, r in rows.items():
            line = {"step": at, "epoch": round(at / spe, 6), "split": split, **r}
            rd.append_metric({**line, "lr": lr_at(max(at - 1, 0), total, ocfg), "wall_s": round(wall(), 3)})
        for o in obs:
            o.on_eval(at, rows)
        bar.note(_eval_note(at / spe, rows))

    def checkpoint(at: int) -> None:
        nonlocal last_ckpt_step
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": at,
            "ref_loss": div.reference,
            "acc": meter.state_dict(),
            "wall_s": wall(),
            "metrics": rd.read_metrics(),  # restores rows lost from metrics.jsonl on resume
        }
        state.update({o.state_key: o.state_dict() for o in obs if o.state_key is not None})
        save_checkpoint(rd.ckpt, state, at, keep=tcfg.keep_checkpoints)
        last_ckpt_step = at
        rd.set_status("running", at, loss=last_loss)

    try:
        while step < total:
            lr = lr_at(step, total, ocfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = dd.train_batch(step, ocfg.batch_size, seed=tcfg.seed, augment=cfg.data.augment)
            if tcfg.channels_last and device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            model.train()
            mark_step(tcfg.compile, device)
            with torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=tcfg.amp and device.type == "cuda"
            ):
                out = fwd(x)
                loss = loss_fn(out.float(), y)
            meter.buffer(step, loss.detach())
            # read now: a diverging loss stops the run before its update (and before an observer acts on it)
            if sync_every == 1 or any(o.due(step) for o in obs):
                fired = read_losses()
                if fired is not None:
                    return diverged(*fired)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for o in obs:
                o.after_backward(step, lr)
            if ocfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), ocfg.grad_clip)
            for o in obs:
                o.before_update(step)
            optimizer.step()
            meter.add(loss.detach(), out.detach(), y)
            if sync_every == 1:
                meter.fold()
            images_this_session += y.numel()
            step += 1

            due_eval = step % eval_every == 0 or step == total
            due_ckpt = step < total and (
                step % ckpt_every == 0 or time.monotonic() - last_ckpt_time > 60 * tcfg.checkpoint_minutes
            )
            if meter.buffered and (
                len(meter.buffered) >= sync_every or due_eval or due_ckpt or any(o.due(step) for o in obs)
            ):
                fired = read_losses()
                if fired is not None:
                    return diverged(*fired)
            if not meter.buffered:
                img_s = images_this_session / max(time.perf_counter() - t0, 1e-9)
                bar.update(step, loss=last_loss if last_loss is not None else math.nan, lr=lr, img_s=img_s)
            if due_eval:
                evaluate_now(step)
            if due_ckpt:
                checkpoint(step)
                last_ckpt_time = time.monotonic()
        for o in obs:
            o.after_training(total, lr_at(total, total, ocfg))
    except KeyboardInterrupt:
        bar.close("interrupted")
        rd.set_status("interrupted", last_ckpt_step, reason=interrupt_reason(step, last_ckpt_step))
        raise
    except OSError as e:  # a full disk is not the run's fault: the run stays resumable
        bar.close("failed")
        again = interrupt_reason(step, last_ckpt_step).split("; ", 1)[1]
        try:
            rd.set_status("interrupted", last_ckpt_step, reason=f"write failed: {e.strerror or e}; {again}")
        except OSError:
            pass  # status.json keeps "running" with this pid: readers see "interrupted" once we exit
        raise
    finally:
        for o in obs:
            o.close()

    elapsed = time.perf_counter() - t0
    img_per_s = images_this_session / elapsed if elapsed > 0 else None
    summary = _summary(rd.read_metrics(), total, wall(), img_per_s)
    summary["first_loss"] = div.reference
    for o in obs:
        summary.update(o.summary())
    atomic_write_json(rd.summary, summary)
    rd.set_status("complete", total, loss=summary.get("train_loss"))
    bar.close("complete")
    return rd.status()


def _balance_output_bias(model: nn.Module, dd, rd: RunDir, seed: int) -> None:
    from bnlab.nn.init import balance_output_bias

    cal_x, _ = dd.probe_batches(1, min(512, dd.n_train), seed=seed + 7919)[0]  # calibration batch
    balance = balance_output_bias(model, cal_x)
    atomic_write_json(rd.path / "balance.json", balance)
    if balance["gap"] >= 1e-3:
        rd.add_warning(
            f"balanced_output_bias reached a gap of {balance['gap']:.2e} (>= 1e-3) on the calibration "
            "batch: the logits are too large for a float32 bias to balance"
        )


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
