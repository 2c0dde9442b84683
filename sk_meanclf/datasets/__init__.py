"""Loaders that turn image folders into ``X, y`` arrays."""

__all__ = []
