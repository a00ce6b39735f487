"""
Domain shift: frozen embeddings with and without adaptation
===========================================================

A model trained on one kind of image (the *source* domain) often meets
another at prediction time (the *target* domain): other lighting, another
camera. When unlabelled target images are available at training time,
:class:`~sktransfer.adaptation.EmbeddingDAClassifier` aligns the frozen
embeddings of both domains (CORAL, subspace alignment, optimal transport,
importance weights: the adapters of ``sktransfer.adaptation.ADAPTERS``)
before the classifier is trained on the labelled source rows.

Here the source is half of scikit-learn's handwritten digits, with labels;
the target is the other half, darkened, without labels. The backbone is
EfficientNet-Lite0 at 32 px.
"""

# %%
# Source and target
# -----------------
# ``SKTRANSFER_DOCS_QUICK=1`` (set by ``make docs``) uses 120 images of
# each domain so that the page builds in about a minute on a 2-core CPU;
# without it, all of each half (about 900 images).
import os
import tempfile
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from sktransfer import PretrainedFeatureExtractor
from sktransfer.adaptation import EmbeddingDAClassifier

QUICK = os.environ.get("SKTRANSFER_DOCS_QUICK") == "1"
n_per_domain = 120 if QUICK else None

digits = load_digits()
images = (digits.images * 16).clip(0, 255).astype(np.uint8)  # 8x8 uint8 pictures
perm = np.random.RandomState(0).permutation(len(images))
source, target = perm[: len(perm) // 2][:n_per_domain], perm[len(perm) // 2:][:n_per_domain]
X_source, y_source = images[source], digits.target[source]
X_target = (images[target] * 0.35).round().astype(np.uint8)  # darkened: the shift
y_target = digits.target[target]  # only to measure accuracy, never to fit
print(f"{len(X_source)} labelled source images, {len(X_target)} unlabelled target images (darkened x0.35)")

fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
for j in range(8):
    axes[0, j].imshow(X_source[j], cmap="gray", vmin=0, vmax=255)
    axes[1, j].imshow(X_target[j], cmap="gray", vmin=0, vmax=255)
for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([])
axes[0, 0].set_ylabel("source")
axes[1, 0].set_ylabel("target")
fig.tight_layout()

# %%
# With and without adaptation
# ---------------------------
# ``adapter=None`` is the baseline: the same scaler and classifier on the
# same embeddings, with no alignment. Every arm shares one embedding cache,
# so the images go through the backbone once. The target images are given
# to ``fit`` as ``X_target``, without labels; accuracy is then measured on
# those same target images (the usual transductive protocol). CORAL and
# subspace alignment cope with fewer rows than embedding dimensions (1280
# here); ``adapter="linear_ot"`` would refuse these sizes with an error
# that says so, unless given regularisation through ``adapter_params``.
cache_dir = tempfile.mkdtemp(prefix="sktransfer-gallery-da-")
arms = {"no adaptation": None, "CORAL": "coral", "subspace alignment": "subspace"}
accuracy = {}
for name, adapter in arms.items():
    clf = EmbeddingDAClassifier(
        PretrainedFeatureExtractor("timm/tf_efficientnet_lite0", image_size=32, cache=cache_dir),
        adapter=adapter,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_source, y_source, X_target=X_target)
    accuracy[name] = clf.score(X_target, y_target)
    print(f"{name:>20}: target accuracy {accuracy[name]:.3f}")

# What the source domain itself allows: the baseline on clean target images.
clean = EmbeddingDAClassifier(
    PretrainedFeatureExtractor("timm/tf_efficientnet_lite0", image_size=32, cache=cache_dir), adapter=None,
).fit(X_source, y_source, X_target=images[target])
no_shift = clean.score(images[target], y_target)
print(f"{'(no shift)':>20}: accuracy on the same target images, not darkened: {no_shift:.3f}")

# %%
# The dashed line is the unadapted model on the same target images before
# darkening: the gap to it is what the shift costs, and the bars show how
# much of it each adapter wins back without a single target label. How
# much each adapter recovers depends on the shift (see "Unsupervised domain
# adaptation" in the benchmark results), so a measurement on your own data
# is the guide.
# sphinx_gallery_thumbnail_number = 2
fig, ax = plt.subplots(figsize=(7, 3))
names = list(accuracy)
ax.barh(names[::-1], [accuracy[n] for n in names[::-1]],
        color=["#4c72b0"] * (len(names) - 1) + ["#999999"])
ax.axvline(no_shift, color="black", linestyle="--", linewidth=1)
ax.text(no_shift, -0.6, " no shift", va="bottom")
ax.set_xlim(0, 1)
ax.set_xlabel("accuracy on the darkened target images")
fig.tight_layout()
plt.show()
