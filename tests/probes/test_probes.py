"""Every batch probe against its definition computed naively (float64), and state left bit-identical."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from nets import make
from torch import nn

from bnlab.errors import UserError
from bnlab.probes import (
    PROBES,
    gradient_histogram,
    gradient_spectrum,
    gradient_variance,
    per_example_gradients,
)
from bnlab.probes.activation_moments import activation_moments
from bnlab.probes.output_bias import output_bias

ALL = [
    "gradient_histogram",
    "activation_moments",
    "output_bias",
    "kernel_alignment",
    "gradient_spectrum",
    "gradient_variance",
]


def close(a, b, tol=1e-6):
    return abs(a - b) <= tol * max(abs(b), 1e-300)


def metric(res, layer, name, **keys):
    t = res.table
    sel = (t.layer == layer) & (t.metric == name)
    for k, v in keys.items():
        sel &= t[k] == v
    (v,) = t[sel].value
    return v


def weights(net):
    return [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def batch_grads(net, x, y):
    net.train()
    mods = weights(net)
    g = torch.autograd.grad(F.cross_entropy(net(x), y), [m.weight for _, m in mods])
    return {n: gi for (n, _), gi in zip(mods, g)}


def naive_tails(v):
    v = np.asarray(v, dtype=np.float64)
    mean = sum(v) / len(v)
    std = math.sqrt(sum((t - mean) ** 2 for t in v) / len(v))
    a = sorted(abs(t) for t in v)[::-1]
    k = max(2, int(0.01 * len(v)))
    hill = k / sum(math.log(a[i] / a[k]) for i in range(k))
    return {
        "std": std,
        "kurtosis": scipy.stats.kurtosis(v, fisher=True, bias=True),
        "hill_index": hill,
        "frac_3sigma": sum(abs(t - mean) > 3 * std for t in v) / len(v),
        "frac_10sigma": sum(abs(t - mean) > 10 * std for t in v) / len(v),
        "max_abs": max(a),
    }


@pytest.mark.parametrize("variant", ["batch", "minibatch", "batch"])
def test_gradient_histogram_against_naive(variant):
    net, x, y = make(True)
    if variant == "batch":
        res = gradient_histogram(net, x, y)
        samples = {n: g.flatten() for n, g in batch_grads(net, x, y).items()}
    elif variant == "minibatch":
        res = gradient_histogram(net, x, y, minibatch_size=4, layers=["head_conv", 7])
        parts = [batch_grads(net, x[s : s + 4], y[s : s + 4]) for s in (0, 4)]
        samples = {n: torch.cat([p[n].flatten() for p in parts]) for n in ("head_conv", "fc")}
    else:
        res = gradient_histogram(net, x, y, per_example="batch", layers=["stages.s1.0.body.0"])
        net.train()
        losses = F.cross_entropy(net(x), y, reduction="none")
        w = net.stages["s1"][0].body[0].weight
        samples = {
            "stages.s1.0.body.0": torch.cat(
                [torch.autograd.grad(losses[i], w, retain_graph=True)[0].flatten() for i in range(8)]
            )
        }
    assert set(res.table.layer) == set(samples)
    for n, v in samples.items():
        ref = naive_tails(v.numpy())
        for k, val in ref.items():
            assert close(metric(res, n, k), val), (n, k)
        assert res.arrays[f"{n}/hist_counts"].sum() == v.numel()
        assert res.arrays[f"{n}/log10_counts"].sum() + res.arrays[f"{n}/log10_zeros"] == v.numel()
    assert res.attrs["norm_stats"] == "batch"


def test_gradient_variance_against_naive():
    net, x, y = make(True)
    res = gradient_variance(net, x, y, per_example="frozen")
    g = batch_grads(net, x, y)
    pe = per_example_gradients(net, x, y, "frozen")
    for n, _ in weights(net):
        gb = g[n].flatten().tolist()
        mean = sum(gb) / len(gb)
        assert close(metric(res, n, "intra_layer"), sum((t - mean) ** 2 for t in gb) / len(gb))
        rows = pe[n + ".weight"].reshape(8, -1)
        var_i = [float(((rows[:, e] - rows[:, e].mean()) ** 2).mean()) for e in range(rows.shape[1])]
        assert close(metric(res, n, "intra_batch"), sum(var_i) / len(var_i))
    assert res.attrs["per_example"] == "frozen"


def test_gradient_spectrum_against_numpy_svd():
    net, x, y = make(False)
    res = gradient_spectrum(net, x, y)
    g = batch_grads(net, x, y)
    acts = {}
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    hooks = [
        m.register_forward_pre_hook(lambda m, a, n=n: acts.__setitem__(n, a[0].detach())) for n, m in convs
    ]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    for n, m in convs:
        a = acts[n].permute(1, 0, 2, 3).reshape(m.in_channels, -1).numpy()
        for kind, mat in (
            ("gradient", g[n].reshape(m.out_channels, -1).numpy()),
            ("activation", a - a.mean(1, keepdims=True)),
        ):
            s = np.linalg.svd(mat, compute_uv=False)
            np.testing.assert_allclose(res.arrays[f"{n}/{kind}_sv"], s, rtol=1e-6, atol=1e-12 * s[0])
            p = s / s.sum()
            assert close(metric(res, n, "top1_share", matrix=kind), s[0] ** 2 / (s**2).sum())
            assert close(metric(res, n, "stable_rank", matrix=kind), np.linalg.norm(mat) ** 2 / s[0] ** 2)
            assert close(
                metric(res, n, "effective_rank", matrix=kind), math.exp(-sum(q * math.log(q) for q in p))
            )
    assert res.attrs["norm_stats"] == "none"


def test_activation_moments_against_naive():
    net, x, y = make(True)
    res = activation_moments(net, x, y)
    assert list(dict.fromkeys(res.table.layer)) == net.block_outputs()
    outs = {}
    mods = dict(net.named_modules())
    hooks = [
        mods[n].register_forward_hook(lambda m, a, o, n=n: outs.__setitem__(n, o.detach().clone()))
        for n in net.block_outputs()
    ]
    net.train()
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    for n, o in outs.items():
        means = [float(o[:, c].mean()) for c in range(o.shape[1])]
        stds = [float(o[:, c].std(unbiased=False)) for c in range(o.shape[1])]
        np.testing.assert_allclose(res.arrays[f"{n}/mean"], means, rtol=1e-6)
        lm = [math.log10(abs(m)) for m in means]
        ls = [math.log10(s) for s in stds]
        assert close(metric(res, n, "log10_abs_mean"), np.mean(lm))
        assert close(metric(res, n, "log10_abs_mean_sd"), np.std(lm))
        assert close(metric(res, n, "log10_std"), np.mean(ls))
        assert close(metric(res, n, "log10_std_sd"), np.std(ls))
    # block paper layer = first paper layer inside the block
    t = res.table
    assert t[t.layer == "stages.s1.1"].paper_layer.iloc[0] == net.paper_layers()["stages.s1.1.body.0"]
    # modules= by module object; default without block_outputs = top-level children
    r2 = activation_moments(net, x, y, modules=[net.fc])
    assert set(r2.table.layer) == {"fc"}


def test_output_bias_against_naive():
    net, x, y = make(False)
    res = output_bias(net, x, y)
    net.train()
    z = net(x).detach()
    p = torch.softmax(z, 1).numpy()
    onehot = np.eye(5)[y.numpy()]
    np.testing.assert_allclose(res.arrays["dL_dz"], (p - onehot) / 8, rtol=1e-6, atol=1e-15)
    preds = [int(np.argmax(r)) for r in p]
    counts = [preds.count(k) for k in range(5)]
    assert close(metric(res, "output", "top_class_share"), max(counts) / 8)
    assert close(metric(res, "output", "class_entropy"), -sum(c / 8 * math.log(c / 8) for c in counts if c))
    assert close(metric(res, "output", "max_mean_prob_gap"), max(abs(p[:, k].mean() - 0.2) for k in range(5)))
    var = sum(((p[:, k] - p[:, k].mean()) ** 2).mean() for k in range(5))
    assert close(
        metric(res, "output", "input_dependence"), var / sum((p[:, k] ** 2).mean() for k in range(5))
    )


def _state(net):
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        {n: p.grad.clone() for n, p in net.named_parameters()},
        {n: m.training for n, m in net.named_modules()},
    )


@pytest.mark.parametrize("name", ALL)
def test_probe_leaves_state_bit_identical(name):
    net, x, y = make(True, dtype=torch.float32)
    x = x.float()
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    net.eval()
    net.stem.train()  # mixed flags must come back as they were
    before = _state(net)
    res = PROBES.get(name)(net, x, y)
    assert len(res.table) > 0 and res.table.probe.eq(name).all()
    after = _state(net)
    for b, a in zip(before, after):
        assert b.keys() == a.keys()
        for k in b:
            assert torch.equal(b[k], a[k]) if isinstance(b[k], torch.Tensor) else b[k] == a[k], k


@pytest.mark.parametrize("mode", ["batch", "frozen", "running"])
def test_per_example_leaves_state_bit_identical(mode):
    net, x, y = make(True)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    before = _state(net)
    per_example_gradients(net, x, y, mode)
    after = _state(net)
    for b, a in zip(before, after):
        for k in b:
            assert torch.equal(b[k], a[k]) if isinstance(b[k], torch.Tensor) else b[k] == a[k], k


def test_norm_stats_running_warns_at_init_and_bad_options():
    net, x, y = make(True)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.num_batches_tracked.zero_()
    with pytest.warns(UserWarning, match="never saw a batch"):
        res = activation_moments(net, x, y, norm_stats="running")
    assert res.attrs["norm_stats"] == "running"
    with pytest.raises(UserError):
        activation_moments(net, x, y, norm_stats="population")
    with pytest.raises(UserError):
        activation_moments(net, x, y, modules=["nope"])
    with pytest.raises(UserError):
        gradient_histogram(net, x, y, per_example="batch", minibatch_size=2)


def test_custom_loss_fn_is_used():
    net, x, y = make(False)
    res = output_bias(net, x, y, loss_fn=lambda z, t: (z**2).mean())
    net.train()
    z = net(x).detach()
    np.testing.assert_allclose(res.arrays["dL_dz"], (2 * z / z.numel()).numpy(), rtol=1e-6)
