"""Per-example gradients ∂ℓ_i/∂θ in three named modes (DESIGN.md: with train-mode BN they are not unique).

- `coupled`: through the minibatch's statistics (BN in training mode). The B gradients sum to B × the
  gradient of the mean loss. Cost: one forward plus ~B backward passes (vectorized over chunks of
  examples with `is_grads_batched`), i.e. about the cost of B backward passes — any module works.
- `frozen`: batch statistics computed on the minibatch and then treated as constants (no gradient through
  mean/var). Examples decouple: one forward, one backward to the layer outputs, then per-example
  contractions for Conv2d / Linear / BatchNorm parameters (torch.func vmap over the other owners).
- `eval`: running statistics (eval mode). Same cost as `frozen`.
Without norm layers the three modes agree.

`frozen` and `eval` support torch `_BatchNorm` subclasses, bnlab's batch renorm and frozen batch norm (ghost
batch norm: `eval` only), and norms that act per example (GroupNorm, LayerNorm, InstanceNorm without running stats). Any other module that
still mixes examples is detected (its output on two examples differs from the full batch) and raises a
UserError naming it: use `coupled` for such models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnlab.errors import UserError
from bnlab.probes.capture import (
    LossFn,
    forward_captured,
    guard,
    per_example_losses,
    set_norm_stats,
)
from bnlab.probes.conv import per_example_weight_grads

Mode = Literal["coupled", "frozen", "eval"]
MODES: tuple[str, ...] = ("coupled", "frozen", "eval")
FAST_TYPES = (nn.Conv2d, nn.Linear, _BatchNorm)


def per_example_gradients(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    mode: Mode,
    loss_fn: LossFn | None = None,
    params: Iterable[str | nn.Parameter] | None = None,
    *,
    chunk: int = 8,
) -> dict[str, Tensor]:
    """{parameter name: tensor [B, *param.shape]} of ∂ℓ_i/∂θ, where the batch loss is mean_i ℓ_i.

    mode: coupled | frozen | eval (module docstring). `params`: names or Parameters (default: every
    parameter with requires_grad). `chunk`: examples per vectorized backward in `coupled` mode (memory
    grows with it). Leaves parameters, .grad, buffers and training flags bit-identical.
    """
    if mode not in MODES:
        raise UserError(f"per-example mode must be one of {', '.join(MODES)}, not {mode!r}")
    named = _select_params(model, params)
    with guard(model):
        if mode == "coupled":
            set_norm_stats(model, "batch")
            return _coupled(model, inputs, targets, loss_fn, named, chunk)
        set_norm_stats(model, "running")  # eval flags everywhere; frozen then overwrites the statistics
        return _decoupled(model, inputs, targets, loss_fn, named, frozen=(mode == "frozen"))


def _select_params(model: nn.Module, params: Iterable[str | nn.Parameter] | None) -> dict[str, nn.Parameter]:
    all_named = dict(model.named_parameters())
    if params is None:
        return {n: p for n, p in all_named.items() if p.requires_grad}
    by_id = {id(p): n for n, p in all_named.items()}
    out = {}
    for p in params:
        if isinstance(p, str):
            if p not in all_named:
                raise UserError(f"{p!r} is not a parameter name of this model; see model.named_parameters()")
            out[p] = all_named[p]
        elif id(p) in by_id:
            out[by_id[id(p)]] = p
        else:
            raise UserError("params= holds a tensor that is not a parameter of this model; pass its name")
    return out


def _coupled(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn | None,
    named: dict[str, nn.Parameter],
    chunk: int,
) -> dict[str, Tensor]:
    names, plist = list(named), list(named.values())
    losses = per_example_losses(model(inputs), targets, loss_fn)
    b = losses.shape[0]
    out = {n: torch.zeros((b, *p.shape), dtype=p.dtype, device=p.device) for n, p in named.items()}
    eye = torch.eye(b, dtype=losses.dtype, device=losses.device)
    for s in range(0, b, chunk):
        rows = eye[s : s + chunk]
        grads = torch.autograd.grad(
            losses, plist, grad_outputs=rows, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        for n, gr in zip(names, grads):
            if gr is not None:
                out[n][s : s + chunk] = gr
    return out


def _freeze_hooks(model: nn.Module) -> list:
    """Pre-hooks writing the statistics each BN normalizes with in training mode, computed on this batch,
    into its running buffers (restored by `guard`), so eval-mode BN uses them as constants.

    Plain BN: batch mean and biased variance. bnlab's batch renorm: the effective (μ_B − dσ_B/r,
    (σ_B/r)² − eps) with its r, d. bnlab's frozen batch norm: left as is (it uses running statistics
    anyway). Ghost batch norm (per-chunk statistics) is not representable: error."""
    from bnlab.nn import norms  # bnlab's own BN subclasses, by type

    handles = []
    for name, m in model.named_modules():
        if not isinstance(m, _BatchNorm) or isinstance(m, (norms.FrozenBatchNorm1d, norms.FrozenBatchNorm2d)):
            continue
        if isinstance(m, (norms.GhostBatchNorm1d, norms.GhostBatchNorm2d)):
            raise UserError(
                f"{name} is a ghost batch norm (per-chunk statistics); use mode 'coupled' or 'eval'"
            )
        if m.running_mean is None or m.running_var is None:
            raise UserError(
                f"{name} has no running statistics (track_running_stats=False); use mode='coupled'"
            )
        renorm = isinstance(m, (norms.BatchRenorm1d, norms.BatchRenorm2d))

        def pre(mod: _BatchNorm, args: tuple, renorm: bool = renorm) -> None:
            x = args[0].detach()
            dims = [d for d in range(x.dim()) if d != 1]
            mean, var = x.mean(dims), x.var(dims, correction=0)
            with torch.no_grad():
                if renorm:
                    r_max, d_max = mod.clip_limits(int(mod.num_batches_tracked))
                    sigma_b = torch.sqrt(var + mod.eps)
                    sigma = torch.sqrt(mod.running_var + mod.eps)
                    r = (sigma_b / sigma).clamp(1.0 / r_max, r_max)
                    d = ((mean - mod.running_mean) / sigma).clamp(-d_max, d_max)
                    mean, var = mean - d * sigma_b / r, (sigma_b / r) ** 2 - mod.eps
                mod.running_mean.copy_(mean)
                mod.running_var.copy_(var)

        handles.append(m.register_forward_pre_hook(pre))
    return handles


def _check_decoupled(model: nn.Module, inputs: Tensor, outputs: Tensor, mode: str) -> None:
    """Raise naming the module if examples still interact (a norm that is not a _BatchNorm)."""
    if inputs.shape[0] < 3:
        return
    with torch.no_grad():
        part = model(inputs[:2])
    full = outputs.detach()[:2]
    tol = 1e-3 * float(full.abs().max()) + 1e-6
    if torch.allclose(part, full, rtol=1e-3, atol=tol):
        return
    culprit = _coupling_module(model, inputs)
    raise UserError(
        f"module {culprit} mixes examples in mode {mode!r} (not a torch _BatchNorm or per-example norm); "
        "use per-example mode 'coupled' for this model"
    )


def _coupling_module(model: nn.Module, inputs: Tensor) -> str:
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children()) and n]
    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def record(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple, out: object) -> None:
            if args and isinstance(args[0], Tensor) and isinstance(out, Tensor):
                seen.setdefault(name, (args[0].detach(), out.detach()))

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in leaves]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for h in hooks:
            h.remove()
    mods = dict(leaves)
    with torch.no_grad():
        for n, (x, y) in seen.items():
            if x.shape[:1] == y.shape[:1]:
                part = mods[n](x[:2])
                if not torch.allclose(part, y[:2], rtol=1e-3, atol=1e-3 * float(y[:2].abs().max()) + 1e-6):
                    return n
    return "(a non-leaf module's own forward)"


def _owner(model: nn.Module, named: dict[str, nn.Parameter]) -> dict[str, tuple[str, nn.Module, str]]:
    """param name -> (module name, module, attribute) for the parameters the hook path handles."""
    owners = {}
    for mname, m in model.named_modules():
        if isinstance(m, FAST_TYPES):
            for attr in ("weight", "bias"):
                full = f"{mname}.{attr}" if mname else attr
                if full in named and getattr(m, attr) is named[full]:
                    owners[full] = (mname, m, attr)
    return owners


def _decoupled(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn | None,
    named: dict[str, nn.Parameter],
    frozen: bool,
) -> dict[str, Tensor]:
    owners = _owner(model, named)
    mode = "frozen" if frozen else "eval"
    if len(owners) < len(named):
        return _decoupled_func(model, inputs, targets, loss_fn, named, frozen, mode)
    mods = {mname: m for mname, m, _ in owners.values()}
    handles = _freeze_hooks(model) if frozen else []
    try:
        cap, out = forward_captured(model, inputs, list(mods.items()))
    finally:
        for h in handles:
            h.remove()
    _check_decoupled(model, inputs, out, mode)
    losses = per_example_losses(out, targets, loss_fn)
    # Σ_i ℓ_i: examples are independent here, so ∂(Σℓ)/∂O_b = ∂ℓ_b/∂O_b for every layer output O
    order = [n for n in mods if cap.outputs[n].requires_grad]
    gouts = torch.autograd.grad(losses.sum(), [cap.outputs[n] for n in order], allow_unused=True)
    gmap = dict(zip(order, gouts))
    result: dict[str, Tensor] = {}
    for pname, (mname, m, attr) in owners.items():
        p = named[pname]
        g = gmap.get(mname)
        if g is None:
            result[pname] = torch.zeros((inputs.shape[0], *p.shape), dtype=p.dtype, device=p.device)
            continue
        x = cap.inputs[mname]
        result[pname] = _contract(m, attr, x, g)
    return result


def _contract(m: nn.Module, attr: str, x: Tensor, g: Tensor) -> Tensor:
    b = g.shape[0]
    if isinstance(m, nn.Conv2d):
        if attr == "bias":
            return g.sum(dim=(2, 3))
        return per_example_weight_grads(m, x, g)
    if isinstance(m, nn.Linear):
        g3, x3 = g.reshape(b, -1, g.shape[-1]), x.reshape(b, -1, x.shape[-1])
        if attr == "bias":
            return g3.sum(1)
        return torch.bmm(g3.transpose(1, 2), x3)
    # _BatchNorm: x̂ from the constants it normalized with (batch stats in frozen, running in eval)
    dims = [d for d in range(g.dim()) if d != 1]
    if attr == "bias":
        return g.sum(dims[1:]) if len(dims) > 1 else g
    shape = [1, -1] + [1] * (x.dim() - 2)
    xhat = (x - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
    prod = g * xhat
    return prod.sum(dims[1:]) if len(dims) > 1 else prod


def _decoupled_func(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn | None,
    named: dict[str, nn.Parameter],
    frozen: bool,
    mode: str,
) -> dict[str, Tensor]:
    """torch.func path for parameters owned by other module types: vmap(grad) over examples, norms fixed."""
    from torch.func import functional_call, grad, vmap

    handles = _freeze_hooks(model) if frozen else []
    try:
        with torch.no_grad():
            out = model(inputs)  # frozen: leaves each BN's batch statistics in its buffers (guard restores)
    finally:
        for h in handles:
            h.remove()
    _check_decoupled(model, inputs, out, mode)
    detached = {n: p.detach() for n, p in named.items()}

    def one(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        o = functional_call(model, p, (x.unsqueeze(0),))
        return per_example_losses(o, y.unsqueeze(0), loss_fn)[0]

    fn: Callable = vmap(grad(one), in_dims=(None, 0, 0))
    return dict(fn(detached, inputs, targets))
