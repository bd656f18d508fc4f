"""bnlab's measurements in a user's OWN training loop: `Monitor` (plain PyTorch), `lightning.ProbeCallback`
(Lightning, the `lightning` extra), schedules, presets and writers (run directory, TensorBoard, W&B)."""

from bnlab.monitor.monitor import Monitor, monitor_run_id
from bnlab.monitor.presets import PRESETS, ProbeSpec
from bnlab.monitor.schedule import Schedule
from bnlab.monitor.writers import RunDirWriter, TensorBoardWriter, WandbWriter, Writer

__all__ = [
    "PRESETS",
    "Monitor",
    "ProbeSpec",
    "RunDirWriter",
    "Schedule",
    "TensorBoardWriter",
    "WandbWriter",
    "Writer",
    "monitor_run_id",
]
