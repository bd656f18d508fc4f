"""Device-resident data: uint8 images live on the training device; batches are cut, augmented and
normalized there, so the host does no per-image work.

Every training batch is a deterministic function of (seed, step): the epoch's order is a permutation
seeded by (seed, epoch) and the augmentation draws come from a generator seeded by (seed, step). A
run resumed at step s therefore sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F

from bnlab.data.seeds import cpu_generator, derive_seed
from bnlab.data.splits import Splits, stratified_indices
from bnlab.errors import UserError

PAD = 4  # pixels of zero padding before the random crop (He et al. 2016)


def draw_crop_flip(
    n: int, generator: torch.Generator, pad: int = PAD
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets (dy, dx in 0..2*pad, into the padded image) and flip flags, in that order,
    drawn from `generator` on its device."""
    dev = generator.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    flip = torch.randint(0, 2, (n,), generator=generator, device=dev).bool()
    return dy, dx, flip


def crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = PAD
) -> torch.Tensor:
    """Zero-pad N x C x H x W by `pad`, crop H x W at (dy[i], dx[i]), mirror left-right where flip[i].

    One gather for the whole batch: output pixel (i, c, r, q) = padded[i, c, dy_i + r, dx_i + q'] with
    q' = W - 1 - q if flipped else q.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # zeros
    rows = dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # n x h
    q = torch.arange(w, device=x.device).view(1, w)
    cols = dx.view(n, 1) + torch.where(flip.view(n, 1), w - 1 - q, q)  # n x w
    flat = padded.flatten(2)  # n x c x (h+2p)(w+2p)
    index = (rows.view(n, h, 1) * (w + 2 * pad) + cols.view(n, 1, w)).view(n, 1, h * w).expand(n, c, h * w)
    return torch.gather(flat, 2, index).view(n, c, h, w)


class DeviceData:
    """The splits' images and labels on `device`, with seeded batch iterators.

    train_batch(step, batch_size, seed, augment) -> (x, y): x float32 N x C x H x W normalized with the
    train part's per-channel mean/std, y int64; a pure function of (seed, step, batch_size).
    """

    def __init__(self, splits: Splits, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.splits = splits
        self.num_classes = splits.num_classes
        self.train_x = splits.train_x.to(self.device)
        self.train_y = splits.train_y.to(self.device)
        self.val_x = splits.val_x.to(self.device)
        self.val_y = splits.val_y.to(self.device)
        self.test_x = splits.test_x.to(self.device)
        self.test_y = splits.test_y.to(self.device)
        c = splits.train_x.shape[1]
        self.mean = torch.tensor(splits.mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self.std = torch.tensor(splits.std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._perm_key: tuple[int, int] | None = None
        self._perm: torch.Tensor | None = None
        gen_device = self.device if self.device.type != "cpu" else torch.device("cpu")
        self._aug_gen = torch.Generator(device=gen_device)

    @property
    def n_train(self) -> int:
        return int(self.train_y.numel())

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (0..255) or float ([0, 1] pixel units) images -> float32 (x/255 - mean) / std."""
        xf = x.to(torch.float32)
        if x.dtype == torch.uint8:
            xf = xf / 255.0
        return (xf - self.mean) / self.std

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full batches per pass over the train part (drop-last)."""
        if batch_size < 1:
            raise UserError("batch_size must be >= 1")
        if batch_size > self.n_train:
            raise UserError(
                f"batch_size {batch_size} exceeds the {self.n_train} training images; lower optim.batch_size"
            )
        return self.n_train // batch_size

    def epoch_order(self, seed: int, epoch: int) -> torch.Tensor:
        """The permutation of train indices used in `epoch` (on the device; the current one is cached)."""
        key = (seed, epoch)
        if self._perm_key != key:
            perm = torch.randperm(self.n_train, generator=cpu_generator(seed, "epoch", epoch))
            self._perm = perm.to(self.device)
            self._perm_key = key
        assert self._perm is not None
        return self._perm

    def augment_generator(self, seed: int, step: int) -> torch.Generator:
        """The generator of step `step`'s crop/flip draws (on the device for CUDA)."""
        return self._aug_gen.manual_seed(derive_seed(seed, "augment", step))

    def train_indices(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Indices into the train part of the minibatch used at `step`."""
        spe = self.steps_per_epoch(batch_size)
        epoch, pos = divmod(step, spe)
        return self.epoch_order(seed, epoch)[pos * batch_size : (pos + 1) * batch_size]

    def train_batch(
        self, step: int, batch_size: int, seed: int, augment: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch of `step`: (x float32 normalized N x C x H x W, y int64), augmented if asked."""
        idx = self.train_indices(step, batch_size, seed)
        x = self.train_x[idx]
        if augment:
            dy, dx, flip = draw_crop_flip(idx.numel(), self.augment_generator(seed, step))
            x = crop_flip(x, dy, dx, flip)
        return self.normalize(x), self.train_y[idx]

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split in ("train_eval", "train"):
            return self.train_x, self.train_y
        if split == "val":
            return self.val_x, self.val_y
        if split == "test":
            return self.test_x, self.test_y
        raise ValueError(f"unknown split {split!r}; use train_eval, val or test")

    def eval_indices(self, split: str, n: int | None = None, seed: int = 0) -> torch.Tensor:
        """The (sorted) images of `split` an evaluation uses: all, or a fixed stratified subset of n."""
        _, y = self._split(split)
        total = int(y.numel())
        if n is None or n >= total:
            return torch.arange(total)
        return stratified_indices(y.cpu(), max(n, 0), cpu_generator(seed, "eval", split))

    def eval_batches(
        self,
        split: Literal["train_eval", "val", "test"],
        batch_size: int,
        n: int | None = None,
        seed: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalized, unaugmented (x, y) batches of `split` in a fixed order (the last may be short).

        train_eval: a fixed seeded, class-stratified subset of n train images (all if n is None);
        val / test: all images, or the same kind of subset when n is given.
        """
        x, y = self._split(split)
        idx = self.eval_indices(split, n, seed).to(self.device)
        for chunk in idx.split(batch_size):
            yield self.normalize(x[chunk]), y[chunk]

    def probe_indices(self, count: int, batch_size: int, seed: int) -> torch.Tensor:
        """count x batch_size train indices of the probe batches: one seeded order of the train part,
        continued with further seeded orders if count * batch_size exceeds it (so disjoint until then)."""
        if batch_size > self.n_train:
            raise UserError(
                f"probe batch_size {batch_size} exceeds the {self.n_train} training images; lower it"
            )
        need = count * batch_size
        orders = [
            torch.randperm(self.n_train, generator=cpu_generator(seed, "probe", rep))
            for rep in range(-(-need // self.n_train))
        ]
        order = torch.cat(orders) if orders else torch.empty(0, dtype=torch.int64)
        return order[:need].view(count, batch_size)

    def probe_batches(
        self, count: int, batch_size: int, seed: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`count` unaugmented, normalized train minibatches of `batch_size`, fixed by `seed`
        (the images of probe_indices)."""
        idx = self.probe_indices(count, batch_size, seed).to(self.device)
        return [(self.normalize(self.train_x[i]), self.train_y[i]) for i in idx]
