import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never download: a missing dataset is a clear error, not a network wait (a CI machine whose network
# stalls instead of refusing once held the suite for an hour). Tests that download pass file:// urls.
os.environ["BNLAB_OFFLINE"] = "1"
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_overrides():
    """A run that takes a second or two on 2 cores: ResNet-8 on 256 synthetic images."""
    return [
        "model.depth=8",
        "data.name=synthetic",
        "data.synthetic_train=320",
        "data.synthetic_test=64",
        "data.val_size=64",
        "optim.batch_size=32",
        "train.epochs=2",
        "train.eval_train_subset=64",
        "train.threads=1",
    ]
