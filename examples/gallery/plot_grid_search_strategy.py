"""
Choosing a fine-tuning strategy with a grid search
==================================================

:class:`~sktransfer.FineTunedClassifier` can train only a new head on the
frozen backbone (``strategy="linear_probe"``), the top block groups too
(``"partial"``), every weight (``"full"``), or unfreeze block groups one
at a time (``"progressive"``). Which one is best depends on the task and on
how many labels there are, so it is worth measuring. Because the strategy
is an ordinary constructor parameter,
:class:`~sklearn.model_selection.GridSearchCV` can choose it, together with
the learning rate that suits each strategy.

The task: Fashion-MNIST (:func:`sktransfer.datasets.load_fashion_mnist`)
with a few labelled images per class, EfficientNet-Lite0 as the backbone.
"""

# %%
# The data
# --------
# ``SKTRANSFER_DOCS_QUICK=1`` (set by ``make docs``) keeps 4 classes, 8
# training images per class, 2 folds and one epoch, so that the page
# builds in about a minute on a 2-core CPU: its numbers are a smoke test.
# Without it: 10 classes, 16 images per class, 3 folds, 3 epochs (several
# minutes).
import os
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sktransfer import FineTunedClassifier
from sktransfer.datasets import load_fashion_mnist

QUICK = os.environ.get("SKTRANSFER_DOCS_QUICK") == "1"
n_classes, per_class, n_folds, epochs = (4, 8, 2, 1) if QUICK else (10, 16, 3, 3)


def take(X, y, n, seed):
    rng = np.random.RandomState(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in range(n_classes)])
    return X[idx], y[idx]


train, test = load_fashion_mnist(subset="train"), load_fashion_mnist(subset="test")
X_train, y_train = take(train.data, train.target, per_class, 0)
X_test, y_test = take(test.data, test.target, 25, 1)
print(f"{len(X_train)} training images, {len(X_test)} test images, {n_classes} classes: "
      + ", ".join(train.target_names[:n_classes]))

# %%
# The search
# ----------
# A list of grids pairs each strategy with its own learning rate: the head
# alone takes a large step, while a backbone that trains needs a smaller
# one (``lr`` is the head's rate; the backbone trains at
# ``lr * backbone_lr_ratio``). The rates are the ones
# ``benchmarks/bench_fine_tuning.py`` uses on this task.
clf = FineTunedClassifier("timm/tf_efficientnet_lite0", image_size=32, max_epochs=epochs,
                          batch_size=16, random_state=0)
param_grid = [
    {"strategy": ["linear_probe"], "lr": [3e-2]},
    {"strategy": ["partial", "full"], "lr": [3e-3], "backbone_lr_ratio": [0.3]},
]
search = GridSearchCV(clf, param_grid, cv=StratifiedKFold(n_folds, shuffle=True, random_state=0))
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # e.g. few rows per batch
    search.fit(X_train, y_train)
print(f"search: {len(search.cv_results_['params'])} candidates x {n_folds} folds + refit "
      f"in {time.perf_counter() - t0:.0f} s")

results = pd.DataFrame({
    "strategy": search.cv_results_["param_strategy"],
    "cv accuracy": search.cv_results_["mean_test_score"].round(3),
    "std": search.cv_results_["std_test_score"].round(3),
    "fit seconds": search.cv_results_["mean_fit_time"].round(1),
})
print(results.to_string(index=False))
print(f"best: {search.best_params_}; test accuracy of the refit best model: "
      f"{search.score(X_test, y_test):.3f}")

# %%
# Accuracy and seconds per fit side by side. With this few labels the
# spread between folds (the error bars) is large: the search picks among
# noisy estimates, so prefer the cheaper strategy unless another one is
# clearly ahead.
fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
colors = ["#4c72b0", "#dd8452", "#55a868"]
axes[0].bar(results["strategy"], results["cv accuracy"], yerr=results["std"], color=colors, capsize=4)
axes[0].set_ylabel(f"{n_folds}-fold CV accuracy")
axes[0].set_ylim(0, 1)
axes[1].bar(results["strategy"], results["fit seconds"], color=colors)
axes[1].set_ylabel("seconds per fit (2-core CPU)")
fig.suptitle(f"FineTunedClassifier strategies, {per_class} labelled images per class, {epochs} epoch(s)")
fig.tight_layout()
plt.show()
