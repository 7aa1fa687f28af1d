"""Each task's protocol as biobench runs it (see /work/shared/reference/biobench.md, section 1, per-task table), and
the options every downloaded task shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biobench import keys
from biobench.options import task_options
from biobench.errors import ConfigError
from biobench.tasks import TASKS
from biobench.tasks.base import BENCHMARK_TASKS, PRIOR_WORK_TASKS, limit_per_split

# task: (train split, reported split, metric, classifier, frame pooling, one classifier per group, in the biology mean)
PROTOCOLS = {
    "newt": ("train", "test", "accuracy", "svm", "", True, False),
    "kabr": ("train", "val", "macro_f1", "logreg", "max", False, True),
    "plantnet": ("train", "val", "macro_f1", "logreg", "", False, True),
    "iwildcam": ("train", "test", "macro_f1", "logreg", "", False, True),
    "imagenet1k": ("train", "val", "accuracy", "logreg", "", False, False),
}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_matches_the_reference(name):
    task = TASKS.get(name)
    assert (task.train_split, task.eval_split, task.metric, task.classifier, task.frame_pooling, task.fit_per_group,
            task.benchmark) == PROTOCOLS[name]
    assert task.splits == (task.train_split, task.eval_split)
    assert "Protocol" in __import__(task.__module__, fromlist=["_"]).__doc__  # source, layout, protocol documented


def test_the_overall_mean_is_biobenchs_ten_benchmark_tasks_and_prior_work_is_left_out():
    """BioBench's report.py: benchmark_tasks (10) are averaged; prior_work_tasks (NeWT, iNat21, ImageNet-1K) are
    not. Every registered task declares its role to match, and no other task joins the mean by default."""
    assert set(BENCHMARK_TASKS) == {"beluga", "ecdysis", "fishnet", "fungiclef", "herbarium19", "iwildcam", "kabr",
                                    "mammalnet", "plankton", "plantnet"}
    assert set(PRIOR_WORK_TASKS) == {"newt", "inat21", "imagenet1k"}
    for name in TASKS.names():
        assert TASKS.get(name).benchmark is (name in BENCHMARK_TASKS), name
    assert {"newt", "imagenet1k"} <= set(TASKS.names()) and not TASKS.get("newt").benchmark


def test_each_task_defaults_to_its_reference_classifier_settings_and_config_overrides_them():
    kabr, plantnet = TASKS.get("kabr")(), TASKS.get("plantnet")()
    assert kabr.classifier_settings({}) == {"class_weight": "balanced", "cv_folds": 5}  # init_logreg_clf
    assert kabr.classifier_settings({"cv_folds": 0, "Cs": [1.0]}) == {"class_weight": "balanced", "cv_folds": 0,
                                                                       "Cs": [1.0]}
    assert plantnet.classifier_settings({}) == {}  # LinearProbeClassifier: no class weights
    default = keys.classifier_key("logreg", kabr.classifier_settings({}), 0)
    assert keys.classifier_key("logreg", kabr.classifier_settings({"class_weight": None}), 0) != default


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_training_sizes_are_not_part_of_the_dataset_key(name):
    base = keys.dataset_key(name, task_options(name, {}))
    assert keys.dataset_key(name, task_options(name, {"n_train": [1, 10, 0]})) == base
    assert task_options(name, {"n_train": [100, 0, 1, 100]}).n_train == (1, 100, 0)
    assert task_options(name, {"n_train": 10}).n_train == (10,)


@pytest.mark.parametrize("value", [-1, [], [1, "10"], 2.5, True])
def test_bad_training_sizes_name_the_key(value):
    with pytest.raises(ConfigError, match=r"tasks\.kabr\.n_train must be an integer >= 0"):
        task_options("kabr", {"n_train": value})


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_where_the_data_lives_is_not_part_of_the_dataset_key(name):
    base = keys.dataset_key(name, task_options(name, {}))
    assert keys.dataset_key(name, task_options(name, {"datadir": "/x", "mirror": "file:///y"})) == base
    assert keys.dataset_key(name, task_options(name, {"max_per_split": 10})) != base
    assert keys.dataset_key(name, task_options(name, {"seed": 3})) != base


def test_task_options_are_checked():
    with pytest.raises(ConfigError, match="tasks.kabr.frames must be >= 1"):
        task_options("kabr", {"frames": 0})
    with pytest.raises(ConfigError, match="unknown key 'max_per_class'"):
        task_options("plantnet", {"max_per_class": 3})


def test_limit_per_split_keeps_class_shares_and_is_seeded():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    frame = pd.DataFrame({"example_id": [str(i) for i in range(2000)], "split": ["train"] * 1000 + ["test"] * 1000,
                          "label": np.concatenate([labels, rng.permutation(labels)]), "group": None})
    kept = limit_per_split(frame, 100, seed=5)
    assert kept["split"].value_counts().to_dict() == {"train": 100, "test": 100}
    for _, part in kept.groupby("split"):
        assert part["label"].value_counts().sort_index().tolist() == [60, 30, 10]
    assert kept["example_id"].tolist() == limit_per_split(frame, 100, seed=5)["example_id"].tolist()
    assert kept["example_id"].tolist() != limit_per_split(frame, 100, seed=6)["example_id"].tolist()
    assert limit_per_split(frame, 0, seed=5) is frame
    assert len(limit_per_split(frame, 5000, seed=5)) == 2000
