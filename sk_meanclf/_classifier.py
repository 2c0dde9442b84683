"""Nearest class-mean classifier on flattened images."""

from sklearn.base import BaseEstimator, ClassifierMixin


class NearestMeanImageClassifier(ClassifierMixin, BaseEstimator):
    """Work in progress: parameters only; fitting lands with issue 2."""

    def __init__(self, norm="l1", centroid="mean"):
        self.norm = norm
        self.centroid = centroid
