"""Inits: kernel statistics and orthogonality, init_model options, and the balanced output bias."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import bnlab
from bnlab.errors import UserError
from bnlab.models.layers import ResidualBlock
from bnlab.nn.init import INITS, balance_output_bias, delta_orthogonal_, init_model, softmax_balance_gap

ALL_INITS = ["kaiming_fan_in", "kaiming_fan_out", "xavier", "orthogonal", "delta_orthogonal", "default"]


def test_registry_names():
    assert INITS.names() == ALL_INITS


@pytest.mark.parametrize("name", ALL_INITS)
@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_every_init_runs_on_conv_and_linear(name, layer):
    torch.manual_seed(0)
    m = nn.Conv2d(8, 16, 3) if layer == "conv" else nn.Linear(32, 16)
    with torch.no_grad():
        m.weight.fill_(7.0)
        m.bias.fill_(7.0)
    INITS.get(name)(m, gain=math.sqrt(2))
    assert (m.weight != 7.0).any()
    if name == "default":
        assert (m.bias != 7.0).all()
    else:
        assert (m.bias == 0).all()


@pytest.mark.parametrize(
    "name,expected_std",
    [
        ("kaiming_fan_in", math.sqrt(2 / (64 * 9))),
        ("kaiming_fan_out", math.sqrt(2 / (128 * 9))),
        ("xavier", math.sqrt(2 / (64 * 9 + 128 * 9))),
    ],
)
def test_variance_inits(name, expected_std):
    torch.manual_seed(0)
    m = nn.Conv2d(64, 128, 3)
    INITS.get(name)(m, gain=math.sqrt(2))
    w = m.weight.detach().double()
    assert abs(w.mean()) < 0.05 * expected_std
    assert w.std().item() == pytest.approx(expected_std, rel=0.02)  # 73,728 draws: std error ~0.3%


@pytest.mark.parametrize("c_out,c_in", [(16, 16), (8, 16), (32, 16), (16, 200)])
def test_orthogonal_conv_kernel(c_out, c_in):
    torch.manual_seed(0)
    m = nn.Conv2d(c_in, c_out, 3)
    INITS.get("orthogonal")(m, gain=2.0)
    w = m.weight.detach().double().reshape(c_out, -1)
    gram = w @ w.T if c_out <= w.shape[1] else w.T @ w
    torch.testing.assert_close(gram, 4.0 * torch.eye(gram.shape[0], dtype=gram.dtype), rtol=0, atol=1e-5)


@pytest.mark.parametrize("c_out,c_in", [(16, 16), (8, 16), (32, 16)])
def test_delta_orthogonal_kernel(c_out, c_in):
    torch.manual_seed(0)
    m = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    INITS.get("delta_orthogonal")(m, gain=1.0)
    w = m.weight.detach().double()
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1, 1] = False
    assert (w[:, :, mask] == 0).all()
    centre = w[:, :, 1, 1]
    gram = centre @ centre.T if c_out <= c_in else centre.T @ centre
    torch.testing.assert_close(gram, torch.eye(min(c_out, c_in), dtype=gram.dtype), rtol=0, atol=1e-6)
    if c_out >= c_in:  # an isometry: the conv preserves the norm of every input (zero padding included)
        x = torch.randn(3, c_in, 6, 6)
        torch.testing.assert_close(m(x).norm(), x.norm(), rtol=1e-5, atol=0)


def test_delta_orthogonal_refuses_even_kernels():
    with pytest.raises(UserError):
        delta_orthogonal_(torch.empty(4, 4, 2, 2))


def test_init_model_applies_conv_and_fc_separately():
    torch.manual_seed(0)
    m = bnlab.build_model(depth=8, init={"conv": "delta_orthogonal", "fc": "orthogonal"})
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    for conv in convs:
        mask = torch.ones(3, 3, dtype=torch.bool)
        mask[1, 1] = False
        assert (conv.weight[:, :, mask] == 0).all()
    fc = m.fc.weight.detach().double()  # (10, 64): orthonormal rows times the relu gain sqrt(2)
    torch.testing.assert_close(fc @ fc.T, 2.0 * torch.eye(10, dtype=fc.dtype), rtol=0, atol=1e-5)


def test_init_model_default_matches_pytorch_default():
    torch.manual_seed(3)
    a = bnlab.build_model(name="mlp", depth=2, hidden=16, init={"conv": "default", "fc": "default"})
    torch.manual_seed(3)
    b = bnlab.build_model(name="mlp", depth=2, hidden=16, init={"conv": "default", "fc": "default"})
    fc = a.fc
    bound = 1 / math.sqrt(fc.in_features)
    assert fc.weight.abs().max() <= bound and fc.bias.abs().max() <= bound
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_linear_models_use_gain_one():
    torch.manual_seed(0)
    m = bnlab.build_model(
        name="mlp", depth=3, hidden=64, activation="linear", norm="none", init={"fc": "orthogonal"}
    )
    w = m.fc.weight.detach().double()
    torch.testing.assert_close(w @ w.T, torch.eye(10, dtype=w.dtype), rtol=0, atol=1e-5)


def test_zero_last_gamma():
    torch.manual_seed(0)
    m = bnlab.build_model(depth=8, init={"zero_last_gamma": True})
    blocks = [b for b in m.modules() if isinstance(b, ResidualBlock)]
    assert len(blocks) == 3
    for b in blocks:
        assert (b.norm2.weight == 0).all() and (b.norm1.weight == 1).all()
    x = torch.randn(4, 16, 8, 8)
    torch.testing.assert_close(m.layer1[0](x), torch.relu(x))  # the branch is off at init
    with pytest.raises(UserError):
        bnlab.build_model(depth=8, norm="none", init={"zero_last_gamma": True})


def test_fixup_rescaling():
    torch.manual_seed(0)
    m = bnlab.build_model(depth=14, norm="none", fixup=True, init={"conv": "orthogonal"})
    blocks = [b for b in m.modules() if isinstance(b, ResidualBlock)]
    n_blocks = len(blocks)
    assert n_blocks == 6
    scale = math.sqrt(2) * n_blocks ** (-1 / 2)  # m = 2 convs per branch: L^(-1/(2m-2)) = L^(-1/2)
    for b in blocks:
        w = b.conv1.weight.detach().double().reshape(b.conv1.out_channels, -1)
        torch.testing.assert_close(
            w @ w.T, scale**2 * torch.eye(w.shape[0], dtype=w.dtype), rtol=0, atol=1e-6
        )
        assert (b.conv2.weight == 0).all()
    assert (m.fc.weight == 0).all() and (m.fc.bias == 0).all()
    out = m(torch.randn(4, 3, 32, 32))
    assert (out == 0).all()
    out.sum().backward()  # the fc gets a gradient; the zero layers become trainable through it
    assert m.fc.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ balanced output bias


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g) + torch.randn(n, 3, 1, 1, generator=g)


def _gap_literal(logits):
    """max_k |mean_n p_nk - 1/K|, one number at a time, float64."""
    z = logits.double().tolist()
    k = len(z[0])
    means = [0.0] * k
    for row in z:
        top = max(row)
        e = [math.exp(v - top) for v in row]
        s = sum(e)
        for j in range(k):
            means[j] += e[j] / s / len(z)
    return max(abs(m - 1 / k) for m in means)


def test_gap_matches_literal():
    z = torch.randn(20, 7) * 5
    assert softmax_balance_gap(z) == pytest.approx(_gap_literal(z), abs=1e-12)


@pytest.mark.parametrize(
    "cfg",
    [
        {"depth": 8, "norm": "batch"},
        {"depth": 8, "norm": "none"},  # large, input-independent logits (one class dominates)
        {"name": "mlp", "depth": 3, "hidden": 64, "norm": "batch"},
    ],
)
def test_balance_output_bias(cfg):
    torch.manual_seed(0)
    model = bnlab.build_model(**cfg)
    model.eval()
    calib, held_out = _images(64, 1), _images(64, 2)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    params = {k: v.clone() for k, v in model.named_parameters() if not k.startswith("fc.bias")}
    res = balance_output_bias(model, calib)
    assert res["gap"] < 1e-3, res
    assert res["gap_before"] > res["gap"]
    assert not model.training  # the mode is restored
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    for k, v in model.named_parameters():
        if k in params:
            assert torch.equal(v, params[k]), k
    model.train()
    with torch.no_grad():
        gap_calib = _gap_literal(model(calib))
        gap_held = _gap_literal(model(held_out))
    for k, v in model.named_buffers():  # restore the stats the check forward just moved
        v.copy_(buffers[k])
    assert gap_calib < 1e-3
    assert gap_calib == pytest.approx(res["gap"], abs=1e-6)
    # reported, not a criterion: on another batch the balance holds only approximately
    assert gap_held < max(res["gap_before"], 0.05)


def test_balance_output_bias_needs_a_bias():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5, bias=False))
    with pytest.raises(UserError):
        balance_output_bias(model, torch.randn(8, 3, 4, 4))


def test_init_model_accepts_config_objects():
    from bnlab.config import InitConfig

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    init_model(m, InitConfig(conv="xavier"))
    init_model(m, None)
    with pytest.raises(UserError):
        init_model(m, {"conv": "nope"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("norm", ["batch", "batch_renorm", "ghost_batch", "frozen_batch", "group", "none"])
def test_models_and_balanced_bias_on_cuda(norm):
    torch.manual_seed(0)
    model = bnlab.build_model(depth=8, norm=norm).cuda()
    x = _images(64, 1).cuda()
    model(x).logsumexp(1).sum().backward()
    res = balance_output_bias(model, x)
    assert res["gap"] < 1e-3
