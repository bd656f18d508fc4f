import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Jacobians of tiny MLPs: one thread avoids OpenMP spin on a shared 2-core machine (restored after)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
