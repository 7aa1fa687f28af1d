"""n_train: a seeded, class-balanced subsample of the training split only; every size its own fit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biobench.classifiers.few_shot import balanced_subsample
from biobench.errors import ConfigError
from task_fixtures import run_protocol


def test_sizes_are_spread_evenly_over_classes_as_far_as_their_rows_allow():
    y = np.repeat(np.arange(5), [1, 2, 10, 20, 30])
    counts = {size: np.bincount(y[balanced_subsample(y, size, seed=0)], minlength=5).tolist()
              for size in (5, 10, 20, 63)}
    assert counts[5] == [1, 1, 1, 1, 1]
    assert sorted(counts[10]) == [1, 2, 2, 2, 3] and counts[10][:2] == [1, 2]
    assert counts[20][:2] == [1, 2] and sorted(counts[20][2:]) == [5, 6, 6]
    assert counts[63] == [1, 2, 10, 20, 30]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=80), st.integers(0, 100), st.integers(0, 5))
def test_a_subsample_is_seeded_balanced_and_nested_in_every_larger_one(labels, size, seed):
    y = np.array(labels)
    rows = balanced_subsample(y, size, seed)
    assert len(rows) == (len(y) if size == 0 else min(size, len(y)))
    assert np.array_equal(rows, np.unique(rows)) and np.array_equal(rows, balanced_subsample(y, size, seed))
    taken = np.bincount(y[rows], minlength=7)
    available = np.bincount(y, minlength=7)
    short = taken < available  # classes with rows left took at least as many as any other class, less one
    if short.any():
        assert taken.max() - taken[short].min() <= 1
    if 0 < size < len(y):
        assert set(rows) <= set(balanced_subsample(y, size + 1, seed))


def test_n_train_subsamples_training_rows_and_keeps_the_whole_evaluation_split(animals_data, tmp_path):
    options = {"train_size": 200, "test_size": 100}
    run = run_protocol("animals", options, animals_data, tmp_path / "a", {"Cs": [1.0]}, n_train=20)
    assert run.metadata["n_train"] == 20 and run.metadata["train_size"] == 20
    assert len(run.predictions) == 100  # the evaluation split, whole
    every = run_protocol("animals", options, animals_data, tmp_path / "b", {"Cs": [1.0]})
    assert every.metadata["n_train"] == 200 and every.metadata["train_size"] == 0


def test_a_size_too_small_for_two_classes_names_the_setting(animals_data, tmp_path):
    with pytest.raises(ConfigError, match=r"tasks\.animals\.n_train: 1 training rows hold a single class"):
        run_protocol("animals", {"train_size": 200, "test_size": 100}, animals_data, tmp_path, {"Cs": [1.0]},
                     n_train=1)
