"""Writers: TensorBoard (tb extra) gets histograms for gradient_histogram and scalars for the table rows;
W&B (wandb extra) in offline mode keeps the logged scalars and histograms in its offline run folder.
Also: a torch.compile'd model and a DDP-wrapped one are measured through their unwrapped module."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from monitor_nets import batches, small_bn_net, train  # noqa: E402

from bnlab.monitor import Monitor
from bnlab.monitor.writers import scalar_tags
from bnlab.store import load_probes


def test_tensorboard_histograms_and_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="the tb extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, mon = train(
        small_bn_net(),
        batches(6),
        lambda m, o: Monitor(m, o, schedule=[0, 5], runs=tmp_path, writers=["tensorboard"]),
    )
    acc = EventAccumulator(str(mon.run_dir / "tb"), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    hists = acc.Tags()["histograms"]
    assert "gradient_histogram/0" in hists and "gradient_histogram/8" in hists
    assert [e.step for e in acc.Histograms("gradient_histogram/0")] == [0, 5]
    h = acc.Histograms("gradient_histogram/0")[0].histogram_value
    ref = load_probes(tmp_path, "gradient_histogram")
    count = ref[(ref.layer == "0") & (ref.metric == "count") & (ref.step == 0)]["value"].item()
    assert h.num == count == 8 * 3 * 3 * 3
    scalars = acc.Tags()["scalars"]
    assert "layer_stats/grad_norm/0" in scalars and "train/loss" in scalars
    ls = ref = load_probes(tmp_path, "layer_stats")
    want = ls[(ls.layer == "0") & (ls.metric == "grad_norm") & (ls.step == 5)]["value"].item()
    got = [e.value for e in acc.Scalars("layer_stats/grad_norm/0") if e.step == 5][0]
    assert got == pytest.approx(want, rel=1e-6)


def test_scalar_tags_keep_key_columns():
    from bnlab.probes.result import ProbeResult

    r = ProbeResult.from_rows(
        [
            {"probe": "kernel_alignment", "layer": "c1", "metric": "ratio", "value": 2.0, "reduce": "batch"},
            {"probe": "kernel_alignment", "layer": "c1", "metric": "ratio", "value": 9.0, "reduce": "all"},
            {
                "probe": "kernel_alignment",
                "layer": "c1",
                "metric": "nan",
                "value": float("nan"),
                "reduce": "all",
            },
        ]
    )
    assert scalar_tags("kernel_alignment", r) == {
        "kernel_alignment/ratio/c1/batch": 2.0,
        "kernel_alignment/ratio/c1/all": 9.0,
    }


def wandb_records(path: Path) -> list:
    """The protobuf Records of an offline run's .wandb file (a LevelDB-style log: 7-byte file header, 32 KiB
    blocks, 7-byte record headers crc32/length/type with FULL=1 FIRST=2 MIDDLE=3 LAST=4)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, out, part = path.read_bytes(), 7, [], b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        n, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if n == 0 and kind == 0:
            pos += left  # zero padding to the end of the block
            continue
        part += data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
            part = b""
    return out


def test_wandb_offline_run_keeps_scalars_and_histograms(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'bnlab[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    _, mon = train(
        small_bn_net(),
        batches(6),
        lambda m, o: Monitor(m, o, schedule=[0, 5], runs=tmp_path, writers=["wandb"]),
    )
    offline = list((mon.run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    (stream,) = offline[0].glob("run-*.wandb")  # the record stream `wandb sync` uploads
    history = {}  # step -> {key: value}
    for rec in wandb_records(stream):
        if rec.WhichOneof("record_type") == "history":
            row: dict = {}
            for (
                i
            ) in rec.history.item:  # a histogram arrives as nested keys [tag, "_type" | "values" | "bins"]
                path = [i.key] if i.key else list(i.nested_key)
                node = row
                for k in path[:-1]:
                    node = node.setdefault(k, {})
                node[path[-1]] = json.loads(i.value_json)
            history.setdefault(row.get("_step"), {}).update(row)
    assert sorted(k for k in history if k is not None) == [0, 5]
    hist = history[5]["gradient_histogram/0"]
    assert hist["_type"] == "histogram" and sum(hist["values"]) == 8 * 3 * 3 * 3
    ls = load_probes(tmp_path, "layer_stats")
    want = ls[(ls.layer == "0") & (ls.metric == "grad_norm") & (ls.step == 5)]["value"].item()
    assert history[5]["layer_stats/grad_norm/0"] == pytest.approx(want, rel=1e-6)


def _trained(model, data, make=None):
    torch.manual_seed(0)
    train(model, data, make)
    return model


def _equal(a, b):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


def test_compiled_and_ddp_models_are_unwrapped(tmp_path):
    """Each wrapper trained with and without a Monitor gives bit-identical weights; probes name the inner
    module's layers (no `_orig_mod.` / `module.` prefixes)."""
    import torch.distributed as dist

    data = batches(6)
    bare = _trained(torch.compile(small_bn_net(), backend="eager"), data)
    compiled = _trained(
        torch.compile(small_bn_net(), backend="eager"),
        data,
        lambda m, o: Monitor(m, o, schedule=[0, 5], runs=tmp_path / "c"),
    )
    _equal(bare._orig_mod, compiled._orig_mod)
    assert set(load_probes(tmp_path / "c", "layer_stats")["layer"]) >= {"0", "1", "3", "4", "8"}

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        bare = _trained(torch.nn.parallel.DistributedDataParallel(small_bn_net()), data)
        ddp = _trained(
            torch.nn.parallel.DistributedDataParallel(small_bn_net()),
            data,
            lambda m, o: Monitor(m, o, schedule=[0, 5], runs=tmp_path / "d"),
        )
        _equal(bare.module, ddp.module)
        layers = set(load_probes(tmp_path / "d", "activation_moments")["layer"])
        assert layers and not any(str(x).startswith(("module.", "_orig_mod.")) for x in layers)
    finally:
        dist.destroy_process_group()


def test_run_dir_writer_keeps_every_step_as_write_probe_does(tmp_path):
    """RunDirWriter (one store.ProbeWriter: nothing read back) leaves the files store.write_probe leaves for
    the same results (the reference), and the reader returns every step's arrays."""
    import numpy as np

    from bnlab.monitor.writers import RunDirWriter
    from bnlab.probes.result import ProbeResult
    from bnlab.store.probe_files import read_probe_arrays
    from bnlab.store.rundir import write_probe

    ours, ref = tmp_path / "ours", tmp_path / "ref"
    ours.mkdir(), ref.mkdir()
    writer = RunDirWriter(ours)
    rng = np.random.default_rng(0)
    sent = {}
    for step in (0, 5, 10):
        rows = [{"probe": "p", "layer": "conv", "metric": "m", "value": float(step)}]
        sent[step] = rng.standard_normal(7)
        res = ProbeResult.from_rows(rows, {"conv/a": sent[step]}, norm_stats="batch")
        writer.probe(step, "p", res)
        write_probe(ref, "p", res, step=step)
    assert (ours / "probes/p.jsonl").read_text() == (ref / "probes/p.jsonl").read_text()
    a, b = read_probe_arrays(ours / "probes", "p"), read_probe_arrays(ref / "probes", "p")
    assert sorted(a[0]) == sorted(b[0]) == [0, 5, 10] and a[1] == b[1] == []
    for step, want in sent.items():
        np.testing.assert_array_equal(a[0][step]["conv/a"], want)
        np.testing.assert_array_equal(b[0][step]["conv/a"], want)
