"""jacobian_spectrum against dense Jacobians from torch.autograd.functional.jacobian (float64)."""

import numpy as np
import pytest
import torch
from torch import nn

from bnlab.errors import UserError
from bnlab.rmt.jacobian import dense_jacobian, golub_kahan, jacobian_spectrum


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
    assert res.norm_mode == ("running_stats" if mode == "running" else "batch_stats")


def test_rectangular_and_whole_network():
    net = mlp(bn=False)
    x = torch.randn(5, 10, dtype=torch.float64)
    res = jacobian_spectrum(net, x, None, None, k=2, method="lanczos")  # 10 -> 7: Lanczos runs on J^T
    assert res.d_in == 10 and res.d_out == 7 and res.norm_mode == "none"
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
        jacobian_spectrum(net, x, "0", "3", mode="eval")
    with pytest.raises(UserError, match="k ="):
        jacobian_spectrum(net, x, "0", "3", k=100)
