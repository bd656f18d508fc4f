"""weight_grad_norms against a literal float64 NumPy backward pass of Linear -> BN -> ReLU nets (every
statistics mode), and the state-untouched test."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from bnlab.errors import UserError
from bnlab.probes import weight_grad_norms

EPS = 1e-5


def make_net(widths=(6, 7, 5, 4), seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        bn = nn.BatchNorm1d(b, eps=EPS)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(3)
        layers += [nn.Linear(a, b, bias=False), bn, nn.ReLU()]
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers).double()


def literal_grads(net, x, y, mode):
    """dL/dW of every Linear by hand: forward with explicit BN formulas, backward by the chain rule."""
    mods = list(net)
    lin = [m for m in mods if isinstance(m, nn.Linear)]
    bns = [m for m in mods if isinstance(m, nn.BatchNorm1d)]
    a = x.numpy().astype(np.float64)
    cache = []
    for L, bn in zip(lin[:-1], bns):
        W = L.weight.detach().numpy()
        h = a @ W.T
        if mode == "running":
            mu, var = bn.running_mean.numpy(), bn.running_var.numpy()
        else:
            mu, var = h.mean(0), h.var(0)  # biased variance, as BN normalizes with
        s = np.sqrt(var + EPS)
        yh = (h - mu) / s
        z = bn.weight.detach().numpy() * yh + bn.bias.detach().numpy()
        cache.append((a, s, yh, z, bn.weight.detach().numpy(), W))
        a = np.maximum(z, 0)
    Wf, bf = lin[-1].weight.detach().numpy(), lin[-1].bias.detach().numpy()
    logits = a @ Wf.T + bf
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n = x.shape[0]
    dlog = p.copy()
    dlog[np.arange(n), y.numpy()] -= 1
    dlog /= n  # mean cross-entropy
    grads = [dlog.T @ a]
    da = dlog @ Wf
    for a_in, s, yh, z, gamma, W in reversed(cache):
        dz = da * (z > 0)
        dyh = dz * gamma
        if mode == "batch":  # the statistics depend on h: project out the mean and yh directions
            dh = (dyh - dyh.mean(0) - yh * (dyh * yh).mean(0)) / s
        else:
            dh = dyh / s
        grads.append(dh.T @ a_in)
        da = dh @ W
    return [np.linalg.norm(g) for g in reversed(grads)]


@pytest.mark.parametrize("mode", ["batch", "frozen", "running"])
def test_against_literal_backward(mode):
    net = make_net()
    x = torch.randn(9, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 1])
    res = weight_grad_norms(net, x, y, norm_stats=mode)
    assert res.attrs["norm_stats"] == mode
    ref = literal_grads(net, x, y, mode)
    t = res.table
    got = t[t.metric == "grad_norm"].sort_values("layer")["value"].to_numpy()
    names = sorted(n for n, m in net.named_modules() if isinstance(m, nn.Linear))
    order = [names.index(n) for n in sorted(names)]
    assert len(got) == len(ref) == 3
    for g, r in zip(got, [ref[i] for i in order]):
        assert abs(g - r) / r < 1e-6
    logs = t[t.metric == "log_grad_norm"].sort_values("layer")["value"].to_numpy()
    assert np.allclose(logs, np.log(got), rtol=0, atol=1e-12)
    depth = t[t.metric == "depth_index"].set_index("layer")["value"]
    assert depth["0"] == 1 and depth[str(len(net) - 1)] == 3


def test_batch_and_frozen_differ_and_state_untouched():
    net = make_net()
    x = torch.randn(9, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (9,))
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    net.eval()
    net[1].train()  # mixed flags come back as they were
    before = (
        {k: v.clone() for k, v in net.state_dict().items()},
        {n: p.grad.clone() for n, p in net.named_parameters()},
        {n: m.training for n, m in net.named_modules()},
    )
    rng = torch.get_rng_state()
    b = weight_grad_norms(net, x, y, norm_stats="batch").value("grad_norm", layer="0")
    f = weight_grad_norms(net, x, y, norm_stats="frozen").value("grad_norm", layer="0")
    assert not math.isclose(b, f, rel_tol=1e-6)
    assert torch.equal(rng, torch.get_rng_state())
    after = (
        net.state_dict(),
        {n: p.grad for n, p in net.named_parameters()},
        {n: m.training for n, m in net.named_modules()},
    )
    for d0, d1 in zip(before, after):
        assert d0.keys() == d1.keys()
        for k in d0:
            assert torch.equal(d0[k], d1[k]) if isinstance(d0[k], torch.Tensor) else d0[k] == d1[k], k


def test_no_weighted_layer_is_one_sentence():
    with pytest.raises(UserError, match="no Conv/Linear"):
        weight_grad_norms(nn.Sequential(nn.ReLU()), torch.randn(3, 2), torch.tensor([0, 1, 0]))
