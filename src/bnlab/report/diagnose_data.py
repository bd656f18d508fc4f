"""What `bnlab diagnose` measures on: the model a `module:function` target returns, and one standardized
minibatch from a bnlab dataset or a user's .npz (x, y)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bnlab.errors import UserError


def load_target(target: str) -> nn.Module:
    """`module:function` or `path/to/file.py:function`; the function is called with no argument."""
    mod_name, sep, fn_name = target.rpartition(":")
    if not sep or not mod_name or not fn_name:
        raise UserError(
            f"TARGET must be module:function (e.g. examples.model_factory:small_bn_convnet), not {target!r}"
        )
    try:
        if mod_name.endswith(".py") or "/" in mod_name:
            path = Path(mod_name)
            if not path.is_file():
                raise UserError(f"no Python file {mod_name!r}")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(f"cannot import {mod_name!r}: {e}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise UserError(f"{mod_name!r} has no function {fn_name!r}")
    model = fn()
    if not isinstance(model, nn.Module):
        raise UserError(f"{target} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def standardize(x: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 1] float images N×C×H×W -> per-channel zero mean, unit std (over the minibatch)."""
    x = x.float()
    if x.max() > 1.5:
        x = x / 255.0
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x - mean) / std


def load_batch(
    data: str, root: str | None, npz: str | None, batch_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if batch_size < 2:
        raise UserError(f"--batch-size must be at least 2 (BN needs a batch), not {batch_size}")
    if npz is not None:
        try:
            with np.load(npz, allow_pickle=False) as z:
                if "x" not in z.files or "y" not in z.files:
                    raise UserError(
                        f"{npz} must hold arrays x and y; it holds {', '.join(z.files) or 'nothing'}"
                    )
                xs, ys = z["x"], z["y"]
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {npz!r} as an .npz file: {e}") from e
        if xs.ndim != 4 or len(xs) != len(ys):
            raise UserError(
                f"x must be N images (N,C,H,W or N,H,W,C) and y N labels; got x {xs.shape}, y {ys.shape}"
            )
        if xs.shape[-1] in (1, 3) and xs.shape[1] not in (1, 3):
            xs = xs.transpose(0, 3, 1, 2)
        x_all, y_all = torch.from_numpy(np.ascontiguousarray(xs)), torch.from_numpy(ys.astype(np.int64))
    else:
        from bnlab.config import DataConfig
        from bnlab.data import DATASETS

        raw = DATASETS.get(data)(DataConfig(name=data, root=root))
        x_all, y_all = raw.train_x, raw.train_y
    if len(x_all) < batch_size:
        raise UserError(f"the data has {len(x_all)} examples, fewer than --batch-size {batch_size}")
    idx = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed))[:batch_size]
    return standardize(x_all[idx]), y_all[idx].long()
