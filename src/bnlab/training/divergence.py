"""Divergence: a non-finite minibatch loss, or one above the threshold.

mode "relative" (default): loss > threshold x the first step's loss (the reference is saved in every
checkpoint, so a resumed run uses the same one). An unnormalized ResNet-110 starts near 1e3 (Xavier)
or 1e9 (Kaiming) on our pipeline, so the paper's absolute 1e3 would call it diverged at step 0.
mode "absolute": loss > threshold (the paper's wording, "loss > 1e3").
"""

from __future__ import annotations

import math


class DivergenceCheck:
    def __init__(self, mode: str, threshold: float) -> None:
        self.mode = mode
        self.threshold = threshold
        self.reference: float | None = None

    def limit(self) -> float:
        if self.mode == "absolute":
            return self.threshold
        return self.threshold * (self.reference if self.reference is not None else math.inf)

    def check(self, loss: float) -> str | None:
        """None if fine, else the reason (one phrase). The first finite loss becomes the reference."""
        if not math.isfinite(loss):
            return f"non-finite loss ({loss})"
        if self.reference is None:
            self.reference = loss
        if loss > self.limit():
            if self.mode == "absolute":
                return f"loss {loss:.4g} > {self.threshold:.4g}"
            return f"loss {loss:.4g} > {self.threshold:.4g} x first loss {self.reference:.4g}"
        return None
