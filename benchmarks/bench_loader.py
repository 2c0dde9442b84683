"""Benchmark of load_image_folder against the fastai book's per-file loop.

The book reads every PNG of a class folder with
``torch.stack([tensor(Image.open(o)) for o in paths]).float() / 255``. This
script times that loop, then ``load_image_folder`` without its cache ("cold":
every file decoded, though the operating system may hold the files in memory),
without the libspng decoder (Pillow only, when pyspng is installed), and from
its on-disk cache, all on the same folder in one run. Runs are interleaved and
each figure is the median of ``repeats`` runs.

Run ``python benchmarks/bench_loader.py [FOLDER] [--repeats N]``; FOLDER
defaults to fastai's MNIST_SAMPLE, fetched through ``fetch_mnist_sample``
(nothing is downloaded when it sits in ``$FASTAI_HOME/data``).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

BOOK = "book loop (PIL + torch)"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}


def _splits(root):
    """Return the split names to read: None when the classes sit under root."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != ".")
    if folders and all(
        any(q.is_dir() and q.name[0] != "." for q in p.iterdir()) for p in folders
    ):
        return [p.name for p in folders]
    return [None]


def _book_tensor():
    """Return the book's ``tensor``: fastai's, or its numpy route when missing."""
    import numpy as np
    import torch

    try:
        from fastai.torch_core import tensor
    except ImportError:  # fastai's tensor converts a PIL image through numpy

        def tensor(image):
            return torch.as_tensor(np.array(image))

    return tensor


def _book_loop(root, splits, tensor):
    """The book's loop over every class folder; returns the stacked tensors."""
    import torch
    from PIL import Image

    stacks = []
    for split in splits:
        base = root if split is None else root / split
        for folder in sorted(
            p for p in base.iterdir() if p.is_dir() and p.name[0] != "."
        ):
            paths = sorted(
                p
                for p in folder.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and p.name[0] != "."
            )
            stacks.append(
                torch.stack([tensor(Image.open(o)) for o in paths]).float() / 255
            )
    return stacks


def run(path, repeats=5):
    """Time the loaders on the image folder ``path``.

    Parameters
    ----------
    path : str or path-like
        A folder of class folders, or of split folders holding class folders
        (every split is read).
    repeats : int, default=5
        Timed runs of each loader; the median is reported.

    Returns
    -------
    rows : list of tuple
        ``(name, median_seconds, ratio)``, where ratio is the book loop's median
        time divided by this row's (higher is faster), or None when torch is
        missing and the book loop row is left out with a warning.
    """
    from sk_meanclf.datasets import _decode, load_image_folder

    root = Path(path)
    splits = _splits(root)

    def ours(**kwargs):
        return [load_image_folder(root, split=s, **kwargs) for s in splits]

    def ours_pillow_only():
        saved = _decode.pyspng
        _decode.pyspng = None
        try:
            return ours()
        finally:
            _decode.pyspng = saved

    with tempfile.TemporaryDirectory(prefix="sk_meanclf_bench_") as cache:
        candidates = []
        try:
            tensor = _book_tensor()  # imported before timing
            candidates.append((BOOK, lambda: _book_loop(root, splits, tensor)))
        except ImportError:
            warnings.warn(
                "torch is not installed: the book loop row is left out and no "
                "ratios are given.",
                RuntimeWarning,
                stacklevel=2,
            )
        candidates.append(("load_image_folder, cold", ours))
        if _decode.pyspng is not None:
            candidates.append(
                ("load_image_folder, cold, Pillow only", ours_pillow_only)
            )
        candidates.append(("load_image_folder, cached", lambda: ours(cache=cache)))

        ours(cache=cache)  # fill the cache, untimed
        times = {name: [] for name, _ in candidates}
        for _ in range(repeats):
            for name, loader in candidates:
                start = time.perf_counter()
                loader()
                times[name].append(time.perf_counter() - start)

    medians = {name: statistics.median(t) for name, t in times.items()}
    book = medians.get(BOOK)
    return [
        (name, seconds, None if book is None else book / seconds)
        for name, seconds in medians.items()
    ]


def _markdown(rows, path):
    lines = [
        f"Loading {path}",
        "",
        "| loader | median seconds | speed-up vs book loop |",
        "|---|---:|---:|",
    ]
    for name, seconds, ratio in rows:
        shown = "n/a" if ratio is None else f"{ratio:.1f}x"
        lines.append(f"| {name} | {seconds:.4f} | {shown} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder",
        nargs="?",
        help="image folder to load (default: fastai's MNIST_SAMPLE via "
        "fetch_mnist_sample)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per loader")
    args = parser.parse_args(argv)
    if args.folder is None:
        from sk_meanclf.datasets import fetch_mnist_sample

        args.folder = fetch_mnist_sample()
    rows = run(args.folder, repeats=args.repeats)
    sys.stdout.write(_markdown(rows, args.folder) + "\n")
    load = ""
    if hasattr(os, "getloadavg"):
        load = "; load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    sys.stdout.write(f"\n{os.cpu_count()} CPUs{load}\n")


if __name__ == "__main__":
    try:
        import sk_meanclf  # noqa: F401
    except ImportError:  # run from a checkout: use its package
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
