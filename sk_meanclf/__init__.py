"""Nearest class-mean image classification for scikit-learn."""

from sk_meanclf import datasets
from sk_meanclf._classifier import NearestMeanImageClassifier

__version__ = "0.1.0.dev0"

__all__ = ["NearestMeanImageClassifier", "datasets", "__version__"]
