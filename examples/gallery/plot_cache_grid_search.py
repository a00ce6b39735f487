"""
The embedding cache across a grid search
========================================

In ``GridSearchCV(make_pipeline(extractor, classifier), ...)`` scikit-learn
clones the pipeline for each candidate and each fold, and every clone
embeds its rows again: ``n_candidates * n_folds`` passes over the data
through the backbone, plus the final refit. With ``cache=`` the
:class:`~sktransfer.PretrainedFeatureExtractor` keeps each input's
embedding on disk, keyed by the backbone's weights, the preprocessing and
the input's content, so each distinct input goes through the model once,
across folds, clones, processes and later runs.

This example runs the same search three times and counts, with
:func:`sktransfer.embedding_stats`, how many inputs went through the
backbone: without a cache, with an empty cache, and with the cache the
second search left behind.
"""

# %%
# The search
# ----------
# ``SKTRANSFER_DOCS_QUICK=1`` (set by ``make docs``) keeps 6 articles per
# topic, 2 folds and short token windows so that the page builds in well
# under a minute on a 2-core CPU; without it, 60 articles per topic and 3
# folds.
import os
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor, embedding_stats, reset_embedding_stats
from sktransfer.datasets import load_bbc_news

QUICK = os.environ.get("SKTRANSFER_DOCS_QUICK") == "1"
per_topic, n_folds, max_length = (6, 2, 64) if QUICK else (60, 3, 256)

texts, topics = load_bbc_news(return_X_y=True)
keep = np.concatenate([np.flatnonzero(topics == t)[:per_topic] for t in np.unique(topics)])
texts, topics = [texts[i] for i in keep], topics[keep]
n_articles = len(texts)


def search(cache):
    pipe = make_pipeline(
        PretrainedFeatureExtractor("sentence-transformers/all-MiniLM-L6-v2", max_length=max_length, cache=cache),
        LogisticRegression(max_iter=1000),
    )
    return GridSearchCV(pipe, {"logisticregression__C": [1.0, 10.0]}, cv=n_folds)


# A fresh cache directory, so that the first cached search starts empty.
cache_dir = tempfile.mkdtemp(prefix="sktransfer-gallery-cache-")
runs = {}
for label, cache in [("no cache", None), ("empty cache", cache_dir), ("warm cache", cache_dir)]:
    reset_embedding_stats()
    t0 = time.perf_counter()
    gs = search(cache).fit(texts, topics)
    seconds = time.perf_counter() - t0
    stats = embedding_stats()
    runs[label] = (seconds, stats["computed"], stats["cache_hits"])
    print(f"{label:>11}: {seconds:5.1f} s, {stats['computed']:4d} inputs through the backbone, "
          f"{stats['cache_hits']:4d} cache hits, best C = {gs.best_params_['logisticregression__C']}, "
          f"CV accuracy {gs.best_score_:.3f}")

# %%
# Without the cache, the articles go through the model for every
# candidate and fold (fit and score) and once more for the refit. With
# it, each article is embedded once, and a second search embeds nothing.
# The chosen ``C`` and the scores are the same in all three runs.
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
labels = list(runs)
colors = ["#999999", "#4c72b0", "#55a868"]
axes[0].bar(labels, [runs[k][1] for k in labels], color=colors)
axes[0].set_ylabel("inputs through the backbone")
axes[1].bar(labels, [runs[k][0] for k in labels], color=colors)
axes[1].set_ylabel("seconds for the search")
fig.suptitle(f"GridSearchCV, 2 candidates x {n_folds} folds, {n_articles} articles")
fig.tight_layout()
plt.show()
