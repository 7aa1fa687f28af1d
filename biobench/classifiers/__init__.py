"""Classifiers fitted on frozen features. `CLASSIFIERS.get(name)(**params, seed=, device=, metric=)`, then
`.fit(x, y)`, `.predict(x)` -> (labels, probability of each label) and `.summary()`."""

from biobench.classifiers.base import CLASSIFIERS, Classifier, ClassifierParamsError
from biobench.classifiers import knn, logreg, simpleshot, svm  # noqa: F401  (registers them)

__all__ = ["CLASSIFIERS", "Classifier", "ClassifierParamsError"]
