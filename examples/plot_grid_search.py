"""
===================================================
Choosing the norm and the centroid by grid search
===================================================

This example puts :class:`~sk_meanclf.NearestMeanImageClassifier` in a scikit-learn
``Pipeline`` and tunes it with ``cross_val_score`` and ``GridSearchCV`` on the
training split of MNIST_SAMPLE. The pipeline may first binarize the pixels, so the
search also asks whether the grey levels help.
"""

# %%
# Fetch MNIST_SAMPLE through fastai and read both splits as ``X, y`` arrays with
# pixels in [0, 1] and labels 3 and 7.
from sk_meanclf.datasets import fetch_mnist_sample, load_image_folder

path = fetch_mnist_sample()
X_train, y_train = load_image_folder(path, split="train", return_X_y=True)
X_valid, y_valid = load_image_folder(path, split="valid", return_X_y=True)

# %%
# A pipeline of an optional ``Binarizer`` and the classifier. Five-fold
# ``cross_val_score`` of the book's setting (grey levels, mean image, l1 distance)
# gives a first estimate of its accuracy, from the training split alone.
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Binarizer

from sk_meanclf import NearestMeanImageClassifier

pipe = Pipeline(
    [("binarize", "passthrough"), ("clf", NearestMeanImageClassifier(norm="l1"))]
)
scores = cross_val_score(pipe, X_train, y_train, cv=5)
print(
    f"5-fold accuracy of the book's setting: {scores.mean():.4f} +/- {scores.std():.4f}"
)

# %%
# ``GridSearchCV`` tries both norms, both centroids (the mean image, or the median
# image, the point that minimises the l1 distance), and the pixels with or without
# binarizing, then refits the best combination on the whole training split.
import pandas as pd
from sklearn.model_selection import GridSearchCV

param_grid = {
    "binarize": ["passthrough", Binarizer(threshold=0.5)],
    "clf__norm": ["l1", "l2"],
    "clf__centroid": ["mean", "median"],
}
search = GridSearchCV(pipe, param_grid, cv=5).fit(X_train, y_train)

results = pd.DataFrame(search.cv_results_)
results["binarize"] = results["param_binarize"].map(
    lambda step: "no" if step == "passthrough" else "yes"
)
table = results.rename(
    columns={
        "param_clf__norm": "norm",
        "param_clf__centroid": "centroid",
        "mean_test_score": "mean accuracy",
        "std_test_score": "std",
        "rank_test_score": "rank",
    }
)[["rank", "binarize", "norm", "centroid", "mean accuracy", "std"]]
table = table.sort_values("rank", kind="stable")
print(table.to_string(index=False, float_format="{:.4f}".format))

# %%
# The refitted best pipeline, scored once on the validation split that the search
# never saw.
best = search.best_params_
print(
    "best setting: "
    f"binarize={'no' if best['binarize'] == 'passthrough' else 'yes'}, "
    f"norm={best['clf__norm']}, centroid={best['clf__centroid']}"
)
print(f"validation accuracy of the best setting: {search.score(X_valid, y_valid):.4f}")

# %%
# The mean cross-validated accuracy of each combination, side by side.
import matplotlib.pyplot as plt

labels = [
    f"{b}\n{n}, {c}"
    for b, n, c in zip(table["binarize"], table["norm"], table["centroid"], strict=True)
]
fig, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
ax.bar(range(len(table)), table["mean accuracy"], yerr=table["std"], color="C0")
ax.set_xticks(range(len(table)), [f"binarize {label}" for label in labels])
ax.tick_params(axis="x", labelsize=8)
ax.set_ylim(0.9, 1.0)
ax.set_ylabel("5-fold accuracy")
ax.set_title("Grid search over binarizing, norm and centroid (MNIST_SAMPLE)")
plt.show()
