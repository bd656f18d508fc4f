"""INITS: weight initializations, chosen separately for conv layers and for linear layers.

Every entry is `init(layer, *, gain) -> None` for an nn.Conv2d or nn.Linear; `init_model(model, cfg)`
applies `INITS[cfg.conv]` to every Conv2d and `INITS[cfg.fc]` to every Linear (found by type).

| name             | weight                                                         | bias      |
|------------------|----------------------------------------------------------------|-----------|
| kaiming_fan_in   | N(0, gain^2 / fan_in) (He et al. 2015) — the conv default        | 0         |
| kaiming_fan_out  | N(0, gain^2 / fan_out)                                         | 0         |
| xavier           | U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010, gain 1) | 0 |
| orthogonal       | gain x a (semi-)orthogonal (c_out, c_in*k*k) matrix (Saxe et al. 2014) | 0    |
| delta_orthogonal | zero kernel whose spatial centre is gain x a (semi-)orthogonal (c_out, c_in) matrix (Xiao et al. 2018); on a Linear = orthogonal | 0 |
| default          | the layer's own `reset_parameters()` (PyTorch: U(+-1/sqrt(fan_in)) for weights and biases) — the fc default | PyTorch's |

Defaults (InitConfig): conv `kaiming_fan_in` (He, the ResNet default; the paper says Xavier, see
PAPER.md), fc `default` (PyTorch's Linear init). `gain` comes from the model's `nonlinearity`
attribute (relu -> sqrt(2), linear -> 1; relu when absent) and is used by kaiming, orthogonal and
delta_orthogonal; Xavier keeps Glorot's gain 1.

Options applied after the weights: `zero_last_gamma` (the gamma of each residual branch's last norm
= 0, Goyal et al. 2017); Fixup rescaling for models built with `fixup=True` (Zhang et al. 2019:
branch convs but the last x L^(-1/(2m-2)) with L blocks and m convs per branch, the last conv of each
branch and the classifier = 0). `balanced_output_bias` needs data, so `init_model` does not apply
it: the trainer calls `balance_output_bias(model, inputs)` on a calibration batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.nn.blocks import ResidualBlock
from bnlab.registry import Registry

INITS: Registry[Callable[..., None]] = Registry("init", lister="bnlab ls inits")
Layer = nn.Conv2d | nn.Linear  # what an init receives


def _zero_bias(layer: Layer) -> None:
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _he_normal(layer: Layer, gain: float, fan: int) -> None:
    """Normal weights with std gain / sqrt(fan), bias 0 (He et al. 2015)."""
    with torch.no_grad():
        layer.weight.normal_(0.0, gain / math.sqrt(fan))
    _zero_bias(layer)


@INITS.register("kaiming_fan_in")
def kaiming_fan_in(layer: Layer, *, gain: float = math.sqrt(2.0)) -> None:
    """He et al. 2015: normal, std gain / sqrt(fan_in); bias 0."""
    _he_normal(layer, gain, nn.init._calculate_fan_in_and_fan_out(layer.weight)[0])


@INITS.register("kaiming_fan_out")
def kaiming_fan_out(layer: Layer, *, gain: float = math.sqrt(2.0)) -> None:
    """He et al. 2015, fan-out mode: normal, std gain / sqrt(fan_out); bias 0."""
    _he_normal(layer, gain, nn.init._calculate_fan_in_and_fan_out(layer.weight)[1])


@INITS.register("xavier")
def xavier(layer: Layer, *, gain: float = 1.0) -> None:
    """Glorot & Bengio 2010: uniform with variance 2 / (fan_in + fan_out) (gain 1 always); bias 0."""
    nn.init.xavier_uniform_(layer.weight, gain=1.0)
    _zero_bias(layer)


@INITS.register("orthogonal")
def orthogonal(layer: Layer, *, gain: float = math.sqrt(2.0)) -> None:
    """Saxe et al. 2014: the weight as a (c_out, c_in*k*k) matrix is gain x (semi-)orthogonal; bias 0."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    _zero_bias(layer)


def delta_orthogonal_(weight: Tensor, gain: float = 1.0) -> Tensor:
    """Xiao et al. 2018: a kernel that is zero except at its spatial centre, where it is gain x a
    (semi-)orthogonal (c_out, c_in) matrix (orthonormal rows if c_out <= c_in, columns otherwise).
    Needs odd kernel sizes (a centre)."""
    if weight.dim() < 3:
        return nn.init.orthogonal_(weight, gain=gain)
    c_out, c_in, *ks = weight.shape
    if any(k % 2 == 0 for k in ks):
        raise UserError(f"delta_orthogonal needs odd kernel sizes, got {tuple(ks)}; choose another conv init")
    centre = torch.empty(c_out, c_in, dtype=weight.dtype, device=weight.device)
    nn.init.orthogonal_(centre, gain=gain)
    index: Any = (slice(None), slice(None), *(k // 2 for k in ks))
    with torch.no_grad():
        weight.zero_()
        weight[index] = centre
    return weight


@INITS.register("delta_orthogonal")
def delta_orthogonal(layer: Layer, *, gain: float = math.sqrt(2.0)) -> None:
    """Xiao et al. 2018: zero kernel with a gain x (semi-)orthogonal centre; on a Linear = orthogonal; bias 0."""
    delta_orthogonal_(layer.weight, gain=gain)
    _zero_bias(layer)


@INITS.register("default")
def default(layer: Layer, *, gain: float = 1.0) -> None:
    """The layer's own reset_parameters() (PyTorch's default: uniform +-1/sqrt(fan_in), weight and bias)."""
    layer.reset_parameters()


def _gain(model: nn.Module) -> float:
    nonlinearity = getattr(model, "nonlinearity", "relu")
    if nonlinearity not in ("relu", "linear"):
        raise UserError(f"model nonlinearity {nonlinearity!r} has no init gain; use relu or linear")
    return math.sqrt(2.0) if nonlinearity == "relu" else 1.0  # torch.nn.init.calculate_gain's values


def _cfg_dict(init_cfg: Any) -> dict[str, Any]:
    from bnlab.config import InitConfig

    if init_cfg is None:
        return InitConfig().model_dump()
    if isinstance(init_cfg, InitConfig):
        return init_cfg.model_dump()
    if isinstance(init_cfg, Mapping):
        try:
            return InitConfig(**dict(init_cfg)).model_dump()
        except Exception as e:  # pydantic ValidationError -> one sentence
            first = e.errors()[0] if hasattr(e, "errors") else {"msg": str(e), "loc": ()}
            loc = ".".join(str(p) for p in first["loc"]) or "init"
            raise UserError(f"invalid model.init.{loc}: {first['msg']}") from None
    raise UserError(f"model.init must be a mapping, got {type(init_cfg).__name__}")


def init_model(model: nn.Module, init_cfg: Mapping[str, Any] | Any | None = None) -> nn.Module:
    """Initialize `model` in place: conv and linear weights by name from INITS, then zero_last_gamma
    and the Fixup rescaling where they apply. `init_cfg`: an InitConfig, its dict, or None (defaults).
    Returns the model. Uses the global torch RNG (seed it for reproducibility)."""
    cfg = _cfg_dict(init_cfg)
    conv_init, fc_init = INITS.get(cfg["conv"]), INITS.get(cfg["fc"])
    gain = _gain(model)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            conv_init(m, gain=gain)
        elif isinstance(m, nn.Linear):
            fc_init(m, gain=gain)

    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    if cfg["zero_last_gamma"]:
        zeroed = 0
        for b in blocks:
            norm = b.branch_last_norm()
            weight = getattr(norm, "weight", None)
            if isinstance(weight, torch.Tensor):
                nn.init.zeros_(weight)
                zeroed += 1
        if zeroed == 0:
            raise UserError(
                "init.zero_last_gamma needs residual blocks with affine norms (resnet_cifar, placement all); "
                "turn it off for this model"
            )
    if any(b.fixup for b in blocks):
        _fixup_rescale(model, blocks)
    return model


def _fixup_rescale(model: nn.Module, blocks: list[Any]) -> None:
    """Zhang et al. 2019, rule 2-3: scale the branch's inner convs by L^(-1/(2m-2)), zero its last conv
    and the classifier (the last nn.Linear, weight and bias)."""
    n_blocks = len(blocks)
    with torch.no_grad():
        for b in blocks:
            convs = b.branch_convs()
            m = len(convs)
            for conv in convs[:-1]:
                conv.weight.mul_(n_blocks ** (-1.0 / (2 * m - 2)))
            convs[-1].weight.zero_()
        fc = _classifier(model)
        fc.weight.zero_()
        if fc.bias is not None:
            fc.bias.zero_()


def _classifier(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("the model has no nn.Linear classifier; balanced_output_bias and fixup need one")
    return linears[-1]


# ---------------------------------------------------------------------------------- balanced output bias


def _batch_stats_logits(model: nn.Module, inputs: Tensor) -> Tensor:
    """Logits in training mode (batch statistics), no grad; buffers (BN running stats,
    num_batches_tracked) and every module's train/eval flag are restored afterwards."""
    saved = {name: buf.detach().clone() for name, buf in model.named_buffers()}
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train()
        with torch.no_grad():
            return model(inputs)
    finally:
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(saved[name])


def softmax_balance_gap(logits: Tensor) -> float:
    """max_k |mean_n softmax(logits)_nk - 1/K|, in float64."""
    z = logits.detach().double()
    return float((torch.softmax(z, dim=1).mean(0) - 1.0 / z.shape[1]).abs().max())


def _solve_bias(h: Tensor, b: Tensor, tol: float, max_steps: int) -> tuple[Tensor, int]:
    """Find b with mean_n softmax(h_n + b) = 1/K: the minimizer of the convex
    F(b) = mean_n logsumexp(h_n + b) - mean_k b_k (gradient mean p - 1/K). Damped Newton steps
    (Hessian mean_n diag(p_n) - p_n p_n^T, regularized along its null direction 1) with a backtracking
    line search on F; the multiplicative step b -= log(mean p) + log K (Sinkhorn) when Newton does not
    descend. float64 throughout."""
    k = h.shape[1]

    def objective(bb: Tensor) -> Tensor:
        return torch.logsumexp(h + bb, dim=1).mean() - bb.mean()

    for step in range(max_steps):
        logp = torch.log_softmax(h + b, dim=1)
        p = logp.exp()
        mean_p = p.mean(0)
        grad = mean_p - 1.0 / k
        if float(grad.abs().max()) < tol:
            return b, step
        ones = torch.ones(k, k, dtype=h.dtype, device=h.device)
        hess = torch.diag(mean_p) - p.T @ p / h.shape[0] + ones / k  # + 11^T/k: invertible along 1
        try:
            newton = -torch.linalg.solve(hess + 1e-12 * torch.eye(k, dtype=h.dtype, device=h.device), grad)
        except RuntimeError:
            newton = None
        f0 = objective(b)
        sinkhorn = -(torch.logsumexp(logp, dim=0) - math.log(h.shape[0]) + math.log(k))
        moved = False
        for direction in (newton, sinkhorn):
            if direction is None or not torch.isfinite(direction).all():
                continue
            t = 1.0
            for _ in range(60):  # halve the step until F decreases (Armijo with c = 1e-4)
                cand = b + t * direction
                if objective(cand) <= f0 + 1e-4 * t * float(grad @ direction):
                    b, moved = cand, True
                    break
                t *= 0.5
            if moved:
                break
        if not moved:
            return b, step
    return b, max_steps


def balance_output_bias(
    model: nn.Module, inputs: Tensor, *, tol: float = 1e-3, max_steps: int = 200
) -> dict[str, float]:
    """Set the classifier's bias (the last nn.Linear, found by type) so that on the calibration batch
    `inputs` the softmax is balanced over classes: max_k |mean_n p_nk - 1/K| < tol.

    Logits are computed once in training mode (batch statistics; BN running statistics and all
    buffers are left bit-identical), the bias is solved for in float64 on those logits (the bias only
    shifts them), written back, and the gap is measured again by a real forward pass.
    Returns {"gap_before", "gap" (after, on `inputs`), "steps"}. The criterion can fail when the logits
    are so large that a float32 bias cannot resolve them: check "gap"."""
    fc = _classifier(model)
    if fc.bias is None:
        raise UserError(
            "balanced_output_bias needs a classifier with a bias; build the model's fc with bias=True"
        )
    logits = _batch_stats_logits(model, inputs).double()
    gap_before = softmax_balance_gap(logits)
    b0 = fc.bias.detach().double()
    h = logits - b0
    # Aim below tol: the float32 bias written back perturbs the logits by ~1e-7 relative.
    b, steps = _solve_bias(h, b0.clone(), tol * 0.1, max_steps)
    with torch.no_grad():
        fc.bias.copy_(b.to(fc.bias.dtype))
    gap = softmax_balance_gap(_batch_stats_logits(model, inputs))
    return {"gap_before": gap_before, "gap": gap, "steps": float(steps)}
