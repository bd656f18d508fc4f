"""Measurements on (model, batch) or (model, batches, ctx). Importing this package registers every probe,
and every probe is importable under its registry name: `from bnlab.probes import kernel_alignment` is
`PROBES.get("kernel_alignment")` (each probe lives in the module of the same name).

Every registered probe is called the same way (`probes.calling`): `probe(model, x, y, **options)` for one
minibatch, `probe(model, [(x, y), ...], **options)` for several; `loss_fn=` everywhere; data probes take an
optional `ctx=ProbeContext(...)` (default: step 0, no optimizer). A batch probe measures each minibatch on
its own (rows keyed by a `batch` column); a data probe uses them together. Results: `r.table` (long),
`r.value("metric", layer=...)`, `r.wide()`.
Batch probes: activation_moments, gradient_histogram, gradient_spectrum, gradient_variance,
jacobian_spectrum, kernel_alignment, output_bias. Data probes: gradient_geometry (>= 2 minibatches),
hessian_top_eig, layer_stats, sgd_noise (>= 2 minibatches), step_size_scan. Not registered (other
signatures): `diverging_step`, `per_example_gradients`. Statistics modes (`norm_stats`): batch | frozen |
running.
"""

from bnlab.probes.activation_moments import activation_moments
from bnlab.probes.context import ProbeContext
from bnlab.probes.diverging_step import diverging_step
from bnlab.probes.gradient_geometry import gradient_geometry
from bnlab.probes.gradient_histogram import gradient_histogram
from bnlab.probes.gradient_predictiveness import gradient_predictiveness
from bnlab.probes.gradient_spectrum import gradient_spectrum
from bnlab.probes.gradient_variance import gradient_variance
from bnlab.probes.hessian_top_eig import hessian_top_eig
from bnlab.probes.jacobian_spectrum import jacobian_spectrum
from bnlab.probes.kernel_alignment import kernel_alignment
from bnlab.probes.layer_stats import layer_stats
from bnlab.probes.norm_stats import NORM_STATS, NormStats, unwrap_model
from bnlab.probes.output_bias import output_bias
from bnlab.probes.per_example import per_example_gradients
from bnlab.probes.registry import PROBE_KIND, PROBES, register_probe
from bnlab.probes.representation_rank import representation_rank
from bnlab.probes.result import ProbeResult
from bnlab.probes.sgd_noise import sgd_noise
from bnlab.probes.signal_propagation import signal_propagation
from bnlab.probes.step_size_scan import step_size_scan
from bnlab.probes.weight_grad_norms import weight_grad_norms

__all__ = [
    "NORM_STATS",
    "PROBES",
    "PROBE_KIND",
    "NormStats",
    "ProbeContext",
    "ProbeResult",
    "activation_moments",
    "diverging_step",
    "gradient_geometry",
    "gradient_histogram",
    "gradient_predictiveness",
    "gradient_spectrum",
    "gradient_variance",
    "hessian_top_eig",
    "jacobian_spectrum",
    "kernel_alignment",
    "layer_stats",
    "output_bias",
    "per_example_gradients",
    "register_probe",
    "representation_rank",
    "sgd_noise",
    "signal_propagation",
    "step_size_scan",
    "unwrap_model",
    "weight_grad_norms",
]
