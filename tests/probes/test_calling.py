"""One calling convention for every registered probe: probe(model, x, y) and probe(model, [(x, y)] * 4),
with no other arguments, on a tiny BN ResNet; results' value()/wide(); errors that name what is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bnlab
from bnlab.errors import UserError
from bnlab.probes import PROBE_KIND, PROBES, ProbeContext, kernel_alignment, layer_stats, sgd_noise
from bnlab.probes.update import state_differences, state_snapshot


def tiny_resnet() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = bnlab.build_model(name="resnet_cifar", depth=8, norm="batch", width=1)
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(4, 3, 4, 4, generator=g), torch.randint(0, 10, (4,), generator=g)


@pytest.mark.parametrize("name", PROBES.names())
def test_every_probe_takes_one_batch_and_a_list_of_batches(name: str) -> None:
    model, x, y = tiny_resnet()
    probe = PROBES.get(name)
    before = state_snapshot(model)
    for form, call in (("one", lambda: probe(model, x, y)), ("list", lambda: probe(model, [(x, y)] * 4))):
        try:
            res = call()
        except UserError as e:  # a data probe that needs more than it got says what
            assert PROBE_KIND[name] == "data", (name, form, e)
            assert any(w in str(e) for w in ("optimizer", "minibatches", "backward")), str(e)
            continue
        assert len(res.table) > 0, (name, form)
        if PROBE_KIND[name] == "batch" and form == "list":
            assert sorted(res.table["batch"].unique()) == [0, 1, 2, 3], name
            one = probe(model, x, y).table
            # each batch measured on its own (never concatenated): all four equal the single-batch rows
            for b in range(4):
                np.testing.assert_array_equal(
                    res.table[res.table["batch"] == b]["value"].to_numpy(), one["value"].to_numpy()
                )
        assert state_differences(before, state_snapshot(model)) == [], (name, form)


def test_data_probes_with_one_batch_name_what_they_need() -> None:
    model, x, y = tiny_resnet()
    with pytest.raises(UserError, match="at least 2 minibatches"):
        sgd_noise(model, x, y)
    res = sgd_noise(model, [(x, y), (x.flip(0), y.flip(0))])
    assert res.attrs["conventions"].startswith("noise and noise_over_bound")  # batch noise, frozen bound
    assert {"noise_same_stats", "noise_over_bound_same_stats"} <= set(res.table["metric"])


def test_loss_fn_is_accepted_by_every_probe_form() -> None:
    model, x, y = tiny_resnet()

    def doubled(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 2 * F.cross_entropy(out, t)

    # the same Lanczos start on 2H: every iterate doubles, converged or not
    a = PROBES.get("hessian_top_eig")(model, x, y, iters=40).value("lambda_max")
    b = PROBES.get("hessian_top_eig")(model, x, y, loss_fn=doubled, iters=40).value("lambda_max")
    assert b == pytest.approx(2 * a, rel=1e-3)
    ka = kernel_alignment(model, [(x, y)] * 2, loss_fn=doubled, reduce=["all"])
    kb = kernel_alignment(model, x, y, ctx=ProbeContext(loss_fn=doubled), reduce=["all"])
    assert ka.value("sum_abs", layer="conv1", batch=1) == pytest.approx(kb.value("sum_abs", layer="conv1"))


def test_value_and_wide() -> None:
    model, x, y = tiny_resnet()
    res = kernel_alignment(model, x, y)
    t = res.table
    want = t[(t.metric == "ratio") & (t.layer == "conv1") & (t["reduce"] == "batch")]["value"].item()
    assert res.value("ratio", layer="conv1", reduce="batch") == want
    assert res.wide().loc[("conv1", "batch"), "ratio"] == want
    with pytest.raises(UserError, match="reduce="):
        res.value("ratio", layer="conv1")
    with pytest.raises(UserError, match="no metric"):
        res.value("lambda_max")


def test_layer_stats_by_hand_says_why_and_uses_batches() -> None:
    model, x, y = tiny_resnet()
    with pytest.raises(UserError, match="backward"):
        layer_stats(model)
    res = layer_stats(model, x, y)
    assert res.attrs["grad_source"] == "batches"
    F.cross_entropy(model(x), y).backward()
    ref = model.conv1.weight.grad.norm().item()
    assert res.value("grad_norm", layer="conv1") == pytest.approx(ref, rel=1e-5)
    assert layer_stats(model).attrs["grad_source"] == "grad"


def test_unknown_names_suggest_the_probe() -> None:
    with pytest.raises(UserError, match="did you mean step_size_scan"):
        PROBES.get("step_size")
    with pytest.raises(UserError, match="not an .inputs, targets. pair"):
        kernel_alignment(tiny_resnet()[0], [1, 2, 3])


def test_cli_probe_help_lists_the_probes_options(capsys: pytest.CaptureFixture[str]) -> None:
    from bnlab.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["probe", "hessian_top_eig", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("n_batches", "method", "iters", "tol", "norm_stats"):
        assert f"  {option} " in out, option


def test_cli_probe_names_the_probes_of_an_experiment() -> None:
    from bnlab.cli.probe import unknown_probe_hint

    with pytest.raises(UserError, match="experiment E9, not a probe; it measures with: gradient_spectrum"):
        unknown_probe_hint("channel_rank")
    assert unknown_probe_hint("kernel_alignment") == "kernel_alignment"
