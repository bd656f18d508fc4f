import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import make
from torch import nn

from bnlab.errors import UserError
from bnlab.probes import PROBES
from bnlab.probes.kernel_alignment import kernel_alignment


def literal(conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> dict[str, dict[str, float]]:
    """Loop over b, x, y building every summand d^{b,x,y} (shape of the kernel) explicitly."""
    if conv.padding_mode == "zeros":
        xp = F.pad(x, [p for p in reversed(conv.padding) for _ in range(2)])
    else:
        xp = F.pad(x, [p for p in reversed(conv.padding) for _ in range(2)], mode=conv.padding_mode)
    B, O, H, W = g.shape  # noqa: E741
    kh, kw = conv.kernel_size
    (sh, sw), (dh, dw), G = conv.stride, conv.dilation, conv.groups
    og, cg = O // G, conv.in_channels // G
    d = torch.zeros(B, H, W, *conv.weight.shape, dtype=torch.float64)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                for o in range(O):
                    grp = o // og
                    patch = xp[
                        b,
                        grp * cg : (grp + 1) * cg,
                        i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                        j * sw : j * sw + dw * (kw - 1) + 1 : dw,
                    ]
                    d[b, i, j, o] = g[b, o, i, j] * patch
    sum_abs = float(d.abs().sum())
    out = {
        "spatial": float(d.sum((1, 2)).abs().sum()),
        "batch": float(d.sum(0).abs().sum()),
        "all": float(d.sum((0, 1, 2)).abs().sum()),
    }
    ratios = (d.abs().sum((0, 1, 2)) / d.sum((0, 1, 2)).abs()).flatten().numpy()
    return {
        "sum_abs": sum_abs,
        "abs_sum": out,
        "q": np.quantile(ratios, [0.25, 0.5, 0.75]),
        "weight_grad": d.sum((0, 1, 2)),
    }


@pytest.mark.parametrize("norm", [True, False])
def test_kernel_alignment_matches_literal_loop(norm):
    net, x, y = make(norm, batch=4)
    res = kernel_alignment(net, x, y)
    t = res.table
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert set(t.layer) == {n for n, _ in convs} and len(convs) == 6
    assert {(m.stride, m.dilation, m.groups) for _, m in convs} >= {
        ((2, 2), (1, 1), 1),
        ((1, 1), (2, 2), 2),
        ((2, 2), (1, 1), 2),
    }
    # literal reference: capture I and ∂L/∂O by hooks in the same (train) mode
    store = {}

    def keep(n):  # hand the network a clone: in-place ReLU / += downstream must not touch the stored output
        def hook(m, a, o):
            store[n] = (a[0].detach(), o)
            return o.clone()

        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in convs]
    net.train()
    out = net(x)
    for h in hooks:
        h.remove()
    loss = F.cross_entropy(out, y)
    names = [n for n, _ in convs]
    gs = torch.autograd.grad(loss, [store[n][1] for n in names])
    params = dict(net.named_parameters())
    wg = torch.autograd.grad(F.cross_entropy(net(x), y), [params[n + ".weight"] for n in names])
    for (n, m), g, w in zip(convs, gs, wg):
        ref = literal(m, store[n][0], g)
        assert float((ref["weight_grad"] - w).abs().max() / w.abs().max()) < 1e-10  # the loop is right
        for r in ("spatial", "batch", "all"):
            row = t[(t.layer == n) & (t.reduce == r)].set_index("metric").value
            assert abs(row["sum_abs"] / ref["sum_abs"] - 1) < 1e-6
            assert abs(row["abs_sum"] / ref["abs_sum"][r] - 1) < 1e-6, (n, r)
            assert abs(row["ratio"] / (ref["sum_abs"] / ref["abs_sum"][r]) - 1) < 1e-6
        row = t[(t.layer == n) & (t.reduce == "all")].set_index("metric").value
        np.testing.assert_allclose(
            [row["entry_ratio_q25"], row["entry_ratio_q50"], row["entry_ratio_q75"]], ref["q"], rtol=1e-6
        )
    assert t.paper_layer.notna().all()


def test_bn_all_ratio_large_and_reduce_subset():
    # with train-mode BN after a conv Σ_{b,x,y} ∂L/∂O = 0 per channel: the "all" sum cancels
    net, x, y = make(True, batch=8)
    t = kernel_alignment(net, x, y, reduce=["all"]).table
    assert set(t.reduce) == {"all"}
    assert PROBES.get("kernel_alignment") is kernel_alignment
    with pytest.raises(UserError):
        kernel_alignment(net, x, y, reduce=["time"])
    with pytest.raises(UserError):
        kernel_alignment(net, x, y, layers=["fc"])
    sub = kernel_alignment(net, x, y, layers=[1, "head_conv"]).table
    assert set(sub.layer) == {"stem.0", "head_conv"}
