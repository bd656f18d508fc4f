"""Your own PyTorch training loop with a bnlab Monitor: the `cheap` probes every 5 steps.

    python examples/own_loop.py [RUNS]        # default RUNS: runs_own_loop; then: bnlab report RUNS

Synthetic CIFAR-shaped data so it runs anywhere in seconds; put your loader in its place. The last stdout
line is the run directory.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

import bnlab

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import model_factory  # noqa: E402  (examples/model_factory.py, beside this file)


def main(runs: str) -> str:
    torch.manual_seed(0)
    model = model_factory.small_bn_convnet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    data = [(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))) for _ in range(20)]
    with bnlab.Monitor(model, optimizer, probes="cheap", schedule=5, runs=runs) as monitor:
        for step, (x, y) in enumerate(data):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            monitor.step(step, x, y, loss=loss)  # after backward, before the update
            optimizer.step()
    return str(monitor.run_dir)


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "runs_own_loop"))
