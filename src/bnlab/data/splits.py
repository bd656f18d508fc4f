"""Splits: the train / validation / test tensors every dataset is turned into, and how they are cut.

`load(cfg, seed)` = dataset factory (raw train + test) -> validation split held out of the train part
(seeded, stratified) -> optional training subset (seeded, stratified) -> per-channel statistics of
the final train part. No selection ever touches the test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bnlab.config import DataConfig
from bnlab.data.seeds import cpu_generator
from bnlab.errors import UserError


@dataclass
class RawData:
    """What a dataset factory returns: the full train and test parts, before any selection."""

    train_x: torch.Tensor  # uint8 N x C x H x W (or float32 in [0, 1] pixel units for user floats)
    train_y: torch.Tensor  # int64 N
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    name: str
    class_names: list[str]


@dataclass
class Splits:
    """CPU tensors of one dataset cut into train / val / test, with the train part's statistics.

    Images are uint8 N x C x H x W (float32 in [0, 1] pixel units only for a user's float arrays);
    labels are int64. `mean`/`std` are per-channel, in [0, 1] pixel units, computed on train_x.
    `notes` lists adjustments made to the requested settings (for the run's warnings).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    name: str
    class_names: list[str]
    notes: list[str] = field(default_factory=list)


def stratified_indices(labels: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Sorted indices of `k` items chosen at random with class proportions kept.

    Each class c with n_c items gets floor(k n_c / N) places; the k - sum leftover places go to the
    classes with the largest fractional parts (ties: lower class index). Within a class the items
    are a uniform random choice drawn from `generator`.
    """
    n = labels.numel()
    if not 0 <= k <= n:
        raise ValueError(f"cannot choose {k} of {n} items")
    classes, counts = torch.unique(labels, return_counts=True)
    # integer arithmetic, so quotas and ties are exact: floor(k n_c / N) and the remainder (k n_c) mod N
    quota = (counts * k) // n
    frac = (counts * k) % n
    leftover = k - int(quota.sum())
    if leftover > 0:
        order = sorted(range(len(classes)), key=lambda i: (-int(frac[i]), i))
        for i in order[:leftover]:
            quota[i] += 1
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        members = torch.nonzero(labels == c, as_tuple=True)[0]
        perm = torch.randperm(members.numel(), generator=generator)
        chosen.append(members[perm[:q]])
    if not chosen:
        return torch.empty(0, dtype=torch.int64)
    return torch.sort(torch.cat(chosen)).values


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of images N x C x H x W in [0, 1] pixel units.

    uint8 images: exact, from a 256-bin histogram per channel (no float copy of the data).
    """
    if x.numel() == 0:
        raise UserError("the training split is empty; give more training images or lower data.val_size")
    means, stds = [], []
    for c in range(x.shape[1]):
        xc = x[:, c].reshape(-1)
        if x.dtype == torch.uint8:
            hist = torch.bincount(xc, minlength=256).to(torch.float64)
            v = torch.arange(256, dtype=torch.float64) / 255.0
            total = hist.sum()
            m = (hist * v).sum() / total
            var = (hist * (v - m) ** 2).sum() / total
        else:
            s = torch.zeros((), dtype=torch.float64)
            s2 = torch.zeros((), dtype=torch.float64)
            for chunk in xc.split(1 << 22):  # 4M values per chunk: bounded float64 memory
                s += chunk.to(torch.float64).sum()
            m = s / xc.numel()
            for chunk in xc.split(1 << 22):
                s2 += ((chunk.to(torch.float64) - m) ** 2).sum()
            var = s2 / xc.numel()
        means.append(float(m))
        stds.append(max(float(var.sqrt()), 1e-8))  # a constant channel must not divide by zero
    return tuple(means), tuple(stds)


def make_splits(raw: RawData, val_size: int, subset: int | None, seed: int) -> Splits:
    """Hold out a stratified validation split, then optionally keep a stratified training subset.

    The validation split is drawn from the full train part first, so a given seed validates on the
    same images whatever `subset` is. If `val_size` is more than half the train part (e.g. the
    default 5000 with a small synthetic set), 10% of the train part is used instead and a note says so.
    """
    n = raw.train_y.numel()
    notes: list[str] = []
    val = val_size
    if val > n // 2:
        val = n // 10
        notes.append(
            f"data.val_size={val_size} exceeds half of the {n} training images of {raw.name}; "
            f"holding out {val} (10%) instead"
        )
    val_idx = stratified_indices(raw.train_y, val, cpu_generator(seed, "val_split"))
    keep = torch.ones(n, dtype=torch.bool)
    keep[val_idx] = False
    train_idx = torch.nonzero(keep, as_tuple=True)[0]
    if subset is not None:
        if subset > train_idx.numel():
            raise UserError(
                f"data.subset={subset} exceeds the {train_idx.numel()} training images of {raw.name} left "
                f"after the validation split; lower data.subset or data.val_size"
            )
        pick = stratified_indices(raw.train_y[train_idx], subset, cpu_generator(seed, "subset"))
        train_idx = train_idx[pick]
    train_x = raw.train_x[train_idx]
    mean, std = channel_stats(train_x)
    return Splits(
        train_x=train_x,
        train_y=raw.train_y[train_idx],
        val_x=raw.train_x[val_idx],
        val_y=raw.train_y[val_idx],
        test_x=raw.test_x,
        test_y=raw.test_y,
        mean=mean,
        std=std,
        num_classes=raw.num_classes,
        name=raw.name,
        class_names=list(raw.class_names),
        notes=notes,
    )


def load(cfg: DataConfig, seed: int) -> Splits:
    """The dataset named by `cfg.name`, cut into train / val / test as `cfg` says (see make_splits)."""
    from bnlab.data import DATASETS

    raw = DATASETS.get(cfg.name)(cfg)
    return make_splits(raw, cfg.val_size, cfg.subset, seed)
