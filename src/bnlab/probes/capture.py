"""What every batch probe shares: state guard, layer naming, loss, activation capture (statistics modes and
wrapper unwrapping: `norm_stats`).

Probes never call `.backward()` (that would touch `.grad`); they use `torch.autograd.grad`. A forward
pass in training mode updates BN running statistics, so every probe runs inside `guard(model)`, which
restores buffers and training flags bit-identically on exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnlab.errors import UserError

LossFn = Callable[[Tensor, Tensor], Tensor]

WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def snapshot_buffers(model: nn.Module) -> list[tuple[Tensor, Tensor]]:
    return [(b, b.detach().clone()) for b in model.buffers()]


def restore_buffers(saved: list[tuple[Tensor, Tensor]]) -> None:
    with torch.no_grad():
        for b, copy in saved:
            b.copy_(copy)


@contextmanager
def guard(model: nn.Module) -> Iterator[None]:
    """Restore buffers (BN running statistics, num_batches_tracked) and every module's training flag."""
    buffers = snapshot_buffers(model)
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        restore_buffers(buffers)
        for m, t in flags:
            m.training = t


def paper_layer_map(model: nn.Module) -> dict[str, int]:
    fn = getattr(model, "paper_layers", None)
    return dict(fn()) if callable(fn) else {}


def paper_layer_of(name: str, paper: dict[str, int]) -> int | None:
    """A module's paper layer; for a container (e.g. a residual block) the first paper layer inside it,
    so that "activation at layer L" = output of the block containing L (PAPER.md)."""
    if name in paper:
        return paper[name]
    inside = [v for k, v in paper.items() if k.startswith(name + ".")]
    return min(inside) if inside else None


def resolve_paper_layer(model: nn.Module, layer: int, paper: dict[str, int] | None = None) -> str | None:
    """The module name of paper layer `layer` (the paper's ResNet-110 numbering) in `model`.

    Exact when the model numbers that layer; otherwise mapped by relative depth: through the model's
    `local_layers()` and `bnlab.models.layers.paper_layer_to_local` for CIFAR ResNets, else to the
    weighted layer at the same fraction of the model's depth."""
    paper = paper_layer_map(model) if paper is None else paper
    exact = [n for n, v in paper.items() if v == layer]
    if exact:
        return exact[0]
    local_fn, depth = getattr(model, "local_layers", None), getattr(model, "depth", None)
    if callable(local_fn) and isinstance(depth, int) and (depth - 2) % 6 == 0:
        from bnlab.models.layers import paper_layer_to_local

        loc = paper_layer_to_local(layer, depth)
        names = [n for n, v in local_fn().items() if v == loc]
        if names:
            return names[0]
    if paper:
        top = max(paper.values())
        target = max(1, round(layer / 110 * top))
        return min(paper, key=lambda n: (abs(paper[n] - target), paper[n]))
    return None


def select_layers(
    model: nn.Module, layers: Iterable[str | int] | None, types: tuple[type[nn.Module], ...]
) -> list[tuple[str, nn.Module]]:
    """Modules of `types` in registration order; `layers` restricts by module name or paper layer number."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, types)]
    if layers is None:
        return found
    paper = paper_layer_map(model)
    wanted = [resolve_paper_layer(model, w, paper) or w if isinstance(w, int) else w for w in layers]
    out = []
    for n, m in found:
        if n in wanted or (n in paper and paper[n] in wanted):
            out.append((n, m))
    missing = [w for w in wanted if not any(w == n or (n in paper and paper[n] == w) for n, _ in out)]
    if missing:
        kinds = "/".join(t.__name__ for t in types)
        raise UserError(
            f"layers {missing} are not {kinds} module names or paper layers of this model; "
            f"choose from {[n for n, _ in found]}"
        )
    return out


def loss_value(outputs: Tensor, targets: Tensor, loss_fn: LossFn | None) -> Tensor:
    """Mean cross-entropy unless `loss_fn(outputs, targets) -> scalar` is given."""
    if loss_fn is None:
        return F.cross_entropy(outputs, targets)
    return loss_fn(outputs, targets)


def per_example_losses(outputs: Tensor, targets: Tensor, loss_fn: LossFn | None) -> Tensor:
    """ℓ_i such that mean_i ℓ_i is the batch loss (a user loss_fn is called on one example at a time)."""
    if loss_fn is None:
        return F.cross_entropy(outputs, targets, reduction="none")
    return torch.stack([loss_fn(outputs[i : i + 1], targets[i : i + 1]) for i in range(outputs.shape[0])])


@dataclass
class Captured:
    """Inputs and outputs of chosen modules from one forward. `outputs` are live (in the graph): pass them to
    `torch.autograd.grad` to get ∂L/∂output without computing any parameter gradient."""

    inputs: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, Tensor] = field(default_factory=dict)
    versions: dict[str, tuple[int, int]] = field(default_factory=dict)

    def intact(self) -> bool:
        """No in-place op touched a captured input or output after it was captured."""
        return all((self.inputs[n]._version, self.outputs[n]._version) == v for n, v in self.versions.items())


@contextmanager
def capture(modules: list[tuple[str, nn.Module]], *, protect: bool = True) -> Iterator[Captured]:
    """Forward hooks storing each module's first input and its output. With `protect`, the hook stores a
    copy of the input and hands the rest of the network a clone of the output, so in-place ops downstream
    (ReLU(inplace=True), `out += x`) cannot alter what was captured or redirect its gradient. Without it,
    check `intact()` after the forward (see `forward_captured`). A module called twice is an error."""
    cap = Captured()
    handles = []

    def make(name: str) -> Callable:
        def hook(mod: nn.Module, args: tuple, out: Tensor) -> Tensor | None:
            if name in cap.outputs:
                raise UserError(f"module {name} is called more than once per forward; probes need one call")
            if not isinstance(out, Tensor):
                raise UserError(
                    f"module {name} returns {type(out).__name__}, not a tensor; pass other modules="
                )
            x = args[0].detach()
            cap.inputs[name] = x.clone() if protect else x
            cap.outputs[name] = out
            cap.versions[name] = (cap.inputs[name]._version, out._version)
            return out.clone() if protect else None

        return hook

    for name, m in modules:
        handles.append(m.register_forward_hook(make(name)))
    try:
        yield cap
    finally:
        for h in handles:
            h.remove()


def forward_captured(
    model: nn.Module, inputs: Tensor, modules: list[tuple[str, nn.Module]]
) -> tuple[Captured, Tensor]:
    """model(inputs) with `capture`; copies only when needed: the forward is run unprotected and repeated
    protected if an in-place op touched a captured tensor; the buffers are put back between the two, so the
    repeat sees the same running statistics and step count (batch renorm's r, d) as the first."""
    saved = snapshot_buffers(model)
    with capture(modules, protect=False) as cap:
        out = model(inputs)
    if cap.intact():
        return cap, out
    restore_buffers(saved)
    with capture(modules, protect=True) as cap:
        out = model(inputs)
    return cap, out


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}
