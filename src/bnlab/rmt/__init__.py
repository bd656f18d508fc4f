"""Random-matrix theory for E10: Theorem 1 densities, random products, Lyapunov spectra, Jacobian spectra.

numpy/scipy only at import; `jacobian_spectrum` (torch) and `run_task` are imported on first use.
"""

from __future__ import annotations

from bnlab.registry import lazy_getattr
from bnlab.rmt.products import (
    DISTRIBUTIONS,
    GradedProduct,
    log_condition_number,
    lyapunov_exponents,
    naive_log_condition_number,
    normalized_product_spectrum,
    product_singular_values,
    sample_factors,
)
from bnlab.rmt.theory import (
    fuss_catalan,
    ks_distance,
    lyapunov_closed_form,
    lyapunov_closed_form_se,
    theorem1_cdf,
    theorem1_density,
    theorem1_edge,
    theorem1_moment,
    theorem1_phi,
)

_LAZY = {
    "jacobian_spectrum": ("bnlab.probes.jacobians", "jacobian_spectrum"),
    "JacobianSpectrum": ("bnlab.probes.jacobians", "JacobianSpectrum"),
    "dense_jacobian": ("bnlab.probes.jacobians", "dense_jacobian"),
}

__all__ = [
    "DISTRIBUTIONS",
    "GradedProduct",
    "fuss_catalan",
    "ks_distance",
    "log_condition_number",
    "lyapunov_closed_form",
    "lyapunov_closed_form_se",
    "lyapunov_exponents",
    "naive_log_condition_number",
    "normalized_product_spectrum",
    "product_singular_values",
    "sample_factors",
    "theorem1_cdf",
    "theorem1_density",
    "theorem1_edge",
    "theorem1_moment",
    "theorem1_phi",
    *_LAZY,
]

__getattr__ = lazy_getattr("bnlab.rmt", _LAZY)
