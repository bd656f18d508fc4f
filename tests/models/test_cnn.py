"""cnn_cifar: the small plain CNN of E16 (conv-norm-act-pool units, avgpool, fc)."""

import pytest
import torch
from torch import nn

from bnlab.errors import UserError
from bnlab.models import build_model


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_cnn_shape_size_and_biases(norm):
    torch.manual_seed(0)
    m = build_model("cnn_cifar", depth=3, hidden=16, norm=norm)
    assert m(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    n = sum(p.numel() for p in m.parameters())
    assert n <= 50_000
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 3 and all((c.bias is None) == (norm == "batch") for c in convs)
    assert m.paper_layers() == {"features.0.conv": 1, "features.1.conv": 2, "features.2.conv": 3, "fc": 4}
    assert m.block_outputs() == ["features.0", "features.1", "features.2"]


def test_cnn_deeper_than_the_image_stops_pooling_and_refuses_residual_options():
    m = build_model("cnn_cifar", depth=7, hidden=4, image_size=8)
    assert m(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    with pytest.raises(UserError, match="no residual blocks"):
        build_model("cnn_cifar", depth=3, skipinit=True)
