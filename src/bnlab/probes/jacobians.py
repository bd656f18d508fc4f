"""Singular values of the per-example Jacobian between two layers of a real network.

J_i = d h_to[i] / d h_from[i] for example i, where h_from / h_to are the outputs of two modules named
by their module names ("" = the model input for from_layer, the model output for to_layer).

Statistics modes, the probes' vocabulary and code (`bnlab.probes.norm_stats`; every result records its
mode, as `norm_stats`: the mode, or "none" without any normalization layer):
  batch    training mode: the batch statistics depend on h_from[i], and J_i includes that path
           (examples are coupled, so each example gets its own Lanczos run);
  frozen   the same batch statistics, treated as constants (one joint run for all examples); batch
           renorm's effective statistics, frozen batch norm's running ones;
  running  eval mode, running statistics (warns when BN never saw a batch: then BN is the identity).
Old spellings `coupled` / `eval` are accepted with a DeprecationWarning. The registered probe is
`bnlab.probes.jacobian_spectrum` (a ProbeResult); this module returns the `JacobianSpectrum` record.

One forward pass builds the graph from h_from to h_to; vector-Jacobian products are backward passes
through it and Jacobian-vector products use the double-backward trick (J v = d/du <J^T u, v>), so no
forward-mode support and no extra forward passes are needed. Singular values come from Golub-Kahan-
Lanczos bidiagonalization with full reorthogonalization (exact once the Krylov dimension reaches the
smaller side of J), or from the dense Jacobian (basis sweep) when both sides have <= DENSE_LIMIT units.
Parameters, .grad, buffers and training flags are left bit-identical (`probes.capture.guard`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from bnlab.errors import UserError
from bnlab.probes.capture import guard
from bnlab.probes.norm_stats import couples_examples, norm_stats_mode, resolve_norm_stats, unwrap_model

Mode = Literal["batch", "running", "frozen"]
Method = Literal["auto", "dense", "lanczos"]

# Largest side (units) for which the dense Jacobian is assembled: MLPs of width <= 512.
DENSE_LIMIT = 512
# Default Krylov dimension for Lanczos when the Jacobian is larger than that.
DEFAULT_KRYLOV = 200


@dataclass
class JacobianSpectrum:
    """top: (S, k) largest singular values, descending; bottom: (S, k) smallest, ascending.

    residual_top / residual_bottom: Lanczos residual bounds ||J^T u - theta v|| for each Ritz value (0 for
    the dense method and once the Krylov space is the whole smaller side). exact: the values are J's
    singular values up to rounding (dense, or Krylov dimension == min(d_in, d_out)).
    """

    top: np.ndarray
    bottom: np.ndarray
    examples: np.ndarray
    mode: str  # batch | frozen | running
    norm_stats: str  # the mode, or "none" for a model without normalization layers
    method: str
    d_in: int
    d_out: int
    krylov_dim: int
    exact: bool
    residual_top: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residual_bottom: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def norm_mode(self) -> str:
        warnings.warn(
            "JacobianSpectrum.norm_mode is deprecated: norm_stats", DeprecationWarning, stacklevel=2
        )
        return self.norm_stats

    @property
    def log_condition(self) -> np.ndarray:
        """ln(sigma_max / sigma_min) per example."""
        return np.log(self.top[:, 0]) - np.log(self.bottom[:, 0])

    def rows(self, probe: str = "jacobian_spectrum", layer: str = "") -> list[dict]:
        """Long-format rows (probe, layer, metric, value, example, rank) for a ProbeResult table."""
        out: list[dict] = []
        for s, ex in enumerate(self.examples):
            common = {"probe": probe, "layer": layer, "example": int(ex)}
            for r in range(self.top.shape[1]):
                out.append({**common, "metric": "sigma_top", "value": self.top[s, r], "rank": r})
                out.append({**common, "metric": "sigma_bottom", "value": self.bottom[s, r], "rank": r})
            out.append({**common, "metric": "log_condition", "value": self.log_condition[s], "rank": 0})
        return out


class _Stop(Exception):
    """Raised by the to_layer hook: the rest of the forward pass is not needed."""


def _module(model: nn.Module, name: str | None) -> nn.Module | None:
    if not name:
        return None
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise UserError(
            f"no module named {name!r} in the model; choose one of: {', '.join(names[:40])}"
        ) from None


def _graph(
    model: nn.Module, inputs: Tensor, from_layer: str | None, to_layer: str | None
) -> tuple[Tensor, Tensor]:
    """One forward pass; returns (H, Y) with H a leaf standing for from_layer's output and Y = to_layer's output."""
    src, dst = _module(model, from_layer), _module(model, to_layer)
    state: dict[str, Tensor] = {}
    handles = []
    if src is None:
        state["h"] = inputs.detach().clone().requires_grad_(True)
    else:

        def on_src(mod: nn.Module, args: tuple, out: Tensor) -> Tensor | None:
            if "h" in state:  # a module called twice: keep the first call
                return None
            h = out.detach().requires_grad_(True)
            state["h"] = h
            return h.clone()  # so a later in-place op (ReLU(inplace=True)) cannot touch the leaf

        handles.append(src.register_forward_hook(on_src))
    if dst is not None:

        def on_dst(mod: nn.Module, args: tuple, out: Tensor) -> None:
            if "h" not in state:
                raise UserError(f"to_layer {to_layer!r} runs before from_layer {from_layer!r}; swap them")
            state["y"] = out
            raise _Stop

        handles.append(dst.register_forward_hook(on_dst))
    try:
        out = model(state["h"] if src is None else inputs)
        state.setdefault("y", out)
    except _Stop:
        pass
    finally:
        for hd in handles:
            hd.remove()
    if "h" not in state:
        raise UserError(f"from_layer {from_layer!r} never ran in the forward pass")
    return state["h"], state["y"]


class _Ops:
    """J and J^T restricted to a set of example rows, on flat numpy vectors of shape (S, d)."""

    def __init__(self, h: Tensor, y: Tensor):
        self.h, self.y = h, y
        self.d_in = int(np.prod(h.shape[1:]))
        self.d_out = int(np.prod(y.shape[1:]))
        self.u = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, h, self.u, create_graph=True, allow_unused=True)
        if g is None:
            raise UserError(
                "to_layer's output does not depend on from_layer's output; pick layers in forward order"
            )
        self.g = g  # = J^T u, linear in u: differentiating it in u gives J v

    def _place(self, like: Tensor, rows: Sequence[int], vals: np.ndarray) -> Tensor:
        full = torch.zeros_like(like)
        full[list(rows)] = torch.as_tensor(vals, dtype=like.dtype, device=like.device).reshape(
            len(rows), *like.shape[1:]
        )
        return full

    def mv(self, rows: Sequence[int], v: np.ndarray) -> np.ndarray:
        (out,) = torch.autograd.grad(self.g, self.u, self._place(self.h, rows, v), retain_graph=True)
        return out[list(rows)].reshape(len(rows), -1).detach().cpu().double().numpy()

    def rmv(self, rows: Sequence[int], u: np.ndarray) -> np.ndarray:
        (out,) = torch.autograd.grad(self.y, self.h, self._place(self.y, rows, u), retain_graph=True)
        return out[list(rows)].reshape(len(rows), -1).detach().cpu().double().numpy()


MatVec = Callable[[np.ndarray], np.ndarray]


def _orth(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Remove the components of each row x[s] along basis[s, :j] (classical Gram-Schmidt, twice)."""
    if basis.shape[1] == 0:
        return x
    for _ in range(2):
        x = x - np.einsum("sj,sjd->sd", np.einsum("sjd,sd->sj", basis, x), basis)
    return x


def _fresh(rng: np.random.Generator, shape: tuple[int, int], basis: np.ndarray) -> np.ndarray:
    x = _orth(rng.standard_normal(shape), basis)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def golub_kahan(
    mv: MatVec, rmv: MatVec, s: int, a: int, b: int, steps: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lanczos bidiagonalization of S operators A_s: R^a -> R^b at once (full reorthogonalization).

    Returns (theta (S, q) descending Ritz values, residual (S, q), beta_q). With steps == a <= b the Ritz
    values are A's singular values. A breakdown (alpha or beta ~ 0) restarts with a fresh orthogonal
    vector and a zero coupling, which keeps B's singular values those of A.
    """
    q = min(steps, a)
    big_v = np.zeros((s, q + 1, a))
    big_u = np.zeros((s, q, b))
    alpha = np.zeros((s, q))
    beta = np.zeros((s, q))
    big_v[:, 0] = _fresh(rng, (s, a), big_v[:, :0])
    scale = np.zeros(s)  # running estimate of ||A|| for the breakdown tolerance
    u_prev = np.zeros((s, b))
    for j in range(q):
        u = mv(big_v[:, j]) - (beta[:, j - 1, None] * u_prev if j else 0.0)
        u = _orth(u, big_u[:, :j])
        alpha[:, j] = np.linalg.norm(u, axis=1)
        scale = np.maximum(scale, alpha[:, j])
        low = alpha[:, j] <= 1e-13 * np.maximum(scale, 1e-300)
        u = u / np.where(low, 1.0, alpha[:, j])[:, None]
        if low.any():
            alpha[low, j] = 0.0
            u[low] = _fresh(rng, (int(low.sum()), b), big_u[low, :j])
        big_u[:, j] = u
        v = rmv(u) - alpha[:, j, None] * big_v[:, j]
        v = _orth(v, big_v[:, : j + 1])
        beta[:, j] = np.linalg.norm(v, axis=1)
        scale = np.maximum(scale, beta[:, j])
        if j + 1 < q:
            low = beta[:, j] <= 1e-13 * np.maximum(scale, 1e-300)
            v = v / np.where(low, 1.0, beta[:, j])[:, None]
            if low.any():
                beta[low, j] = 0.0
                v[low] = _fresh(rng, (int(low.sum()), a), big_v[low, : j + 1])
            big_v[:, j + 1] = v
        u_prev = u
    theta = np.zeros((s, q))
    resid = np.zeros((s, q))
    for k in range(s):
        bid = np.diag(alpha[k]) + np.diag(beta[k, : q - 1], 1)
        p, th, _ = np.linalg.svd(bid)
        theta[k] = th
        # ||A^T u~ - theta v~|| = beta_q |last row of the left singular vectors|; zero when q == a.
        resid[k] = 0.0 if q == a else beta[k, q - 1] * np.abs(p[q - 1])
    return theta, resid, beta[:, q - 1]


def dense_jacobian(
    model: nn.Module,
    inputs: Tensor,
    from_layer: str | None,
    to_layer: str | None,
    mode: Mode = "batch",
    examples: Sequence[int] | None = None,
) -> np.ndarray:
    """The per-example Jacobians as dense float64 arrays (S, d_out, d_in), from a basis sweep.

    Cost: min(d_in, d_out) JVPs or VJPs (times S in the coupled batch mode).
    """
    model = unwrap_model(model)
    mode = resolve_norm_stats(mode, "mode")  # type: ignore[assignment]
    with guard(model), norm_stats_mode(model, mode, what="mode"):
        h, y = _graph(model, inputs, from_layer, to_layer)
        ops = _Ops(h, y)
        ex = _examples(examples, h.shape[0])
        groups = _groups(model, mode, ex)
        out = np.zeros((len(ex), ops.d_out, ops.d_in))
        pos = {e: i for i, e in enumerate(ex)}
        for rows in groups:
            out[[pos[r] for r in rows]] = _dense(ops, rows)
    return out


def _examples(examples: Sequence[int] | None, batch: int) -> list[int]:
    ex = list(range(batch)) if examples is None else [int(e) for e in examples]
    if not ex or min(ex) < 0 or max(ex) >= batch or len(set(ex)) != len(ex):
        raise UserError(f"examples must be distinct indices in 0..{batch - 1}")
    return ex


def _groups(model: nn.Module, mode: str, ex: list[int]) -> list[list[int]]:
    """Examples that can share one run: all of them unless batch statistics couple the examples."""
    return [[e] for e in ex] if couples_examples(model, mode) else [ex]


def jacobian_spectrum(
    model: nn.Module,
    inputs: Tensor,
    from_layer: str | None,
    to_layer: str | None,
    k: int = 1,
    mode: Mode = "batch",
    *,
    examples: Sequence[int] | None = None,
    method: Method = "auto",
    krylov_dim: int | None = None,
    seed: int = 0,
) -> JacobianSpectrum:
    """Top-k and bottom-k singular values of the per-example Jacobian d h_to[i] / d h_from[i].

    from_layer / to_layer: module names ("" or None: the model input / the model output).
    mode: "batch" | "frozen" | "running" (module docstring). examples: batch indices (default all; in
    the coupled "batch" mode each costs its own run). method: "dense" (basis sweep + SVD, only when
    d_in and d_out <= DENSE_LIMIT), "lanczos" (Krylov dimension krylov_dim, default
    min(d, DEFAULT_KRYLOV); exact when it reaches min(d_in, d_out)), or "auto" (dense when allowed).
    Bottom singular values are over the min(d_in, d_out) singular values of J. The model's parameters,
    .grad, buffers and training flags are left unchanged.
    """
    if int(k) != k or k < 1:
        raise UserError(f"k must be a positive integer, got {k!r}")
    if method not in ("auto", "dense", "lanczos"):
        raise UserError(f"method must be 'auto', 'dense' or 'lanczos', not {method!r}")
    model = unwrap_model(model)
    mode = resolve_norm_stats(mode, "mode")  # type: ignore[assignment]
    if inputs.shape[0] < 2 and couples_examples(model, mode):
        raise UserError(
            "batch statistics need at least 2 examples; pass a larger batch or use mode='running'"
        )
    rng = np.random.default_rng(seed)
    with guard(model), norm_stats_mode(model, mode, what="mode") as norm_stats:
        h, y = _graph(model, inputs, from_layer, to_layer)
        ops = _Ops(h, y)
        d_small = min(ops.d_in, ops.d_out)
        if k > d_small:
            raise UserError(f"k = {k} exceeds the Jacobian's {d_small} singular values; use k <= {d_small}")
        dense_ok = max(ops.d_in, ops.d_out) <= DENSE_LIMIT
        if method == "dense" and not dense_ok:
            raise UserError(
                f"the dense Jacobian is limited to {DENSE_LIMIT} units per side (got {ops.d_in} -> {ops.d_out}); "
                "use method='lanczos'"
            )
        use_dense = method == "dense" or (method == "auto" and dense_ok)
        ex = _examples(examples, h.shape[0])
        pos = {e: i for i, e in enumerate(ex)}
        top = np.zeros((len(ex), k))
        bottom = np.zeros((len(ex), k))
        r_top = np.zeros((len(ex), k))
        r_bot = np.zeros((len(ex), k))
        q = d_small
        if not use_dense:
            q = min(d_small, krylov_dim if krylov_dim is not None else DEFAULT_KRYLOV)
            if q < 2 * k:
                raise UserError(f"krylov_dim = {q} is too small for k = {k}; use at least {2 * k}")
        for rows in _groups(model, mode, ex):
            idx = [pos[r] for r in rows]
            if use_dense:
                sv = np.linalg.svd(_dense(ops, rows), compute_uv=False)
                top[idx] = sv[:, :k]
                bottom[idx] = sv[:, ::-1][:, :k]
                continue
            # Run Lanczos on the smaller side so that all min(d_in, d_out) singular values are reachable.
            if ops.d_in <= ops.d_out:
                mv, rmv, a, b = (
                    (lambda v, r=rows: ops.mv(r, v)),
                    (lambda u, r=rows: ops.rmv(r, u)),
                    ops.d_in,
                    ops.d_out,
                )
            else:
                mv, rmv, a, b = (
                    (lambda u, r=rows: ops.rmv(r, u)),
                    (lambda v, r=rows: ops.mv(r, v)),
                    ops.d_out,
                    ops.d_in,
                )
            theta, resid, _ = golub_kahan(mv, rmv, len(rows), a, b, q, rng)
            top[idx], r_top[idx] = theta[:, :k], resid[:, :k]
            bottom[idx], r_bot[idx] = theta[:, ::-1][:, :k], resid[:, ::-1][:, :k]
    return JacobianSpectrum(
        top=top,
        bottom=bottom,
        examples=np.asarray(ex),
        mode=mode,
        norm_stats=norm_stats,
        method="dense" if use_dense else "lanczos",
        d_in=ops.d_in,
        d_out=ops.d_out,
        krylov_dim=q,
        exact=use_dense or q == d_small,
        residual_top=r_top,
        residual_bottom=r_bot,
    )


def _dense(ops: _Ops, rows: list[int]) -> np.ndarray:
    """Dense per-example Jacobians (S, d_out, d_in) by a basis sweep over the smaller side."""
    jac = np.zeros((len(rows), ops.d_out, ops.d_in))
    if ops.d_in <= ops.d_out:
        for c in range(ops.d_in):
            e = np.zeros((len(rows), ops.d_in))
            e[:, c] = 1.0
            jac[:, :, c] = ops.mv(rows, e)
    else:
        for c in range(ops.d_out):
            e = np.zeros((len(rows), ops.d_out))
            e[:, c] = 1.0
            jac[:, c, :] = ops.rmv(rows, e)
    return jac
