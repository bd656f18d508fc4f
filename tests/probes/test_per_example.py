import pytest
import torch
import torch.nn.functional as F
from nets import make
from torch import nn

from bnlab.errors import UserError
from bnlab.probes.per_example import per_example_gradients


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def batch_stats_as_running(net: nn.Module, x: torch.Tensor) -> None:
    """Literal frozen mode: record every BN's batch mean / biased var in its running buffers, then eval."""
    stats = {}
    hooks = [
        m.register_forward_hook(
            lambda m, a, o: stats.__setitem__(m, (a[0].mean((0, 2, 3)), a[0].var((0, 2, 3), unbiased=False)))
        )
        for m in net.modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    net.train()
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    for m, (mu, var) in stats.items():
        m.running_mean.copy_(mu)
        m.running_var.copy_(var)
    net.eval()


def loop_single(net, x, y):
    params = dict(net.named_parameters())
    rows = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(net(x[i : i + 1]), y[i : i + 1])
        rows.append(dict(zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True))))
    return {n: torch.stack([r[n] for r in rows]) for n in params}


def test_coupled_matches_loop_of_backward_passes_and_sums_to_batch_gradient():
    net, x, y = make(True, batch=9)
    got = per_example_gradients(net, x, y, "batch", chunk=4)
    params = dict(net.named_parameters())
    net.train()
    losses = F.cross_entropy(net(x), y, reduction="none")
    for i in range(x.shape[0]):  # literal: B backward passes through one full-batch forward
        gi = torch.autograd.grad(losses[i], list(params.values()), retain_graph=True)
        for n, g in zip(params, gi):
            assert rel(got[n][i], g) < 1e-6, n
    batch = torch.autograd.grad(losses.mean(), list(params.values()))
    for n, g in zip(params, batch):
        assert rel(got[n].sum(0), x.shape[0] * g) < 1e-6, n


def test_three_modes_agree_without_norms_and_match_single_example_loop():
    net, x, y = make(False)
    ref = loop_single(net, x, y)
    for mode in ("batch", "frozen", "running"):
        got = per_example_gradients(net, x, y, mode)
        for n in ref:
            assert rel(got[n], ref[n]) < 1e-6, (mode, n)


@pytest.mark.parametrize("mode", ["frozen", "running"])
def test_frozen_and_eval_match_literal_loop(mode):
    net, x, y = make(True)
    got = per_example_gradients(net, x, y, mode)
    if mode == "frozen":
        batch_stats_as_running(net, x)
    else:
        net.eval()
    ref = loop_single(net, x, y)
    assert set(got) == set(ref)
    for n in ref:
        assert rel(got[n], ref[n]) < 1e-6, n


class Scale(nn.Module):
    """A parameter owner the hook path does not know: forces the torch.func path."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.linspace(0.5, 1.5, c, dtype=torch.float64))

    def forward(self, x):
        return x * self.s.view(1, -1, 1, 1)


def test_torch_func_path_matches_literal_loop_and_param_subset():
    net, x, y = make(True)
    net.stem.append(Scale(4))
    got = per_example_gradients(net, x, y, "frozen")
    sub = per_example_gradients(net, x, y, "frozen", params=["fc.weight"])
    assert list(sub) == ["fc.weight"]
    batch_stats_as_running(net, x)
    ref = loop_single(net, x, y)
    for n in ref:
        assert rel(got[n], ref[n]) < 1e-6, n
    assert rel(sub["fc.weight"], ref["fc.weight"]) < 1e-6


class MyBatchNorm(nn.Module):
    def forward(self, x):
        return (x - x.mean((0, 2, 3), keepdim=True)) / (x.var((0, 2, 3), keepdim=True) + 1e-5).sqrt()


@pytest.mark.parametrize("mode", ["frozen", "running"])
def test_unknown_batch_norm_raises_naming_module(mode):
    net, x, y = make(False)
    net.stages["s1"][0].body[1] = MyBatchNorm()
    with pytest.raises(UserError, match=r"stages\.s1\.0\.body\.1"):
        per_example_gradients(net, x, y, mode)
    g = per_example_gradients(net, x, y, "batch")  # coupled works for any module
    assert g["fc.weight"].shape == (8, 5, 8)


def test_bad_mode_and_param_name():
    net, x, y = make(False)
    with pytest.raises(UserError):
        per_example_gradients(net, x, y, "independent")
    with pytest.raises(UserError):
        per_example_gradients(net, x, y, "frozen", params=["nope"])


def _swap_norms(net: nn.Module, factory) -> None:
    for parent in list(net.modules()):
        for cname, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                new = factory(child.num_features).double()
                new.load_state_dict(child.state_dict())
                setattr(parent, cname, new)


@pytest.mark.parametrize("kind", ["batch_renorm", "frozen_batch"])
def test_frozen_reproduces_training_forward_for_bnlab_norms(kind):
    """Frozen statistics give the training-mode output values, so gradients of the last layer (after every
    norm) are unchanged: Σ_i ∂ℓ_i/∂fc = B × ∂L/∂fc of the training-mode batch loss."""
    from bnlab.nn.norms import NORMS

    kw = (
        {"r_max": 1.5, "d_max": 0.2, "warmup_start": 0, "r_max_at": 1, "d_max_at": 1}
        if kind == "batch_renorm"
        else {}
    )
    net, x, y = make(True)
    _swap_norms(net, lambda c: NORMS.get(kind)(c, **kw))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.fill_(4.0)  # renorm clips r and d
            m.num_batches_tracked.fill_(5)
    got = per_example_gradients(net, x, y, "frozen", params=["fc.weight", "fc.bias"])
    net.train()
    ref = torch.autograd.grad(F.cross_entropy(net(x), y), [net.fc.weight, net.fc.bias])
    assert rel(got["fc.weight"].sum(0), 8 * ref[0]) < 1e-6
    assert rel(got["fc.bias"].sum(0), 8 * ref[1]) < 1e-6


def test_ghost_batch_frozen_is_refused_eval_works():
    from bnlab.nn.norms import NORMS

    net, x, y = make(True)
    _swap_norms(net, lambda c: NORMS.get("ghost_batch")(c, virtual_batch=4))
    with pytest.raises(UserError, match="ghost"):
        per_example_gradients(net, x, y, "frozen")
    assert per_example_gradients(net, x, y, "running")["fc.bias"].shape == (8, 5)
