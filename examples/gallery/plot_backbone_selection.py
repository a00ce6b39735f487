"""
Choosing a backbone (or a layer) with a transferability score
=============================================================

Which pretrained model, and which of its layers, gives the best features
for a new task? Training a probe on each candidate answers it but costs a
cross-validation per candidate; a *transferability score* such as LogME
(:func:`sktransfer.selection.logme_score`) ranks them from the frozen
embeddings and the labels alone, with no training.
:class:`~sktransfer.BackboneSelector` embeds each candidate once, scores
it, confirms the best few with a cross-validated probe, and refits the
winner as a pipeline.

Here the candidates are the stages of one offline image model,
EfficientNet-Lite0 (a ``(backbone, layer)`` tuple takes the mean-pooled
features of an intermediate stage), on Fashion-MNIST
(:func:`sktransfer.datasets.load_fashion_mnist`) at 32 px. To see whether
the score ranks them as a probe would, every candidate is also confirmed
by the probe (``confirm_top_k=len(candidates)``), which a real search would
not need.
"""

# %%
# The search
# ----------
# ``SKTRANSFER_DOCS_QUICK=1`` (set by ``make docs``) uses 10 images per
# class and 3 candidates so that the page builds in about a minute on a
# 2-core CPU; without it, 40 images per class and 5 candidates.
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from sktransfer import BackboneSelector
from sktransfer.datasets import load_fashion_mnist

QUICK = os.environ.get("SKTRANSFER_DOCS_QUICK") == "1"
per_class, layers = (10, [2, 4, None]) if QUICK else (40, [1, 2, 3, 4, None])

fashion = load_fashion_mnist(subset="train")
rng = np.random.RandomState(0)
idx = np.concatenate([rng.choice(np.flatnonzero(fashion.target == c), per_class, replace=False) for c in range(10)])
X, y = fashion.data[idx], fashion.target[idx]
test = load_fashion_mnist(subset="test")
X_test, y_test = test.data[:500], test.target[:500]

candidates = [("timm/tf_efficientnet_lite0", layer) if layer is not None else "timm/tf_efficientnet_lite0"
              for layer in layers]
selector = BackboneSelector(candidates, metric="logme", confirm_top_k=len(candidates), cv=3,
                            extractor_params={"image_size": 32}, cache=True)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    selector.fit(X, y)

ranking = selector.ranking_
print(ranking[["candidate", "layer", "score", "probe_score", "embed_seconds", "score_seconds", "probe_seconds",
               "error"]]
      .to_string(index=False, float_format="{:.3f}".format))
print(f"\nchosen: {selector.best_candidate_}; accuracy of its refit probe on 500 test images: "
      f"{selector.score(X_test, y_test):.3f}")

# %%
# Score against probe accuracy
# ----------------------------
# A good score puts the candidates in the order of the probe's accuracy.
# Computing LogME on embeddings takes milliseconds; the probe's
# cross-validation takes longer, and much longer for a fine-tuning probe.
ok = ranking[ranking["error"].isna()]
by_score = ok["candidate"].tolist()
by_probe = ok.sort_values("probe_score", ascending=False)["candidate"].tolist()
print("order by LogME:          ", by_score)
print("order by probe accuracy: ", by_probe)

fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(ok["score"], ok["probe_score"], s=60, color="#4c72b0")
for _, row in ok.iterrows():
    label = "final embedding" if pd.isna(row["layer"]) else f"layer {int(row['layer'])}"
    ax.annotate(label, (row["score"], row["probe_score"]), textcoords="offset points", xytext=(6, 4))
ax.set_xlabel("LogME score (no training)")
ax.set_ylabel("3-fold CV accuracy of a logistic-regression probe")
ax.set_title(f"EfficientNet-Lite0 stages on Fashion-MNIST, {per_class} images per class", fontsize=10)
ax.grid(True, alpha=0.3)
fig.tight_layout()
plt.show()
