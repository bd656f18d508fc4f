"""Every model x norm x placement builds, runs forward and backward; sizes, options and bias rules."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import bnlab
from bnlab.config import ModelConfig
from bnlab.errors import UserError
from bnlab.models import MODELS
from bnlab.models.layers import ResidualBlock
from bnlab.models.vgg import stage_sizes
from bnlab.nn.norms import NORM_TYPES, NORMS

PLACEMENTS = ["all", "final_prepool", "final_prefc", "none"]
SMALL = {
    "resnet_cifar": {"depth": 8},
    "vgg_cifar": {"depth": 5},
    "mlp": {"depth": 3, "hidden": 32, "image_size": 8},
}


def _norm_modules(model):
    return [m for m in model.modules() if isinstance(m, NORM_TYPES)]


def _refused(model, norm, placement):
    """Instance norm has no 1-d form (the MLP's norms and the pre-FC norm are 1-d) and needs more than
    one spatial position (a VGG's features end at 1x1 on 32x32 images)."""
    if norm != "instance" or placement == "none":
        return False
    return (
        model == "mlp"
        or placement == "final_prefc"
        or (model == "vgg_cifar" and placement == "final_prepool")
    )


def test_registry():
    assert MODELS.names() == ["resnet_cifar", "vgg_cifar", "mlp", "cnn_cifar"]


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("norm", NORMS.names())
@pytest.mark.parametrize("name", list(SMALL))
def test_forward_backward(name, norm, placement):
    cfg = {"name": name, "norm": norm, "placement": placement, **SMALL[name]}
    if _refused(name, norm, placement):
        with pytest.raises(UserError):
            bnlab.build_model(**cfg)
        return
    torch.manual_seed(0)
    model = bnlab.build_model(**cfg)
    size = cfg.get("image_size", 32)
    x = torch.randn(4, 3, size, size)
    out = model(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    norms = _norm_modules(model)
    if norm == "none" or placement == "none":
        assert norms == []
    elif placement == "all":
        assert len(norms) >= (3 if name != "mlp" else 2)
    else:
        assert len(norms) == 1


@pytest.mark.parametrize(
    "variant",
    [
        {"block": "pre"},
        {"block": "pre", "shortcut": "B"},
        {"shortcut": "B"},
        {"skipinit": True},
        {"skipinit": True, "norm": "none"},
        {"block": "pre", "placement": "final_prepool"},
        {"block": "pre", "norm": "group", "norm_kw": {"channels_per_group": 4}},
        {"norm": "none", "fixup": True},
        {"norm": "none", "fixup": True, "shortcut": "B"},
        {"activation": "linear", "norm": "none"},
        {"width": 2, "depth": 14},
        {"norm": "ghost_batch", "norm_kw": {"virtual_batch": 2}},
    ],
)
def test_resnet_variants(variant):
    torch.manual_seed(0)
    cfg = {"depth": 8, **variant}
    model = bnlab.build_model(**cfg)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname


@pytest.mark.parametrize("block", ["post", "pre"])
def test_resnet110_size_and_shape(block):
    torch.manual_seed(0)
    model = bnlab.build_model(depth=110, norm="batch", block=block)
    n = sum(p.numel() for p in model.parameters())
    assert 1.6e6 < n < 1.8e6, n
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 109  # conv1 + 108 branch convs (option A shortcuts have no weights)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet20_size():
    n = sum(p.numel() for p in bnlab.build_model(depth=20).parameters())
    assert 0.26e6 < n < 0.28e6, n  # He et al.: 0.27M


def test_literal_parameter_count_resnet20():
    """Count by hand: 3x3 convs without bias, BN (2 per channel), FC 64x10 + 10."""
    conv = 3 * 16 * 9 + 3 * 2 * 16 * 16 * 9  # stem + stage 1
    conv += (16 * 32 + 32 * 32) * 9 + 2 * 2 * 32 * 32 * 9  # stage 2
    conv += (32 * 64 + 64 * 64) * 9 + 2 * 2 * 64 * 64 * 9  # stage 3
    bn = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    fc = 64 * 10 + 10
    assert sum(p.numel() for p in bnlab.build_model(depth=20).parameters()) == conv + bn + fc


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_bias_only_where_no_norm_follows(name, placement):
    model = bnlab.build_model(name=name, placement=placement, **SMALL[name])
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not _fc(model)]
    want_bias = placement != "all"
    assert all((m.bias is not None) == want_bias for m in layers)
    assert _fc(model).bias is not None


def _fc(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def test_batch_type_norms_are_found_by_type():
    for norm in ("batch", "batch_renorm", "ghost_batch", "frozen_batch"):
        model = bnlab.build_model(depth=8, norm=norm)
        assert sum(isinstance(m, _BatchNorm) for m in model.modules()) == 7  # stem + 2 per block


def test_build_model_accepts_every_config_field():
    for name, extra in SMALL.items():
        cfg = ModelConfig(name=name, **extra).model_dump()
        assert set(cfg) == set(ModelConfig.model_fields)
        assert bnlab.build_model(**cfg) is not None
    model = bnlab.build_model(**ModelConfig(depth=8, num_classes=None).model_dump())
    assert model.fc.out_features == 10
    assert bnlab.build_model(depth=8, num_classes=100).fc.out_features == 100


@pytest.mark.parametrize(
    "cfg",
    [
        {"depth": 9},
        {"depth": 8, "fixup": True},  # needs norm none
        {"depth": 8, "norm": "none", "fixup": True, "block": "pre"},
        {"depth": 8, "nonsense": 1},
        {"depth": 8, "norm": "nope"},
        {"depth": 8, "norm_kw": {"momentum": 0.1, "bogus": 2}},
        {"name": "vgg_cifar", "depth": 8, "skipinit": True},
        {"name": "mlp", "depth": 2, "block": "pre"},
        {"name": "vgg_cifar", "depth": 4},
        {"depth": 8, "norm": "group", "norm_kw": {"channels_per_group": 1}},
    ],
)
def test_bad_configs_are_user_errors(cfg):
    with pytest.raises(UserError):
        bnlab.build_model(**cfg)


def test_skipinit_blocks_start_as_identity():
    torch.manual_seed(0)
    model = bnlab.build_model(depth=8, skipinit=True)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(model.layer1[0](x), torch.relu(x))
    pre = bnlab.build_model(depth=8, skipinit=True, block="pre")
    torch.testing.assert_close(pre.layer1[0](x), x)


def test_shortcut_a_is_zero_padding():
    model = bnlab.build_model(depth=8, norm="none")
    sc = model.layer2[0].shortcut
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert (y[:, 16:] == 0).all()


def test_placements_put_one_norm_where_described():
    post = bnlab.build_model(depth=8, placement="final_prepool")
    assert isinstance(post.final_norm, nn.BatchNorm2d)
    prefc = bnlab.build_model(depth=8, placement="final_prefc")
    assert isinstance(prefc.prefc_norm, nn.BatchNorm1d)
    pre_all = bnlab.build_model(depth=8, block="pre")  # He 2016b: the pre-act net ends with norm-relu
    assert isinstance(pre_all.final_norm, nn.BatchNorm2d)


@pytest.mark.parametrize(
    "depth,sizes", [(8, [1, 1, 2, 2, 2]), (10, [2, 2, 2, 2, 2]), (13, [2, 2, 3, 3, 3]), (16, [2, 2, 4, 4, 4])]
)
def test_vgg_stage_sizes_match_standard_configs(depth, sizes):
    assert stage_sizes(depth) == sizes


@pytest.mark.parametrize("depth", [8, 11, 13, 16, 19])
def test_vgg_depth_counts_convs(depth):
    assert sum(stage_sizes(depth)) == depth
    model = bnlab.build_model(name="vgg_cifar", depth=depth, image_size=8, init={"conv": "default"})
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth
    layers = model.paper_layers()
    assert sorted(layers.values()) == list(range(1, depth + 2))
    assert len(model.block_outputs()) == depth
    assert all(isinstance(model.get_submodule(n), nn.Module) for n in model.block_outputs())


def test_mlp_layers():
    model = bnlab.build_model(name="mlp", depth=4, hidden=16, image_size=4)
    assert model.paper_layers() == {"layers.0.linear": 1, "layers.1.linear": 2, "layers.2.linear": 3, "fc": 4}
    assert model.block_outputs() == ["layers.0", "layers.1", "layers.2"]
    for name in model.paper_layers():
        assert isinstance(model.get_submodule(name), nn.Linear)
    one = bnlab.build_model(name="mlp", depth=1, image_size=4)
    assert one.paper_layers() == {"fc": 1} and one(torch.randn(2, 3, 4, 4)).shape == (2, 10)


def test_residual_blocks_found_by_type():
    model = bnlab.build_model(depth=14)
    blocks = [n for n, m in model.named_modules() if isinstance(m, ResidualBlock)]
    assert blocks == model.block_outputs()
