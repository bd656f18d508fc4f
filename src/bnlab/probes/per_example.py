"""Per-example gradients ∂ℓ_i/∂θ in three named modes (DESIGN.md: with train-mode BN they are not unique),
the statistics modes of every probe (`norm_stats`; old spellings `coupled`, `eval` warn):

- `batch`: through the minibatch's statistics (BN in training mode). The B gradients sum to B × the
  gradient of the mean loss. Cost: one forward plus ~B backward passes (vectorized over chunks of
  examples with `is_grads_batched`), i.e. about the cost of B backward passes — any module works.
- `frozen`: batch statistics computed on the minibatch and then treated as constants (no gradient through
  mean/var). Examples decouple: one forward, one backward to the layer outputs, then per-example
  contractions for Conv2d / Linear / BatchNorm parameters (torch.func vmap over the other owners).
- `running`: running statistics (eval mode). Same cost as `frozen`.
Without norm layers the three modes agree.

`frozen` and `running` support torch `_BatchNorm` subclasses, bnlab's batch renorm and frozen batch norm
(ghost batch norm: `running` only; the statistics come from `norm_stats.frozen_batch_stats`), and norms that
act per example (GroupNorm, LayerNorm, InstanceNorm without running stats). Any other module that still
mixes examples is detected (its output on two examples differs from the full batch) and raises a
UserError naming it: use `batch` for such models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnlab.errors import UserError
from bnlab.probes.capture import LossFn, forward_captured, guard, per_example_losses
from bnlab.probes.conv import per_example_weight_grads
from bnlab.probes.norm_stats import (
    NORM_STATS,
    NormStats,
    frozen_batch_stats,
    norm_stats_mode,
    resolve_norm_stats,
    unwrap_model,
)

Mode = NormStats
MODES: tuple[str, ...] = NORM_STATS
FAST_TYPES = (nn.Conv2d, nn.Linear, _BatchNorm)


@dataclass(frozen=True)
class _Request:
    """One call's model, minibatch, loss and selected parameters, as each mode's path needs them."""

    model: nn.Module
    inputs: Tensor
    targets: Tensor
    loss_fn: LossFn | None
    named: dict[str, nn.Parameter]


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

    mode: batch | frozen | running (module docstring; `coupled`, `eval`: deprecated spellings).
    `params`: names or Parameters (default: every parameter with requires_grad). `chunk`: examples per
    vectorized backward in `batch` mode (memory grows with it). Leaves parameters, .grad, buffers and
    training flags bit-identical. torch.compile / DDP wrappers are looked through.
    """
    mode = resolve_norm_stats(mode, "per-example mode")  # type: ignore[assignment]
    model = unwrap_model(model)
    req = _Request(model, inputs, targets, loss_fn, _select_params(model, params))
    with guard(model):
        if mode == "batch":
            with norm_stats_mode(model, "batch"):
                return _coupled(req, chunk)
        if mode == "running":
            with norm_stats_mode(model, "running"):  # eval mode; warns when a BN never saw a batch
                return _decoupled(req, frozen=False)
        model.eval()  # frozen: eval flags; frozen_batch_stats supplies the statistics for one forward
        return _decoupled(req, frozen=True)


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


def _coupled(req: _Request, chunk: int) -> dict[str, Tensor]:
    named = req.named
    names, plist = list(named), list(named.values())
    losses = per_example_losses(req.model(req.inputs), req.targets, req.loss_fn)
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
        "use per-example mode 'batch' for this model"
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


def _decoupled(req: _Request, frozen: bool) -> dict[str, Tensor]:
    model, inputs, named = req.model, req.inputs, req.named
    owners = _owner(model, named)
    mode = "frozen" if frozen else "running"
    if len(owners) < len(named):
        return _decoupled_func(req, frozen, mode)
    mods = {mname: m for mname, m, _ in owners.values()}
    with frozen_batch_stats(model) if frozen else nullcontext():
        cap, out = forward_captured(model, inputs, list(mods.items()))
    _check_decoupled(model, inputs, out, mode)
    losses = per_example_losses(out, req.targets, req.loss_fn)
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
    # _BatchNorm: x̂ from the constants it normalized with (batch stats in frozen, running in running)
    dims = [d for d in range(g.dim()) if d != 1]
    if attr == "bias":
        return g.sum(dims[1:]) if len(dims) > 1 else g
    shape = [1, -1] + [1] * (x.dim() - 2)
    xhat = (x - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
    prod = g * xhat
    return prod.sum(dims[1:]) if len(dims) > 1 else prod


def _decoupled_func(req: _Request, frozen: bool, mode: str) -> dict[str, Tensor]:
    """torch.func path for parameters owned by other module types: vmap(grad) over examples, norms fixed."""
    from torch.func import functional_call, grad, vmap

    model, inputs, targets, loss_fn = req.model, req.inputs, req.targets, req.loss_fn

    with frozen_batch_stats(model) if frozen else nullcontext(), torch.no_grad():
        out = model(inputs)  # frozen: leaves each BN's batch statistics in its buffers (guard restores)
    _check_decoupled(model, inputs, out, mode)
    detached = {n: p.detach() for n, p in req.named.items()}

    def one(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        o = functional_call(model, p, (x.unsqueeze(0),))
        return per_example_losses(o, y.unsqueeze(0), loss_fn)[0]

    fn: Callable = vmap(grad(one), in_dims=(None, 0, 0))
    return dict(fn(detached, inputs, targets))
