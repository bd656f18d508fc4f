"""Measurements on (model, batch) or (model, batches, ctx). Importing this package registers every probe.

Batch probes (`probe(model, inputs, targets, *, loss_fn=None, **options) -> ProbeResult`):
gradient_histogram, activation_moments, output_bias, kernel_alignment, gradient_spectrum,
gradient_variance. Per-example gradients: `bnlab.probes.per_example.per_example_gradients`.
"""

# importing the probe modules registers their probes (batch probes at init; data probes of training dynamics)
from bnlab.probes import activations, alignment, gradients, hessian, noise, output, step_size  # noqa: F401
from bnlab.probes.per_example import per_example_gradients
from bnlab.probes.registry import PROBE_KIND, PROBES, register_probe
from bnlab.probes.result import ProbeResult

__all__ = ["PROBES", "PROBE_KIND", "ProbeResult", "per_example_gradients", "register_probe"]
from bnlab.probes import diverging, geometry  # noqa: E402, F401  (more training-dynamics probe modules)
from bnlab.probes import layer_stats as _layer_stats  # noqa: E402,F401
