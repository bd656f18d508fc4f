"""Measurements on (model, batch) or (model, batches, ctx). Importing this package registers every probe."""

from bnlab.probes.registry import PROBE_KIND, PROBES, register_probe
from bnlab.probes.result import ProbeResult

__all__ = ["PROBES", "PROBE_KIND", "ProbeResult", "register_probe"]
