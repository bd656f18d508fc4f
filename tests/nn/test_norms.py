"""Every norm against a slow, literal float64 reference (or torch's own layer), forward and running stats."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnlab.errors import UserError
from bnlab.nn.norms import NORM_TYPES, NORMS, BatchRenorm2d

C = 16


def _x(shape=(6, C, 5, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1.5).requires_grad_(True)


def _randomize_affine(m: nn.Module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if getattr(m, "weight", None) is not None:
            m.weight.copy_(torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))


def _affine(y, m):
    shape = [1, y.shape[1]] + [1] * (y.dim() - 2)
    return y * m.weight.view(shape) + m.bias.view(shape)


def _stats(v):
    """(mean, biased var, unbiased var) of a flat tensor, literally."""
    n = v.numel()
    mean = sum(v.tolist()) / n
    var = sum((a - mean) ** 2 for a in v.tolist()) / n
    return mean, var, var * n / (n - 1)


# --------------------------------------------------------------------------------------- contract, types


@pytest.mark.parametrize("name", NORMS.names())
@pytest.mark.parametrize("dim", [1, 2])
def test_contract_and_types(name, dim):
    shape = (6, C, 5, 4) if dim == 2 else (6, C)
    if name == "instance" and dim == 1:
        with pytest.raises(UserError):
            NORMS.get(name)(C, dim=dim)
        return
    m = NORMS.get(name)(C, dim=dim)
    y = m(torch.randn(shape))
    assert y.shape == shape
    if name != "none":
        assert isinstance(m, NORM_TYPES)
    uses_batch = name in ("batch", "batch_renorm", "ghost_batch", "frozen_batch")
    assert isinstance(m, _BatchNorm) == uses_batch


def test_bad_options_are_user_errors():
    with pytest.raises(UserError):
        NORMS.get("batch")(C, not_an_option=3)
    with pytest.raises(UserError):
        NORMS.get("group")(C, channels_per_group=1)  # that is instance norm
    with pytest.raises(UserError):
        NORMS.get("group")(12, channels_per_group=8)  # does not divide
    with pytest.raises(UserError):
        NORMS.get("ghost_batch")(C, virtual_batch=0)
    with pytest.raises(UserError):
        NORMS.get("batch_renorm")(C, r_max=0.5)
    with pytest.raises(UserError):
        NORMS.get("batch")(C, dim=3)


# ----------------------------------------------------------------------------------------------- batch


def test_batch_is_torch_batchnorm():
    assert type(NORMS.get("batch")(C)) is nn.BatchNorm2d
    assert type(NORMS.get("batch")(C, dim=1)) is nn.BatchNorm1d


# ------------------------------------------------------------------------------- group / layer / instance


def _group_reference(x, m, groups):
    b, c = x.shape[:2]
    out = torch.empty_like(x)
    per = c // groups
    for n in range(b):
        for g in range(groups):
            block = x[n, g * per : (g + 1) * per]
            mean, var, _ = _stats(block.detach().reshape(-1))
            out[n, g * per : (g + 1) * per] = (block - mean) / (var + m.eps) ** 0.5
    return _affine(out, m)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize(
    "name,kw,groups", [("group", {}, C // 8), ("group", {"channels_per_group": 4}, 4), ("layer", {}, 1)]
)
def test_group_and_layer_against_reference(name, kw, groups, dim):
    m = NORMS.get(name)(C, dim=dim, **kw).double()
    assert isinstance(m, nn.GroupNorm) and m.num_groups == groups
    _randomize_affine(m)
    x = _x((6, C, 5, 4) if dim == 2 else (6, C))
    torch.testing.assert_close(m(x), _group_reference(x, m, groups), rtol=1e-9, atol=1e-9)


def test_instance_against_reference():
    m = NORMS.get("instance")(C).double()
    _randomize_affine(m)
    x = _x()
    out = torch.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(C):
            mean, var, _ = _stats(x[n, c].detach().reshape(-1))
            out[n, c] = (x[n, c] - mean) / (var + m.eps) ** 0.5
    torch.testing.assert_close(m(x), _affine(out, m), rtol=1e-9, atol=1e-9)
    m.eval()  # no running statistics: instance statistics in eval mode too
    torch.testing.assert_close(m(x), _affine(out, m), rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------------- batch renorm


def _renorm_reference(x, m, r_max, d_max):
    """Ioffe 2017, Algorithm 1, one channel at a time."""
    c = x.shape[1]
    xt = x.transpose(0, 1).reshape(c, -1)
    out = torch.empty_like(xt)
    new_mean, new_var = [], []
    for k in range(c):
        mean, var, unbiased = _stats(xt[k].detach())
        mu_t = xt[k].mean()
        sigma_t = (((xt[k] - mu_t) ** 2).mean() + m.eps) ** 0.5  # differentiable twin of (mean, var)
        sigma = (float(m.running_var[k]) + m.eps) ** 0.5
        r = min(max((var + m.eps) ** 0.5 / sigma, 1 / r_max), r_max)
        d = min(max((mean - float(m.running_mean[k])) / sigma, -d_max), d_max)
        out[k] = ((xt[k] - mu_t) / sigma_t * r + d) * m.weight[k] + m.bias[k]
        new_mean.append(float(m.running_mean[k]) + m.momentum * (mean - float(m.running_mean[k])))
        new_var.append(float(m.running_var[k]) + m.momentum * (unbiased - float(m.running_var[k])))
    y = out.reshape(c, x.shape[0], *x.shape[2:]).transpose(0, 1)
    return y, torch.tensor(new_mean, dtype=x.dtype), torch.tensor(new_var, dtype=x.dtype)


def _with_running(m, seed=2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.running_mean.copy_(torch.randn(C, generator=g, dtype=m.running_mean.dtype) * 2)
        m.running_var.copy_(torch.rand(C, generator=g, dtype=m.running_var.dtype) * 20 + 0.05)
    return m


@pytest.mark.parametrize("dim", [1, 2])
def test_batch_renorm_against_reference(dim):
    m = _with_running(NORMS.get("batch_renorm")(C, dim=dim).double())
    _randomize_affine(m)
    m.num_batches_tracked.fill_(10**6)  # past the warm-up: r_max 3, d_max 5
    assert m.clip_limits(10**6) == (3.0, 5.0)
    x = _x((6, C, 5, 4) if dim == 2 else (12, C))
    ref = _with_running(NORMS.get("batch_renorm")(C, dim=dim).double())
    _randomize_affine(ref)
    y_ref, mean_ref, var_ref = _renorm_reference(x, ref, 3.0, 5.0)
    y = m(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(m.running_mean, mean_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.running_var, var_ref, rtol=1e-12, atol=1e-12)
    # r and d are constants in the backward pass: gradients match the reference's
    gx, gw = torch.autograd.grad((y * torch.cos(y)).sum(), (x, m.weight))
    gx_ref, gw_ref = torch.autograd.grad((y_ref * torch.cos(y_ref)).sum(), (x, ref.weight))
    torch.testing.assert_close(gx, gx_ref, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-8, atol=1e-9)
    # the random running stats make the clipping bite somewhere (else this test could not fail)
    xt = x.detach().transpose(0, 1).reshape(C, -1)
    r = (xt.var(1, unbiased=False) + m.eps).sqrt() / (ref.running_var + m.eps).sqrt()
    assert (r > 3).any() or (r < 1 / 3).any()


def test_batch_renorm_warmup_schedule():
    m = BatchRenorm2d(C, warmup_start=100, r_max_at=300, d_max_at=200)
    assert m.clip_limits(0) == (1.0, 0.0)
    assert m.clip_limits(100) == (1.0, 0.0)
    assert m.clip_limits(200) == pytest.approx((2.0, 5.0))
    assert m.clip_limits(150) == pytest.approx((1.5, 2.5))
    assert m.clip_limits(10**9) == (3.0, 5.0)


@pytest.mark.parametrize(
    "kw", [{"r_max": 1.0, "d_max": 0.0, "warmup_start": 0, "r_max_at": 1, "d_max_at": 1}, {}]
)
def test_batch_renorm_equals_batch_when_clipped(kw):
    """r = 1, d = 0 (explicitly, or in the default warm-up's first steps) is batch norm exactly."""
    bn = _with_running(nn.BatchNorm2d(C).double())
    rn = _with_running(NORMS.get("batch_renorm")(C, **kw).double())
    _randomize_affine(bn)
    _randomize_affine(rn)
    rn.num_batches_tracked.fill_(10**6 if kw else 0)
    x = _x()
    y_bn, y_rn = bn(x), rn(x)
    torch.testing.assert_close(y_rn, y_bn, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(rn.running_mean, bn.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rn.running_var, bn.running_var, rtol=1e-12, atol=1e-12)
    g_bn = torch.autograd.grad(y_bn.pow(3).sum(), x)[0]
    g_rn = torch.autograd.grad(y_rn.pow(3).sum(), x)[0]
    torch.testing.assert_close(g_rn, g_bn, rtol=1e-8, atol=1e-8)
    bn.eval()
    rn.eval()
    torch.testing.assert_close(rn(x), bn(x), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------- ghost batch


@pytest.mark.parametrize("dim", [1, 2])
def test_ghost_batch_against_reference(dim):
    m = _with_running(NORMS.get("ghost_batch")(C, dim=dim, virtual_batch=4).double())
    _randomize_affine(m)
    x = _x((10, C, 3, 3) if dim == 2 else (10, C))  # virtual batches of 4, 4, 2
    start_mean, start_var = m.running_mean.clone(), m.running_var.clone()
    out = torch.empty_like(x)
    means, uvars = torch.zeros(3, C, dtype=x.dtype), torch.zeros(3, C, dtype=x.dtype)
    for v, (a, b) in enumerate([(0, 4), (4, 8), (8, 10)]):
        for k in range(C):
            chunk = x[a:b, k]
            mean, var, unbiased = _stats(chunk.detach().reshape(-1))
            out[a:b, k] = (chunk - mean) / (var + m.eps) ** 0.5 * m.weight[k] + m.bias[k]
            means[v, k], uvars[v, k] = mean, unbiased
    torch.testing.assert_close(m(x), out, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(m.running_mean, 0.9 * start_mean + 0.1 * means.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.running_var, 0.9 * start_var + 0.1 * uvars.mean(0), rtol=1e-12, atol=1e-12)
    assert int(m.num_batches_tracked) == 1


def test_ghost_batch_equals_batch_when_virtual_batch_covers_the_batch():
    bn, gb = nn.BatchNorm2d(C).double(), NORMS.get("ghost_batch")(C, virtual_batch=32).double()
    x = _x()
    torch.testing.assert_close(gb(x), bn(x))
    torch.testing.assert_close(gb.running_mean, bn.running_mean)
    torch.testing.assert_close(gb.running_var, bn.running_var)
    gb.eval()
    bn.eval()
    torch.testing.assert_close(gb(x), bn(x))


# ---------------------------------------------------------------------------------------- frozen batch


@pytest.mark.parametrize("dim", [1, 2])
def test_frozen_batch_uses_running_stats_in_train_mode(dim):
    m = _with_running(NORMS.get("frozen_batch")(C, dim=dim).double())
    _randomize_affine(m)
    m.train()
    x = _x((6, C, 5, 4) if dim == 2 else (6, C))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    shape = [1, C] + [1] * (x.dim() - 2)
    ref = torch.empty_like(x)
    for k in range(C):
        ref[:, k] = (x[:, k] - float(m.running_mean[k])) / (float(m.running_var[k]) + m.eps) ** 0.5
    torch.testing.assert_close(m(x), ref * m.weight.view(shape) + m.bias.view(shape), rtol=1e-10, atol=1e-10)
    for k, v in m.state_dict().items():
        if k not in ("weight", "bias"):
            assert torch.equal(v, before[k]), k
    assert m.weight.requires_grad


def test_ghost_batch_single_example_remainder_joins_previous_chunk():
    m = NORMS.get("ghost_batch")(C, dim=1, virtual_batch=4).double()
    x = _x((9, C))  # chunks 4 and 5 (not 4, 4, 1)
    ref = torch.cat([nn.functional.batch_norm(c, None, None, training=True) for c in (x[:4], x[4:])])
    torch.testing.assert_close(m(x), ref)
