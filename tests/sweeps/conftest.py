import pytest
import yaml

TINY_BASE = {
    "model": {"name": "resnet_cifar", "depth": 8},
    "data": {"name": "synthetic", "synthetic_train": 320, "synthetic_test": 64, "val_size": 64},
    "optim": {"batch_size": 32},
    "train": {"epochs": 1, "eval_train_subset": 64, "threads": 1, "checkpoint_every": 0.25},
}


@pytest.fixture
def tiny_spec(tmp_path):
    """A 4-run spec (2 norms x 2 lrs) on synthetic data that runs in seconds."""
    spec = {
        "id": "T1",
        "name": "tiny",
        "claim": "test spec",
        "base": TINY_BASE,
        "grid": {"model.norm": ["batch", "none"], "optim.lr": [0.05, 0.01]},
        "profiles": {"smoke": {"cost_s": 5, "tests": "tests"}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
