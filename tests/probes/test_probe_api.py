"""The probe API: names, statistics vocabulary, wrappers, and models whose blocks hide in containers."""

import inspect
import warnings

import numpy as np
import pytest
import torch
from nets import make
from torch import nn

import bnlab.probes
from bnlab.errors import UserError
from bnlab.probes import (
    PROBES,
    ProbeContext,
    activation_moments,
    gradient_histogram,
    kernel_alignment,
    output_bias,
    per_example_gradients,
    unwrap_model,
)
from bnlab.probes.update import state_differences, state_snapshot


def test_every_registered_probe_is_importable_under_its_name():
    for name in PROBES.names():
        fn = getattr(bnlab.probes, name)
        assert fn is PROBES.get(name), name
        assert fn.__name__ == name and fn.__doc__, name
        params = list(inspect.signature(fn).parameters)
        assert params[0] == "model" and "norm_stats" in params or name == "layer_stats", (name, params)
        module = __import__(f"bnlab.probes.{name}", fromlist=[name])  # a module named after each probe
        assert getattr(module, name) is fn
    assert bnlab.probes.ProbeContext is ProbeContext
    from bnlab.probes.context import ProbeContext as ctx

    assert ctx is ProbeContext


def test_register_probe_takes_name_from_function_and_summary_from_docstring():
    from bnlab.probes.registry import PROBE_KIND, register_probe

    def first_probe(model, inputs, targets, *, loss_fn=None, norm_stats="batch"):
        """Counts the rows: a made-up probe. More detail here.

        Second paragraph."""
        return len(inputs)

    def second_probe(model, batches, *, ctx=None, norm_stats="batch"):
        """Counts the batches."""
        return len(batches)

    def third(model, inputs, targets, *, loss_fn=None):
        return 0

    try:
        bare = register_probe(first_probe)
        data = register_probe(kind="data")(second_probe)
        named = register_probe("third_probe_named", summary="Named explicitly.")(third)
        assert PROBES.get("first_probe") is bare and PROBE_KIND["first_probe"] == "batch"
        assert PROBES.doc("first_probe") == "Counts the rows: a made-up probe."
        assert list(inspect.signature(bare).parameters) == [
            "model",
            "inputs",
            "targets",
            "loss_fn",
            "norm_stats",
        ]
        assert bare.__doc__ == first_probe.__doc__ and bare.__name__ == "first_probe"
        assert PROBES.get("second_probe") is data and PROBE_KIND["second_probe"] == "data"
        assert PROBES.doc("second_probe") == "Counts the batches."
        assert (
            PROBES.get("third_probe_named") is named
            and PROBES.doc("third_probe_named") == "Named explicitly."
        )
    finally:
        for n in ("first_probe", "second_probe", "third_probe_named"):
            PROBES._items.pop(n, None)
            PROBES._docs.pop(n, None)
            PROBE_KIND.pop(n, None)


class DictNet(nn.Module):
    """Top-level child is a ModuleDict that is never called: forward iterates its values."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleDict(
            {
                "a": nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
                "b": nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
            }
        )
        self.unused = nn.Linear(2, 2)  # registered, never called: no block output
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.stages.values():
            x = block(x)
        return self.head(x.mean((2, 3)))


def test_activation_moments_looks_inside_containers_that_are_never_called():
    torch.manual_seed(0)
    net = DictNet().double()
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    before = state_snapshot(net)
    res = activation_moments(net, x)
    assert state_differences(before, state_snapshot(net)) == []
    assert list(dict.fromkeys(res.table.layer)) == ["stages.a", "stages.b", "head"]
    net.train()
    with torch.no_grad():
        ref = net.stages["a"](x)
    ref64 = ref.transpose(0, 1).reshape(4, -1)
    np.testing.assert_allclose(res.arrays["stages.a/mean"], ref64.mean(1).numpy(), atol=1e-12)
    np.testing.assert_allclose(res.arrays["stages.a/std"], ref64.std(1, correction=0).numpy(), atol=1e-12)


def test_norm_stats_vocabulary_aliases_and_none():
    net, x, y = make(True)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.num_batches_tracked.fill_(1)
    with pytest.warns(DeprecationWarning, match="coupled"):
        old = per_example_gradients(net, x, y, "coupled")
    new = per_example_gradients(net, x, y, "batch")
    assert all(torch.equal(old[k], new[k]) for k in new)
    with pytest.warns(DeprecationWarning, match="eval"):
        res = output_bias(net, x, y, norm_stats="eval")
    assert res.attrs["norm_stats"] == "running"
    assert output_bias(net, x, y, norm_stats="frozen").attrs["norm_stats"] == "frozen"
    with pytest.raises(UserError, match="norm_stats"):
        output_bias(net, x, y, norm_stats="batch_stats")
    plain, x, y = make(False)
    assert kernel_alignment(plain, x, y).attrs["norm_stats"] == "none"
    with pytest.warns(DeprecationWarning):
        r = bnlab.probes.ProbeResult.from_rows([{"metric": "m", "value": 1.0}], norm_mode="batch_stats")
    assert r.attrs == {"norm_stats": "batch"}


def test_frozen_matches_batch_forward_and_has_no_path_through_the_statistics():
    net, x, y = make(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fr = activation_moments(net, x, y, norm_stats="frozen")
        ba = activation_moments(net, x, y, norm_stats="batch")
    for k in ba.arrays:  # the forward values agree: frozen only cuts the gradient path
        np.testing.assert_allclose(fr.arrays[k], ba.arrays[k], rtol=1e-6, atol=1e-7)
    g_fr = gradient_histogram(net, x, y, per_example="frozen")
    assert g_fr.attrs["norm_stats"] == "frozen"


def test_unwrap_compiled_and_data_parallel():
    net, x, y = make(True)
    compiled = torch.compile(net)  # an OptimizedModule; never called here, so nothing is compiled
    assert compiled is not net and unwrap_model(compiled) is net
    dp = nn.DataParallel(net)
    assert unwrap_model(dp) is net and unwrap_model(torch.compile(dp)) is net
    before = state_snapshot(net)
    got = kernel_alignment(compiled, x, y)
    ref = kernel_alignment(net, x, y)
    assert state_differences(before, state_snapshot(net)) == []
    assert list(got.table.layer) == list(ref.table.layer)  # names without the `_orig_mod.` prefix
    np.testing.assert_array_equal(got.table.value.to_numpy(), ref.table.value.to_numpy())
    pe = per_example_gradients(dp, x, y, "frozen")
    assert set(pe) == {n for n, _ in net.named_parameters()}
