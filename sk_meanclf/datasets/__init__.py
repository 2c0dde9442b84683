"""Loaders that turn image folders into ``X, y`` arrays, and fastai fetchers."""

from sk_meanclf.datasets._fastai import (
    fetch_fastai,
    fetch_mnist,
    fetch_mnist_sample,
    fetch_mnist_tiny,
)
from sk_meanclf.datasets._loader import load_image_folder

__all__ = [
    "fetch_fastai",
    "fetch_mnist",
    "fetch_mnist_sample",
    "fetch_mnist_tiny",
    "load_image_folder",
]
