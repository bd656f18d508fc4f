"""The max_lr and diverging_step tasks through `execute`, on tiny synthetic runs."""

import json

from bnlab.tasks import execute, is_done, resolve


def test_diverging_step_task_saves_and_scans_the_diverging_update(tmp_path, tiny_overrides):
    over = tiny_overrides + [
        "task=diverging_step",
        "task_options={layers: [conv1], grid: 3, precision: float32}",
        "model.norm=none",
        "optim.lr=5.0",
        "train.divergence.threshold=5",
        "train.sync_every=4",  # the snapshot observer makes the run read every loss anyway
    ]
    cfg = resolve(None, over)
    st = execute(cfg, tmp_path / "d", progress=False)
    assert st["state"] == "diverged" and st["step"] >= 1
    assert (tmp_path / "d" / "ckpt" / "diverging.pt").exists() and is_done(cfg, tmp_path / "d")
    rows = [
        json.loads(x) for x in (tmp_path / "d" / "probes" / "diverging_step.jsonl").read_text().splitlines()
    ]
    assert rows and {r["step"] for r in rows} == {st["step"]}


def test_max_lr_task_brackets_the_threshold(tmp_path, tiny_overrides):
    over = tiny_overrides + [
        "task=max_lr",
        "task_options={steps: 4, iters: 1, lo: 0.001, hi: 100, start: 0.1}",
        "model.norm=none",
        "train.evaluate=false",
    ]
    st = execute(resolve(None, over), tmp_path / "m", progress=False)
    assert st["state"] == "complete"
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["trials"] >= 2
    lo, hi = summary["max_stable_lr"], summary["min_unstable_lr"]
    assert lo is None or hi is None or lo < hi
