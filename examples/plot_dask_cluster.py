"""
==================================================
Fitting on a dask array larger than memory
==================================================

This example fits :class:`~sk_meanclf.NearestMeanImageClassifier` on a dask array of
ten million images (about 31 GB of float32) made lazily from shifted copies of the
MNIST_SAMPLE training 3s and 7s, on a ``distributed.LocalCluster``. The class sums
are reduced block by block on the workers, so the array never has to fit in memory.
"""

# %%
# Fetch MNIST_SAMPLE through fastai and read both splits. The training images stay
# as uint8 (9.7 MB), since every worker gets a copy to draw its blocks from.
from sk_meanclf.datasets import fetch_mnist_sample, load_image_folder

path = fetch_mnist_sample()
train = load_image_folder(path, split="train", scale=False)
valid = load_image_folder(path, split="valid")

# %%
# The size of the array. Ten million rows by default; the environment variable
# ``SK_MEANCLF_EXAMPLE_ROWS`` asks for fewer, for a quick run.
import os

n_rows = int(os.environ.get("SK_MEANCLF_EXAMPLE_ROWS", 10_000_000))
chunk_rows = min(n_rows, 50_000)
rows = (chunk_rows,) * (n_rows // chunk_rows)
if n_rows % chunk_rows:
    rows += (n_rows % chunk_rows,)

# %%
# Each block of rows is drawn on a worker from its block number: random training
# images, each shifted by up to one pixel in each direction and dimmed a little.
# The labels come from the same draw, so the images and the labels always agree,
# and nothing is computed until the classifier asks for a block.
import dask
import dask.array as da
import numpy as np

SEED = 0
SHIFT = 1


def _draw(block_info, n_images):
    info = block_info[None]
    rng = np.random.default_rng([SEED, info["chunk-location"][0]])
    picks = rng.integers(0, n_images, info["chunk-shape"][0])
    return rng, picks


def shifted_images(images, block_info=None):
    rng, picks = _draw(block_info, len(images))
    n, height, width = len(picks), images.shape[1], images.shape[2]
    padded = np.pad(images[picks], ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT)))
    dy, dx = rng.integers(0, 2 * SHIFT + 1, size=(2, n))
    top = dy[:, None, None] + np.arange(height)[None, :, None]
    left = dx[:, None, None] + np.arange(width)[None, None, :]
    shifted = padded[np.arange(n)[:, None, None], top, left].reshape(n, -1)
    brightness = rng.uniform(0.8, 1.0, size=(n, 1)).astype(np.float32)
    return shifted.astype(np.float32) * (brightness / 255)


def labels(target, block_info=None):
    return target[_draw(block_info, len(target))[1]]


images = dask.delayed(train.images)
X = da.map_blocks(
    shifted_images,
    images=images,
    chunks=(rows, (train.data.shape[1],)),
    dtype=np.float32,
    meta=np.empty((0, 0), dtype=np.float32),
)
y = da.map_blocks(
    labels,
    target=train.target,
    chunks=(rows,),
    dtype=train.target.dtype,
    meta=np.empty((0,), dtype=train.target.dtype),
)
print(f"X: {X.shape[0]:,} x {X.shape[1]} float32, {X.nbytes / 1e9:.1f} GB lazily")

# %%
# A local cluster of two workers, dashboard off. The workers are threads of this
# process here, so the script runs as is; with ``processes=True`` a script must
# create the cluster under ``if __name__ == "__main__":``.
import time

from distributed import Client, LocalCluster

from sk_meanclf import NearestMeanImageClassifier

cluster = LocalCluster(
    n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
)
client = Client(cluster)

start = time.perf_counter()
clf = NearestMeanImageClassifier(norm="l1").fit(X, y)
print(f"fit on {n_rows:,} images in {time.perf_counter() - start:.1f} s")
for label, count in zip(clf.classes_, clf.class_count_, strict=True):
    print(f"images of {label}: {count:,.0f}")

# %%
# Predictions on a dask array are dask arrays too, computed block by block when
# asked for: here only the first ten rows.
predicted = clf.predict(X)
print(f"predict: {predicted.shape}, {predicted.numblocks[0]} blocks, lazy")
print(f"first predictions: {predicted[:10].compute()}")
print(f"first labels:      {y[:10].compute()}")

# %%
# The means of the shifted images are a little blurrier than the book's means of
# the training images; both are scored on the real validation images.
import matplotlib.pyplot as plt

X_train = train.data.astype(np.float32) / 255
book = NearestMeanImageClassifier(norm="l1").fit(X_train, train.target)
for name, model in [("book means", book), ("shifted means", clf)]:
    predicted = model.predict(valid.data)
    for label in model.classes_:
        mask = valid.target == label
        accuracy = np.mean(predicted[mask] == label)
        print(f"{name}: accuracy on the valid {label}s = {accuracy:.4f}")

fig, axes = plt.subplots(2, 2, figsize=(5, 5), layout="constrained")
for row, (name, model) in zip(axes, [("book", book), ("shifted", clf)], strict=True):
    for ax, label, centroid in zip(row, model.classes_, model.centroids_, strict=True):
        ax.imshow(centroid.reshape(train.image_shape), cmap="gray_r")
        ax.set_title(f"{name} mean {label}")
        ax.set_axis_off()

client.close()
cluster.close()
