"""representation_rank (E14) and signal_propagation (E15) against literal float64 references, state left
bit-identical, bad options refused."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import make
from torch import nn

from bnlab.errors import UserError
from bnlab.models import build_model
from bnlab.probes import representation_rank, signal_propagation


def value(res, layer, name):
    t = res.table
    (v,) = t[(t.layer == layer) & (t.metric == name)].value
    return v


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def _affine(net):
    for m in net.modules():  # non-trivial norm affine parameters
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net


def _outputs(net, names, x):
    mods, outs = dict(net.named_modules()), {}
    hooks = [
        mods[n].register_forward_hook(lambda m, a, o, n=n: outs.__setitem__(n, o.detach().clone()))
        for n in names
    ]
    net.train()
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return outs


@pytest.mark.parametrize("kind", ["conv", "mlp_linear", "mlp_bn"])
def test_representation_rank_against_numpy(kind):
    if kind == "conv":
        net, x, y = make(True)
        names = net.block_outputs()
    else:
        torch.manual_seed(0)
        norm = "batch" if kind == "mlp_bn" else "none"
        net = _affine(
            build_model("mlp", depth=12, hidden=16, activation="linear", norm=norm, image_size=4)
        ).double()
        x, y = torch.randn(24, 3, 4, 4, dtype=torch.float64), torch.randint(0, 10, (24,))
        names = net.block_outputs()
    res = representation_rank(net, x, y)
    assert res.table.attrs["norm_stats"] in ("batch", "none")
    for n, o in _outputs(net, names, x).items():
        h = o.numpy().reshape(o.shape[0], -1)
        s = np.linalg.svd(h, compute_uv=False)
        np.testing.assert_allclose(res.arrays[f"{n}/sv"], s, rtol=1e-6, atol=1e-12 * s[0])
        fro = sum(float(v) ** 2 for v in h.ravel())
        assert rel(value(res, n, "stable_rank"), fro / s[0] ** 2) < 1e-6
        tol = max(h.shape) * np.finfo(np.float64).eps
        assert value(res, n, "rank_rtol") == tol
        assert value(res, n, "rank") == sum(1 for v in s if v > tol * s[0]) == np.linalg.matrix_rank(h)
        assert value(res, n, "soft_rank") == sum(1 for v in s if v > 1e-3 * s[0])


def test_rank_of_a_rank_one_representation():
    """A linear net whose every example maps to the same direction: rank 1, stable rank 1."""
    lin = nn.Linear(5, 7, bias=False).double()
    u = torch.randn(7, 1, dtype=torch.float64)
    lin.weight.data = u @ torch.randn(1, 5, dtype=torch.float64)
    net = nn.Sequential(lin)
    res = representation_rank(net, torch.randn(9, 5, dtype=torch.float64), modules=["0"])
    assert value(res, "0", "rank") == 1 and value(res, "0", "soft_rank") == 1
    assert rel(value(res, "0", "stable_rank"), 1.0) < 1e-6


def _channel_stats(t):
    """Literal per-channel squared mean and population variance over (batch, x, y), averaged over channels."""
    t = t.numpy()
    sq, var = [], []
    for c in range(t.shape[1]):
        v = [float(a) for a in t[:, c].ravel()]
        m = sum(v) / len(v)
        sq.append(m * m)
        var.append(sum((a - m) ** 2 for a in v) / len(v))
    return sum(sq) / len(sq), sum(var) / len(var)


def _literal_parts(block, x):
    """(skip, branch, output) of one bnlab residual block, by its published formula."""
    relu = F.relu
    if block.fixup:
        out = block.conv1(block.bias1a(x))
        out = block.conv2(block.bias2a(relu(block.bias1b(out))))
        branch = block.bias2b(block.scale(out))
        skip = x if isinstance(block.shortcut, nn.Identity) else block.shortcut(block.bias1a(x))
        return skip, branch, relu(branch + skip)
    if hasattr(block, "_project"):  # pre-activation
        pre = relu(block.norm1(x))
        skip = block.shortcut(pre) if block._project else block.shortcut(x)
        branch = block.conv2(relu(block.norm2(block.conv1(pre))))
        if block.skip_gain is not None:
            branch = block.skip_gain(branch)
        return skip, branch, branch + skip
    branch = block.norm2(block.conv2(relu(block.norm1(block.conv1(x)))))
    if block.skip_gain is not None:
        branch = block.skip_gain(branch)
    skip = block.shortcut(x)
    return skip, branch, relu(branch + skip)


@pytest.mark.parametrize(
    "kw",
    [
        {"norm": "batch", "block": "pre"},
        {"norm": "batch", "block": "post", "shortcut": "B"},
        {"norm": "none", "block": "pre", "shortcut": "B"},
        {"norm": "none", "skipinit": True},
        {"norm": "none", "fixup": True},
    ],
)
def test_signal_propagation_against_literal(kw):
    torch.manual_seed(1)
    net = _affine(build_model("resnet_cifar", depth=14, image_size=8, **kw)).double()
    for b in net.modules():  # make SkipInit / Fixup branches non-zero so the ratio is tested
        for p in ("skip_gain", "scale"):
            s = getattr(b, p, None)
            if isinstance(s, nn.Module):
                for q in s.parameters():
                    q.data.fill_(0.7)
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and float(m.weight.detach().abs().sum()) == 0:
            m.weight.data.normal_(0, 0.1)
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64)
    res = signal_propagation(net, x)
    assert res.table.attrs["norm_stats"] in ("batch", "none")
    net.train()
    with torch.no_grad():
        h = net.conv1(x)
        if net.block_kind == "post":
            h = net.norm1(h)
            if net.stem_bias is not None:
                h = net.stem_bias(h)
            h = net.act1(h)
        for name in net.block_outputs():
            block = dict(net.named_modules())[name]
            skip, branch, out = _literal_parts(block, h)
            sq, var = _channel_stats(out)
            bvar, svar = _channel_stats(branch)[1], _channel_stats(skip)[1]
            assert rel(value(res, name, "sq_mean"), sq) < 1e-6
            assert rel(value(res, name, "variance"), var) < 1e-6
            assert rel(value(res, name, "branch_variance"), bvar) < 1e-6
            assert rel(value(res, name, "skip_variance"), svar) < 1e-6
            assert rel(value(res, name, "branch_skip_ratio"), bvar / svar) < 1e-6
            h = out


def _state(net):
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        {n: p.grad.clone() for n, p in net.named_parameters()},
        {n: m.training for n, m in net.named_modules()},
        torch.get_rng_state(),
    )


@pytest.mark.parametrize("probe", [representation_rank, signal_propagation])
@pytest.mark.parametrize("mode", ["batch", "frozen", "running"])
def test_state_left_bit_identical(probe, mode):
    torch.manual_seed(0)
    net = build_model("resnet_cifar", depth=8, image_size=8, block="pre")
    x = torch.randn(8, 3, 8, 8)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    net(x)  # running statistics away from their init (no running-stats warning)
    net.eval()
    net.layer1.train()  # mixed flags must come back as they were
    before = _state(net)
    res = probe(net, x, norm_stats=mode)
    assert res.table.attrs["norm_stats"] == mode and len(res.table) > 0
    after = _state(net)
    for b, a in zip(before, after):
        if isinstance(b, torch.Tensor):
            assert torch.equal(a, b)
            continue
        assert b.keys() == a.keys()
        for k in b:
            assert torch.equal(b[k], a[k]) if isinstance(b[k], torch.Tensor) else b[k] == a[k], k


def test_bad_options_are_one_sentence():
    net, x, y = make(True)
    with pytest.raises(UserError, match="soft_rtol"):
        representation_rank(net, x, y, soft_rtol=2.0)
    with pytest.raises(UserError, match="at least 2"):
        representation_rank(net, x[:1], y[:1])
    with pytest.raises(UserError, match="block_outputs"):
        signal_propagation(nn.Sequential(nn.Flatten(), nn.Linear(192, 3)).double(), x)
    with pytest.raises(UserError, match="skip path"):
        signal_propagation(net, x, y, modules=["stem"])
    # a skip child under another name: its output is the skip (here the block body, so the branch is the rest)
    res = signal_propagation(net, x, y, modules=["stages.s1.0"], skip_name="body")
    out = _outputs(net, ["stages.s1.0.body", "stages.s1.0"], x)
    skip_var = float(out["stages.s1.0.body"].transpose(0, 1).reshape(4, -1).var(1, correction=0).mean())
    assert rel(value(res, "stages.s1.0", "skip_variance"), skip_var) < 1e-6
    res = signal_propagation(net, x, y, modules=["stages.s1.0", "stages.s1.1"])
    assert math.isfinite(value(res, "stages.s1.1", "variance"))
