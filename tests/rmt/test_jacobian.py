"""jacobian_spectrum against dense Jacobians from torch.autograd.functional.jacobian (float64)."""

import numpy as np
import pytest
import torch
from torch import nn

from bnlab.errors import UserError
from bnlab.probes.jacobians import dense_jacobian, golub_kahan, jacobian_spectrum


def mlp(width: int = 16, bn: bool = True, act: type[nn.Module] = nn.Tanh, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(10, width)]
    for _ in range(2):
        layers += [nn.BatchNorm1d(width)] if bn else []
        layers += [act(), nn.Linear(width, width)]
    layers += [nn.BatchNorm1d(width)] if bn else []
    layers += [act(), nn.Linear(width, 7)]
    net = nn.Sequential(*layers).double()
    if bn:  # non-trivial running statistics so that "running" differs from "frozen"
        with torch.no_grad():
            net.train()
            for _ in range(3):
                net(torch.randn(32, 10, dtype=torch.float64) * 2 + 0.5)
    return net


def literal_jacobian(net: nn.Sequential, x: torch.Tensor, i: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """d net[lo+1..hi](h)[i] / d h[i] with h = net[:lo+1](x), by autograd.functional.jacobian (the slow twin)."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    with torch.no_grad():
        h = net[: lo + 1](x) if lo >= 0 else x.clone()
    tail = net[lo + 1 : hi + 1]

    def f(hi_row: torch.Tensor) -> torch.Tensor:
        full = torch.cat([h[:i], hi_row[None], h[i + 1 :]])
        z = full
        for mod in tail:
            if isinstance(mod, nn.BatchNorm1d) and mode == "batch":
                z = (z - z.mean(0)) / torch.sqrt(z.var(0, correction=0) + mod.eps) * mod.weight + mod.bias
            elif isinstance(mod, nn.BatchNorm1d) and mode == "frozen":
                zd = z.detach()  # statistics as constants
                z = (z - zd.mean(0)) / torch.sqrt(zd.var(0, correction=0) + mod.eps) * mod.weight + mod.bias
            else:
                z = mod(z)
        return z[i]

    jac = torch.autograd.functional.jacobian(f, h[i]).numpy()
    net.load_state_dict(state)
    return jac


@pytest.mark.parametrize("mode", ["batch", "frozen", "running"])
def test_dense_matches_literal(mode):
    net = mlp()
    x = torch.randn(12, 10, dtype=torch.float64)
    got = dense_jacobian(net, x, "0", "7", mode=mode, examples=[3, 5])
    for s, i in enumerate([3, 5]):
        np.testing.assert_allclose(got[s], literal_jacobian(net, x, i, 0, 7, mode), atol=1e-12)


@pytest.mark.parametrize("mode", ["batch", "frozen", "running"])
@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_spectrum_relative_error(mode, method):
    net = mlp()
    x = torch.randn(12, 10, dtype=torch.float64)
    ex = [0, 4]
    res = jacobian_spectrum(net, x, "0", "7", k=3, mode=mode, examples=ex, method=method)
    assert res.exact and res.method == method and res.d_in == 16 and res.d_out == 16
    for s, i in enumerate(ex):
        sv = np.linalg.svd(literal_jacobian(net, x, i, 0, 7, mode), compute_uv=False)
        assert sv[-1] > 1e-6 * sv[0]  # tanh keeps the Jacobian well away from singular
        np.testing.assert_allclose(res.top[s], sv[:3], rtol=1e-6)
        np.testing.assert_allclose(res.bottom[s], sv[::-1][:3], rtol=1e-6)
    assert res.norm_stats == mode


def test_rectangular_and_whole_network():
    net = mlp(bn=False)
    x = torch.randn(5, 10, dtype=torch.float64)
    res = jacobian_spectrum(net, x, None, None, k=2, method="lanczos")  # 10 -> 7: Lanczos runs on J^T
    assert res.d_in == 10 and res.d_out == 7 and res.norm_stats == "none"
    for i in range(5):
        jac = torch.autograd.functional.jacobian(lambda r: net(r[None])[0], x[i]).numpy()
        sv = np.linalg.svd(jac, compute_uv=False)
        np.testing.assert_allclose(res.top[i], sv[:2], rtol=1e-6)
        np.testing.assert_allclose(res.bottom[i], sv[::-1][:2], rtol=1e-6)


def test_model_state_untouched():
    net = mlp()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(8, 10, dtype=torch.float64)
    for mode in ("batch", "frozen"):
        jacobian_spectrum(net, x, "2", "8", k=1, mode=mode, method="lanczos", examples=[1])
    with pytest.warns(UserWarning, match="never saw a batch"):
        fresh = mlp(bn=True, seed=1)
        fresh.load_state_dict({k: v for k, v in mlp(seed=1).state_dict().items()})
        for m in fresh.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.num_batches_tracked.zero_()
        jacobian_spectrum(fresh, x, "0", "4", mode="running")
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_partial_krylov_brackets_the_extremes():
    # Ritz values interlace: top Ritz <= sigma_max, and the residual bounds the distance
    net = mlp(width=64, bn=False)
    x = torch.randn(3, 10, dtype=torch.float64)
    res = jacobian_spectrum(net, x, "2", "4", k=1, method="lanczos", krylov_dim=30)
    dense = jacobian_spectrum(net, x, "2", "4", k=1, method="dense")
    assert not res.exact and dense.exact
    assert np.all(res.top <= dense.top * (1 + 1e-12))
    np.testing.assert_allclose(res.top, dense.top, rtol=1e-6)  # top converges fast
    assert np.all(res.bottom >= dense.bottom * (1 - 1e-12))


def test_golub_kahan_on_matrices():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 9, 6))  # two operators R^6 -> R^9 at once
    a[1, :, 0] = a[1, :, 1]  # rank-deficient: a zero singular value (breakdown path)
    theta, _, _ = golub_kahan(
        lambda v: np.einsum("sij,sj->si", a, v), lambda u: np.einsum("sij,si->sj", a, u), 2, 6, 9, 6, rng
    )
    np.testing.assert_allclose(theta, np.linalg.svd(a, compute_uv=False), atol=1e-12)


def test_bad_input():
    net = mlp(bn=False)
    x = torch.randn(4, 10, dtype=torch.float64)
    with pytest.raises(UserError, match="no module"):
        jacobian_spectrum(net, x, "nope", "3")
    with pytest.raises(UserError, match="swap"):
        jacobian_spectrum(net, x, "3", "1")
    with pytest.raises(UserError, match="mode"):
        jacobian_spectrum(net, x, "0", "3", mode="population")
    with pytest.warns(DeprecationWarning, match="eval"):
        jacobian_spectrum(net, x, "0", "3", mode="eval")
    with pytest.raises(UserError, match="k ="):
        jacobian_spectrum(net, x, "0", "3", k=100)


def renorm_mlp(frozen_bn: bool = False) -> nn.Sequential:
    """Linear -> BatchRenorm1d (r, d clipping active) -> Tanh -> Linear [-> FrozenBatchNorm1d] -> Tanh -> Linear."""
    from bnlab.nn.norms import BatchRenorm1d, FrozenBatchNorm1d

    torch.manual_seed(3)
    renorm = BatchRenorm1d(12, r_max=1.5, d_max=0.5, warmup_start=0, r_max_at=1, d_max_at=1)
    second: nn.Module = FrozenBatchNorm1d(12) if frozen_bn else nn.Identity()
    net = nn.Sequential(
        nn.Linear(6, 12), renorm, nn.Tanh(), nn.Linear(12, 12), second, nn.Tanh(), nn.Linear(12, 5)
    )
    net = net.double()
    with torch.no_grad():  # running statistics far from the batch's, so that r and d are clipped
        renorm.running_mean.fill_(0.7)
        renorm.running_var.fill_(4.0)
        renorm.num_batches_tracked.fill_(10)
        if frozen_bn:
            second.running_mean.uniform_(-0.5, 0.5)
            second.running_var.uniform_(0.5, 2.0)
    return net


def literal_renorm_jacobian(net: nn.Sequential, x: torch.Tensor, i: int, mode: str) -> np.ndarray:
    """d net(x)[i] / d x[i] written out: batch renorm y = ((z − μ_B)/σ_B · r + d)·γ + β with r, d constants
    (and μ_B, σ_B constants too in frozen mode); frozen batch norm uses its running statistics."""
    from bnlab.nn.norms import BatchRenorm1d, FrozenBatchNorm1d

    def f(row: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x[:i], row[None], x[i + 1 :]])
        for mod in net:
            if isinstance(mod, BatchRenorm1d):
                zs = z if mode == "batch" else z.detach()
                mean, sigma_b = zs.mean(0), torch.sqrt(zs.var(0, correction=0) + mod.eps)
                r_max, d_max = mod.clip_limits(int(mod.num_batches_tracked))
                sigma = torch.sqrt(mod.running_var + mod.eps)
                r = (sigma_b.detach() / sigma).clamp(1 / r_max, r_max)
                d = ((mean.detach() - mod.running_mean) / sigma).clamp(-d_max, d_max)
                z = ((z - mean) / sigma_b * r + d) * mod.weight + mod.bias
            elif isinstance(mod, FrozenBatchNorm1d):
                z = (z - mod.running_mean) / torch.sqrt(mod.running_var + mod.eps) * mod.weight + mod.bias
            else:
                z = mod(z)
        return z[i]

    return torch.autograd.functional.jacobian(f, x[i]).detach().numpy()


@pytest.mark.parametrize("frozen_bn", [False, True])
@pytest.mark.parametrize("mode", ["batch", "frozen"])
def test_batch_renorm_and_frozen_bn_match_literal(mode, frozen_bn):
    net = renorm_mlp(frozen_bn)
    net.train()
    x = torch.randn(9, 6, dtype=torch.float64) * 0.3 - 1.0
    before = {k: v.clone() for k, v in net.state_dict().items()}
    got = dense_jacobian(net, x, None, None, mode=mode, examples=[0, 4])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    for s, i in enumerate([0, 4]):
        np.testing.assert_allclose(got[s], literal_renorm_jacobian(net, x, i, mode), atol=1e-12)
    res = jacobian_spectrum(net, x, None, None, k=2, mode=mode, examples=[4])
    sv = np.linalg.svd(literal_renorm_jacobian(net, x, 4, mode), compute_uv=False)
    np.testing.assert_allclose(res.top[0], sv[:2], rtol=1e-9)
    assert res.norm_stats == mode


def test_jacobian_is_a_registered_probe():
    from bnlab.probes import PROBE_KIND, PROBES
    from bnlab.probes import jacobian_spectrum as probe

    assert PROBES.get("jacobian_spectrum") is probe and PROBE_KIND["jacobian_spectrum"] == "batch"
    net = renorm_mlp()
    x = torch.randn(9, 6, dtype=torch.float64) * 0.3 - 1.0
    res = probe(net, x, None, k=2, norm_stats="frozen", examples=[1, 2])
    ref = jacobian_spectrum(net, x, None, None, k=2, mode="frozen", examples=[1, 2])
    top = res.table[res.table.metric == "sigma_top"].sort_values(["example", "rank"])["value"].to_numpy()
    np.testing.assert_array_equal(top, ref.top.reshape(-1))
    assert res.attrs["norm_stats"] == "frozen" and res.attrs["to_layer"] == "output"
    np.testing.assert_array_equal(res.arrays["bottom"], ref.bottom)
