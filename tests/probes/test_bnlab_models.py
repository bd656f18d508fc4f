"""Every init probe on a bnlab ResNet: paper layers filled in, BN vs no-BN modes recorded, state untouched."""

import pytest
import torch

import bnlab
from bnlab.probes import PROBES

INIT_PROBES = [
    "gradient_histogram",
    "activation_moments",
    "output_bias",
    "kernel_alignment",
    "gradient_spectrum",
    "gradient_variance",
]


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_init_probes_on_resnet_cifar(norm):
    torch.manual_seed(0)
    model = bnlab.build_model(name="resnet_cifar", depth=8, norm=norm)
    x, y = torch.randn(6, 3, 16, 16), torch.arange(6) % 10
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name in INIT_PROBES:
        opts = {"per_example": "frozen"} if name == "gradient_variance" else {}
        res = PROBES.get(name)(model, x, y, **opts)
        assert res.attrs["norm_stats"] == ("batch" if norm == "batch" else "none")
        if name != "output_bias":
            assert res.table.paper_layer.notna().all(), name
    blocks = PROBES.get("activation_moments")(model, x, y).table
    assert list(dict.fromkeys(blocks.layer)) == model.block_outputs()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
