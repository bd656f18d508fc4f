"""Gradients, optimizer update directions and losses at displaced parameters, for the training-dynamics probes.

Nothing here writes to the model's parameters, `.grad` or the optimizer's state: gradients come from
`torch.autograd.grad`, losses at θ + η·d from `torch.func.functional_call`, and an optimizer step that
must really run (any optimizer other than plain torch SGD) runs on copies of the parameters and a deep
copy of the state. Forward passes in training mode still update BN running statistics, so callers run
inside `capture.guard(model)`, which restores them.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from bnlab.errors import UserError
from bnlab.probes.capture import LossFn, loss_value, trainable

Params = dict[str, Tensor]


def detached_params(model: nn.Module) -> Params:
    """The trainable parameters as detached tensors sharing storage (read only)."""
    return {n: p.detach() for n, p in trainable(model).items()}


def batch_gradient(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None
) -> tuple[Params, float]:
    """∇L_B(θ) of the batch loss in the model's current mode, and L_B(θ); `.grad` is not touched."""
    params = trainable(model)
    loss = loss_value(model(x), y, loss_fn)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    out = {
        n: (g.detach() if g is not None else torch.zeros_like(p)) for (n, p), g in zip(params.items(), grads)
    }
    return out, float(loss.detach())


def loss_at(model: nn.Module, x: Tensor, y: Tensor, params: Params, loss_fn: LossFn | None = None) -> float:
    """L_B at the given parameters (other parameters and buffers: the model's own), no autograd graph."""
    with torch.no_grad():
        return float(loss_value(functional_call(model, params, (x,)), y, loss_fn))


def displaced(base: Params, direction: Params, eta: float) -> Params:
    """θ + η·d for the parameters that d covers (missing entries of d: zero)."""
    return {n: (p + eta * direction[n]) if n in direction else p for n, p in base.items()}


def losses_along(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    base: Params,
    direction: Params,
    etas: np.ndarray,
    loss_fn: LossFn | None,
) -> np.ndarray:
    """L_B(θ + η·d) for each η of `etas` (a loss slice through `base` along `direction`)."""
    return np.array([loss_at(model, x, y, displaced(base, direction, float(eta)), loss_fn) for eta in etas])


def flat(t: Params, names: list[str] | None = None) -> Tensor:
    """One vector from a parameter dict, in `names` order (default: dict order)."""
    keys = list(t) if names is None else names
    return torch.cat([t[n].reshape(-1) for n in keys])


def dot(a: Params, b: Params) -> float:
    return float(sum((a[n].double() * b[n].double()).sum() for n in a))


def _names_by_id(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _reference_lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0].get("lr")
    if not isinstance(lr, (int, float, Tensor)) or float(lr) <= 0:
        raise UserError("the optimizer's first param group has no positive lr; give the probe an lr")
    return float(lr)


def sgd_direction(optimizer: torch.optim.SGD, model: nn.Module, grads: Params) -> Params:
    """d with torch SGD's next step θ ← θ − lr₀·d (lr₀: first group's lr), computed from the formula.

    Per torch.optim.SGD: p = g + wd·θ (−g first when maximize); with momentum μ,
    buf' = p at the first step (no buffer yet), else μ·buf + (1 − dampening)·p; d = buf', or p + μ·buf'
    with nesterov. Groups with another lr are scaled by lr_group/lr₀ so one η covers all groups.
    """
    names = _names_by_id(model)
    lr0 = _reference_lr(optimizer)
    out: Params = {}
    with torch.no_grad():
        for group in optimizer.param_groups:
            mu, wd = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
            damp, nesterov = group.get("dampening", 0.0), group.get("nesterov", False)
            for p in group["params"]:
                name = names.get(id(p))
                if name is None or name not in grads:
                    continue
                d = -grads[name] if group.get("maximize", False) else grads[name].clone()
                if wd != 0:
                    d = d + wd * p.detach()
                if mu != 0:
                    buf = optimizer.state.get(p, {}).get("momentum_buffer")
                    buf = d.clone() if buf is None else mu * buf + (1 - damp) * d
                    d = d + mu * buf if nesterov else buf
                out[name] = d * (float(group["lr"]) / lr0)
    return out


def optimizer_step_on_copy(optimizer: torch.optim.Optimizer, model: nn.Module, grads: Params) -> Params:
    """Δθ that `optimizer.step()` would apply with these gradients, from a step on copies (any optimizer).

    The optimizer is rebuilt with the same class and groups over cloned parameters and loads a deep copy
    of the state dict (load_state_dict alone can share tensors with the original state).
    """
    names = _names_by_id(model)
    clones: dict[int, nn.Parameter] = {}
    groups = []
    for group in optimizer.param_groups:
        ps = []
        for p in group["params"]:
            c = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
            name = names.get(id(p))
            if name is not None and name in grads:
                c.grad = grads[name].detach().clone()
            clones[id(p)] = c
            ps.append(c)
        groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ps})
    try:
        twin = type(optimizer)(groups, **optimizer.defaults)
    except TypeError as e:
        raise UserError(
            f"cannot rebuild optimizer {type(optimizer).__name__} from its param groups ({e}); use torch SGD"
        ) from None
    twin.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    twin.step()
    out: Params = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names.get(id(p))
            if name is not None:
                out[name] = (clones[id(p)].detach() - p.detach()).clone()
    return out


def update_direction(optimizer: torch.optim.Optimizer, model: nn.Module, grads: Params) -> Params:
    """d with the optimizer's next step θ ← θ − lr₀·d: the SGD formula for torch SGD, else a step on copies.

    (For SGD, Adam, AdamW, RMSprop the step is linear in lr, so θ − η·d is the step taken at lr η.)
    """
    if type(optimizer) is torch.optim.SGD:
        return sgd_direction(optimizer, model, grads)
    lr0 = _reference_lr(optimizer)
    return {n: -delta / lr0 for n, delta in optimizer_step_on_copy(optimizer, model, grads).items()}


def optimizer_momentum(optimizer: torch.optim.Optimizer | None) -> tuple[float, bool]:
    """(β, nesterov) of the first param group: SGD's momentum, Adam's β₁ as a proxy; (0, False) if none."""
    if optimizer is None:
        return 0.0, False
    g = optimizer.param_groups[0]
    if "momentum" in g:
        return float(g["momentum"]), bool(g.get("nesterov", False))
    if "betas" in g:
        return float(g["betas"][0]), False
    return 0.0, False


def state_snapshot(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, object]:
    """Copies of everything a probe must leave bit-identical: parameters, `.grad`, buffers, training
    flags and the optimizer's state dict. Compare two with `state_differences`."""
    snap: dict[str, object] = {}
    for n, p in model.named_parameters():
        snap[f"param:{n}"] = p.detach().clone()
        snap[f"grad:{n}"] = None if p.grad is None else p.grad.detach().clone()
    for n, b in model.named_buffers():
        snap[f"buffer:{n}"] = b.detach().clone()
    for n, m in model.named_modules():
        snap[f"training:{n}"] = m.training
    if optimizer is not None:
        snap["optimizer"] = copy.deepcopy(optimizer.state_dict())
    return snap


_INT_OF = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def _bits_equal(a: Tensor, b: Tensor) -> bool:
    """Bit-identical tensors (NaN payloads included, -0.0 != +0.0)."""
    if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
        return False
    if a.dtype in _INT_OF:
        return bool(torch.equal(a.contiguous().view(_INT_OF[a.dtype]), b.contiguous().view(_INT_OF[b.dtype])))
    return bool(torch.equal(a, b))


def _same(a: object, b: object) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and _bits_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return bool(a == b)


def state_differences(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """Keys whose values are not bit-identical; [] when untouched."""
    keys = sorted(set(before) | set(after))
    return [k for k in keys if k not in before or k not in after or not _same(before[k], after[k])]
