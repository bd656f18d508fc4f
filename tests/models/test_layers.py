"""The paper's layer numbering (ResNet-110) and its map to other depths; block outputs."""

from __future__ import annotations

import pytest
from torch import nn

import bnlab
from bnlab.errors import UserError
from bnlab.models.layers import ResidualBlock, local_to_paper, paper_layer_to_local

DEPTHS = [8, 14, 20, 32, 44, 56, 110]


@pytest.fixture(scope="module")
def resnet110():
    return bnlab.build_model(depth=110, init={"conv": "default"})


def test_paper_numbering_at_110(resnet110):
    layers = resnet110.paper_layers()
    assert sorted(layers.values()) == list(range(1, 111))
    assert layers["conv1"] == 1 and layers["fc"] == 110
    # stage boundaries: stage 1 = 2-37, stage 2 = 38-73, stage 3 = 74-109
    assert layers["layer1.0.conv1"] == 2 and layers["layer1.17.conv2"] == 37
    assert layers["layer2.0.conv1"] == 38 and layers["layer2.17.conv2"] == 73
    assert layers["layer3.0.conv1"] == 74 and layers["layer3.17.conv2"] == 109
    by_number = {v: k for k, v in layers.items()}
    layer55 = resnet110.get_submodule(by_number[55])  # mid-stage-2, a 32 -> 32 3x3 conv
    assert isinstance(layer55, nn.Conv2d) and layer55.in_channels == layer55.out_channels == 32
    assert layer55.kernel_size == (3, 3) and layer55.stride == (1, 1)
    for name, number in layers.items():  # block j holds layers 2j and 2j+1
        if name.startswith("layer"):
            stage, index = name.split(".")[:2]
            s, i = int(stage.removeprefix("layer")), int(index)
            j = (s - 1) * 18 + i + 1
            assert number == 2 * j + (name.endswith("conv2"))


def test_block_for_paper_layer_at_110(resnet110):
    assert resnet110.block_for_paper_layer(55) == "layer2.8"
    assert resnet110.block_for_paper_layer(6) == "layer1.2"
    assert resnet110.block_for_paper_layer(8) == "layer1.3"
    assert resnet110.block_for_paper_layer(44) == "layer2.3"
    assert resnet110.block_for_paper_layer(80) == "layer3.3"
    assert resnet110.block_for_paper_layer(1) == "act1"
    assert resnet110.block_for_paper_layer(110) == "fc"
    for name, number in resnet110.paper_layers().items():
        if name.startswith("layer"):
            assert name.startswith(resnet110.block_for_paper_layer(number) + ".")
    outputs = resnet110.block_outputs()
    assert len(outputs) == 54 and outputs[0] == "layer1.0" and outputs[-1] == "layer3.17"
    assert all(isinstance(resnet110.get_submodule(n), ResidualBlock) for n in outputs)
    with pytest.raises(UserError):
        resnet110.block_for_paper_layer(111)


def _reference_local(paper_layer, depth):
    """Literal twin of paper_layer_to_local: walk the paper's layer list and the local one side by side."""
    n = (depth - 2) // 6
    if paper_layer == 1:
        return 1
    if paper_layer == 110:
        return depth
    for stage in range(3):
        for i in range(18):
            for pos in range(2):
                if 2 * (stage * 18 + i + 1) + pos == paper_layer:
                    # the local block whose relative position i'/(n-1) is nearest to i/17 (ties upward)
                    best = min(range(n), key=lambda k: (abs(k / max(n - 1, 1) - i / 17), -k)) if n > 1 else 0
                    return 2 * (stage * n + best + 1) + pos
    raise AssertionError(paper_layer)


@pytest.mark.parametrize("depth", DEPTHS)
def test_paper_to_local_against_reference(depth):
    for p in range(1, 111):
        assert paper_layer_to_local(p, depth) == _reference_local(p, depth), p


@pytest.mark.parametrize("depth", DEPTHS)
def test_mapping_properties(depth):
    assert [paper_layer_to_local(p, 110) for p in range(1, 111)] == list(range(1, 111))
    local = [paper_layer_to_local(p, depth) for p in range(1, 111)]
    assert [loc // 2 for loc in local] == sorted(loc // 2 for loc in local)  # blocks in order
    assert set(local) == set(range(1, depth + 1))  # every local layer is some paper layer's image
    for loc in range(1, depth + 1):
        assert paper_layer_to_local(local_to_paper(loc, depth), depth) == loc
    n = (depth - 2) // 6
    # stage boundaries are kept: the paper's first/last conv of each stage -> the local ones
    for s, (first, last) in enumerate([(2, 37), (38, 73), (74, 109)]):
        assert paper_layer_to_local(first, depth) == 2 * (s * n + 1)
        assert paper_layer_to_local(last, depth) == 2 * (s + 1) * n + 1


def test_examples_at_depth_20():
    model = bnlab.build_model(depth=20)
    assert paper_layer_to_local(55, 20) == 11  # middle block of stage 2, second conv
    assert model.block_for_paper_layer(55) == "layer2.1"
    assert model.paper_layers()["layer2.1.conv2"] == 57  # local 11 -> paper's middle of stage 2
    assert set(model.paper_layers().values()) >= {1, 2, 37, 38, 73, 74, 109, 110}


def test_bad_layers_and_depths():
    with pytest.raises(UserError):
        paper_layer_to_local(0, 20)
    with pytest.raises(UserError):
        paper_layer_to_local(5, 21)
    with pytest.raises(UserError):
        local_to_paper(21, 20)


def test_preact_stem_output():
    assert bnlab.build_model(depth=8, block="pre").block_for_paper_layer(1) == "conv1"
