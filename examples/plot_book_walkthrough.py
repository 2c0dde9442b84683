"""
=======================================
The fastai book's mean 3 and mean 7
=======================================

This example replays the pixel-similarity baseline of chapter 4 of the fastai
book on MNIST_SAMPLE with :class:`~sk_meanclf.NearestMeanImageClassifier`. It shows
the mean 3 and the mean 7, the distances of one training 3 to both, and the
accuracy on the validation 3s and 7s for the l1 and l2 norms.
"""

# %%
# Fetch MNIST_SAMPLE through fastai (nothing is downloaded when
# ``$FASTAI_HOME/data/mnist_sample`` already exists) and read both splits. Files are
# read in sorted order, classes too, so the 3s come first, as in the book.
from sk_meanclf.datasets import fetch_mnist_sample, load_image_folder

path = fetch_mnist_sample()
train = load_image_folder(path, split="train")
valid = load_image_folder(path, split="valid")
print(f"training images: {len(train.target)}, validation images: {len(valid.target)}")

# %%
# Fitting stores the mean image of each class in ``centroids_``: the "ideal" 3 and
# 7 of the book, averaged pixel by pixel over the training split.
import matplotlib.pyplot as plt

from sk_meanclf import NearestMeanImageClassifier

clf = NearestMeanImageClassifier(norm="l1").fit(train.data, train.target)

fig, axes = plt.subplots(1, 2, figsize=(5, 2.8), layout="constrained")
for ax, label, centroid in zip(axes, clf.classes_, clf.centroids_, strict=True):
    ax.imshow(centroid.reshape(train.image_shape), cmap="gray_r")
    ax.set_title(f"mean {label}")
    ax.set_axis_off()

# %%
# ``transform`` gives the distance of each image to each mean: the mean absolute
# error for ``norm="l1"`` and the root mean squared error for ``norm="l2"``. The
# book measures the second training 3 this way.
clf_l2 = NearestMeanImageClassifier(norm="l2").fit(train.data, train.target)
a_3 = train.data[1:2]
for name, model in [("l1", clf), ("l2", clf_l2)]:
    to_3, to_7 = model.transform(a_3)[0]
    print(
        f"{name} distance of the second 3 to the mean 3: {to_3:.4f}, "
        f"to the mean 7: {to_7:.4f}"
    )

# %%
# Each validation image gets the label of the nearest mean. The book reports the
# accuracy on the 3s and on the 7s separately.
for name, model in [("l1", clf), ("l2", clf_l2)]:
    predicted = model.predict(valid.data)
    for label in model.classes_:
        is_label = valid.target == label
        accuracy = (predicted[is_label] == label).mean()
        print(f"{name} accuracy on the validation {label}s: {accuracy:.4f}")
    print(f"{name} accuracy overall: {model.score(valid.data, valid.target):.4f}")

plt.show()
