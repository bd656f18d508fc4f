"""A LightningModule with BatchNorm trained 20 steps on CPU with bnlab's ProbeCallback (the `lightning` extra).

    python examples/lightning_callback.py [RUNS]       # default RUNS: runs_lightning

The callback measures the `cheap` probes every 5 steps into RUNS/<run id> (and TensorBoard events in its
tb/ folder when the `tb` extra is installed); `bnlab report RUNS` draws them. The last stdout line is the
run directory.
"""

from __future__ import annotations

import sys

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bnlab.monitor.lightning import ProbeCallback


class SmallBNNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201 (Lightning's signature)
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def loader(seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(320, 3, 8, 8, generator=g), torch.randint(0, 10, (320,), generator=g)
    return DataLoader(
        TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )


def fit(callbacks: list, seed: int = 0, max_steps: int = 20) -> SmallBNNet:
    L.seed_everything(seed, verbose=False)
    model = SmallBNNet()
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, loader(seed))
    return model


if __name__ == "__main__":
    callback = ProbeCallback(
        probes="cheap", schedule=5, runs=sys.argv[1] if len(sys.argv) > 1 else "runs_lightning"
    )
    fit([callback])
    print(callback.monitor.run_dir)
