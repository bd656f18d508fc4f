"""activation_moments from the user's own forward of a measured step, instead of a second forward.

After a step that measured activation_moments, a Monitor knows the probe's blocks (its result's layers)
and statistics label. When the next step is due, it arms forward hooks on those blocks; during the user's
forward of that step each hook computes its block's channel moments (`channel_moments`, float64, at once:
no output kept, so later in-place ops cannot alter it), and `Monitor.step` takes them instead of running
the probe. The hooks read and change nothing else; they are removed before any probe runs.

The moments are those the probe would compute (its forward, in statistics mode "batch", sees the same
parameters, inputs and module modes; a norm layer in training mode normalizes with the batch's statistics,
so the running statistics the user's forward just updated do not enter). The tap is used only when that
holds, and otherwise the probe runs as before:
  - exactly one forward of the model since the hooks were armed, each block called once, tensor outputs;
  - its first input is the `inputs` given to `Monitor.step`, unmodified; no parameter changed since;
  - the module modes are those of statistics mode "batch" (training mode, dropout off or p = 0);
  - the forward drew no random numbers (torch CPU / current CUDA generator unchanged) and ran without
    autocast;
  - no layer reads its running statistics in training mode (bnlab's batch renorm), no torch.compile
    wrapper (hooks added after compiling would recompile the graph), and the probe's options are at most
    `modules=` with norm_stats "batch".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.probes.result import ProbeResult

NAME = "activation_moments"


def _rng_state(device: torch.device | None) -> Tensor:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _batch_mode_flags(model: nn.Module) -> bool:
    """The module modes are those `norm_stats_mode(model, "batch")` sets (training, dropout off or p = 0)."""
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            if m.training and m.p != 0:
                return False
        elif not m.training:
            return False
    return True


def tap_allowed(user_model: nn.Module, model: nn.Module, options: dict[str, Any]) -> bool:
    """Whether activation_moments with `options` may be taken from the user's forward of `model` (the
    unwrapped `user_model`): see the module docstring."""
    from bnlab.nn import norms

    if set(options) - {"modules", "norm_stats"} or options.get("norm_stats", "batch") != "batch":
        return False
    if hasattr(user_model, "_orig_mod") or hasattr(model, "_orig_mod"):
        return False
    renorm = (norms.BatchRenorm1d, norms.BatchRenorm2d)
    return not any(isinstance(m, renorm) for m in model.modules())


class MomentsTap:
    """Hooks measuring activation_moments in the user's next forward (module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model  # unwrapped
        self.handles: list[Any] = []
        self.layers: list[str] = []
        self.stats = "batch"
        self._reset()

    def _reset(self) -> None:
        self.forwards = 0
        self.ok = True
        self.calls: dict[str, int] = {}
        self.moments: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.first: Tensor | None = None
        self.first_version = -1
        self.params: list[tuple[Tensor, int]] = []
        self.rng: Tensor | None = None
        self.device: torch.device | None = None

    @property
    def armed(self) -> bool:
        return bool(self.handles)

    def arm(self, previous: ProbeResult) -> bool:
        """Hook the blocks of `previous` (the last activation_moments result) for the next forward."""
        self.disarm()
        if previous.attrs.get("nonfinite") or not len(previous.table):
            return False
        modules = dict(self.model.named_modules())
        layers = list(dict.fromkeys(str(x) for x in previous.table["layer"]))
        if not layers or any(n not in modules for n in layers):
            return False
        self.layers, self.stats = layers, str(previous.attrs.get("norm_stats", "batch"))
        self.handles.append(self.model.register_forward_pre_hook(self._before))
        self.handles.append(self.model.register_forward_hook(self._after))
        for n in layers:
            self.handles.append(modules[n].register_forward_hook(self._block(n)))
        return True

    def disarm(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def take(self, inputs: Tensor) -> ProbeResult | None:
        """Disarm; the result of the user's forward if it qualifies (module docstring), else None."""
        from bnlab.probes.activation_moments import moments_result
        from bnlab.probes.guard import mark_finite

        was_armed = self.armed
        self.disarm()
        try:
            if not (was_armed and self._qualifies(inputs)):
                return None
            moments = [(n, *self.moments[n]) for n in self.layers]
            return mark_finite(moments_result(self.model, self.stats, moments))
        finally:
            self._reset()

    def _qualifies(self, inputs: Tensor) -> bool:
        x = self.first
        if not (self.ok and self.forwards == 1 and x is not None and torch.is_tensor(inputs)):
            return False
        same_input = x is inputs or (
            x.data_ptr() == inputs.data_ptr()
            and x.shape == inputs.shape
            and x.stride() == inputs.stride()
            and x.dtype == inputs.dtype
            and x.device == inputs.device
        )
        return (
            same_input
            and inputs._version == self.first_version
            and all(self.calls.get(n) == 1 for n in self.layers)
            and all(p._version == v for p, v in self.params)
        )

    # --- hooks (run inside the user's forward) --------------------------------------------------------
    def _before(self, module: nn.Module, args: tuple) -> None:
        self.forwards += 1
        if self.forwards > 1:
            self.ok = False
            return
        x = args[0] if args else None
        if not torch.is_tensor(x):
            self.ok = False
            return
        self.first, self.first_version, self.device = x, x._version, x.device
        self.params = [(p, p._version) for p in module.parameters()]
        self.rng = _rng_state(self.device).clone()
        if torch.is_autocast_enabled(x.device.type) or not _batch_mode_flags(module):
            self.ok = False

    def _after(self, module: nn.Module, args: tuple, out: Any) -> None:
        if self.rng is None or not torch.equal(self.rng, _rng_state(self.device)):
            self.ok = False

    def _block(self, name: str) -> Any:
        from bnlab.probes.activation_moments import channel_moments

        def hook(module: nn.Module, args: tuple, out: Any) -> None:
            self.calls[name] = self.calls.get(name, 0) + 1
            if not self.ok or self.forwards != 1 or self.calls[name] > 1 or not torch.is_tensor(out):
                self.ok = False
                return
            with torch.no_grad():
                self.moments[name] = channel_moments(out)

        return hook
