"""Stratified selection, the train/val split, the training subset and the channel statistics."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bnlab.data import make_splits, stratified_indices
from bnlab.data.seeds import cpu_generator
from bnlab.data.splits import RawData, channel_stats
from bnlab.errors import UserError


def _quotas_reference(counts: list[int], k: int) -> list[int]:
    """Largest remainder with exact fractions, ties to the lower class index (the slow twin)."""
    n = sum(counts)
    exact = [Fraction(c * k, n) for c in counts]
    quota = [int(e) for e in exact]
    left = k - sum(quota)
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - quota[i]), i))
    for i in order[:left]:
        quota[i] += 1
    return quota


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    frac=st.floats(0, 1),
    seed=st.integers(0, 5),
)
def test_stratified_counts_match_largest_remainder(counts, frac, seed):
    labels = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    k = int(frac * len(labels))
    idx = stratified_indices(labels, k, cpu_generator(seed))
    assert idx.numel() == k and idx.unique().numel() == k
    assert torch.equal(idx, idx.sort().values)
    got = torch.bincount(labels[idx], minlength=len(counts)).tolist()
    assert got == _quotas_reference(counts, k)


def test_stratified_is_seeded():
    labels = torch.arange(1000) % 10
    a = stratified_indices(labels, 100, cpu_generator(0, "x"))
    b = stratified_indices(labels, 100, cpu_generator(0, "x"))
    c = stratified_indices(labels, 100, cpu_generator(1, "x"))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _raw(n_train=1000, n_test=200, classes=10) -> RawData:
    g = torch.Generator().manual_seed(0)
    # each image carries its own index in its first pixels, so selections can be traced
    idx = torch.arange(n_train)
    x = torch.randint(0, 256, (n_train, 3, 4, 4), generator=g, dtype=torch.uint8)
    x[:, 0, 0, 0] = (idx % 256).to(torch.uint8)
    x[:, 0, 0, 1] = (idx // 256).to(torch.uint8)
    y = torch.arange(n_train) % classes
    tx = torch.randint(0, 256, (n_test, 3, 4, 4), generator=g, dtype=torch.uint8)
    ty = torch.randint(0, classes, (n_test,), generator=g)
    return RawData(x, y, tx, ty, classes, "toy", [str(i) for i in range(classes)])


def _ids(x):
    return (x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()).tolist()


def test_split_is_disjoint_stratified_and_leaves_test_alone():
    raw = _raw()
    test_x, test_y = raw.test_x.clone(), raw.test_y.clone()
    s = make_splits(raw, val_size=100, subset=None, seed=3)
    tr, va = set(_ids(s.train_x)), set(_ids(s.val_x))
    assert len(tr) == 900 and len(va) == 100 and not tr & va and tr | va == set(range(1000))
    assert torch.bincount(s.val_y, minlength=10).tolist() == [10] * 10
    assert torch.equal(s.train_y, raw.train_y[sorted(tr)])
    assert torch.equal(s.test_x, test_x) and torch.equal(s.test_y, test_y)
    assert s.notes == []


def test_subset_comes_from_the_train_part_and_keeps_val_fixed():
    raw = _raw()
    full = make_splits(raw, 100, None, seed=3)
    sub = make_splits(raw, 100, 250, seed=3)
    assert _ids(sub.val_x) == _ids(full.val_x)  # the same validation images whatever the subset
    assert set(_ids(sub.train_x)) <= set(_ids(full.train_x))
    assert torch.bincount(sub.train_y, minlength=10).tolist() == [25] * 10
    assert torch.equal(sub.test_x, raw.test_x)
    other = make_splits(raw, 100, 250, seed=4)
    assert _ids(other.train_x) != _ids(sub.train_x)
    again = make_splits(raw, 100, 250, seed=3)
    assert _ids(again.train_x) == _ids(sub.train_x)


def test_subset_too_large_is_a_user_error():
    with pytest.raises(UserError, match="data.subset=950 exceeds the 900"):
        make_splits(_raw(), 100, 950, seed=0)


def test_oversized_val_is_capped_with_a_note():
    s = make_splits(_raw(), 5000, None, seed=0)
    assert len(s.val_y) == 100 and len(s.train_y) == 900
    assert len(s.notes) == 1 and "val_size=5000" in s.notes[0]
    zero = make_splits(_raw(), 0, None, seed=0)
    assert len(zero.val_y) == 0 and len(zero.train_y) == 1000


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_channel_stats_match_float64_reference(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (50, 3, 8, 8), generator=g, dtype=torch.uint8)
    x[:, 1] //= 4  # make channels differ
    data = x if dtype == torch.uint8 else x.to(torch.float32) / 255
    mean, std = channel_stats(data)
    ref = x.to(torch.float64) / 255
    for c in range(3):
        assert mean[c] == pytest.approx(ref[:, c].mean().item(), abs=1e-6)
        assert std[c] == pytest.approx(ref[:, c].std(unbiased=False).item(), abs=1e-6)
    s = make_splits(_raw(), 100, None, 0)
    m, sd = channel_stats(s.train_x)
    assert s.mean == m and s.std == sd
