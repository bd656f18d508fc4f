"""ResidualBlock: the contract between residual models and the init code (`bnlab.nn.init`).

It lives in nn, below the models, so that init finds blocks by type (never by name) without importing
`bnlab.models` (models import nn, never the reverse)."""

from __future__ import annotations

from torch import nn


class ResidualBlock(nn.Module):
    """Base class of residual blocks: init code finds blocks by this type (never by name).

    Subclasses set `fixup` and implement `branch_convs()` (the residual branch's convs, in order)
    and `branch_last_norm()` (the branch's last norm module, None without norms)."""

    fixup: bool = False

    def branch_convs(self) -> list[nn.Conv2d]:
        raise NotImplementedError

    def branch_last_norm(self) -> nn.Module | None:
        raise NotImplementedError
