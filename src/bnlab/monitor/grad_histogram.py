"""The gradient histogram of the `cheap` preset: read from the user's `.grad` (no extra backward pass).

Same table and arrays as the `gradient_histogram` probe with its default sample (the batch gradient of
the step, BN with batch statistics); its tail metrics and bins are the probe's own functions. The rows
say `source: grad` so a reader can tell them from the probe's recomputed gradient.
"""

from __future__ import annotations

from torch import nn

from bnlab.probes.capture import paper_layer_map
from bnlab.probes.gradient_histogram import histograms, tail_metrics
from bnlab.probes.norm_stats import norm_stats_label, unwrap_model
from bnlab.probes.result import ProbeResult, metric_rows

WEIGHT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def grad_histogram(model: nn.Module, *, bins: int = 101, log_bins: int = 60) -> ProbeResult:
    """Per Conv/Linear weight with a `.grad`: the gradient_histogram probe's metrics and arrays of `.grad`."""
    model = unwrap_model(model)
    paper = paper_layer_map(model)
    rows, arrays = [], {}
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if not isinstance(mod, WEIGHT_TYPES) or w is None or w.grad is None:
            continue
        v = w.grad.detach().reshape(-1).double().cpu().numpy()
        rows += metric_rows("gradient_histogram", name, paper.get(name), tail_metrics(v))
        for key, arr in histograms(v, bins, log_bins).items():
            arrays[f"{name}/{key}"] = arr
    # the user's backward ran in the model's own mode: training mode means batch statistics
    stats = norm_stats_label(model, "batch" if model.training else "running")
    return ProbeResult.from_rows(rows, arrays, norm_stats=stats, source="grad")
