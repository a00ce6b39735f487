"""
LoRA adapters: fit, save, load, predict the same
================================================

:class:`~sktransfer.LoRAClassifier` keeps the pretrained backbone frozen
and trains small low-rank adapters in its attention layers, plus a new
head. :meth:`~sktransfer.LoRAClassifier.save` writes only what trained
(adapters and head) with a checksum manifest;
:meth:`~sktransfer.LoRAClassifier.load` reloads the base model by name,
checks that its weights are the ones the adapter was trained on, and puts
the adapter back. One base model on disk can then serve many small
task adapters.

The task: the topic of BBC News articles
(:func:`sktransfer.datasets.load_bbc_news`), with all-MiniLM-L6-v2 as the
base.
"""

# %%
# Fit
# ---
# ``SKTRANSFER_DOCS_QUICK=1`` (set by ``make docs``) trains on 4 articles
# per topic for one epoch with 32-token windows and tests on 40 articles,
# so that the page builds in about a minute on a 2-core CPU (its accuracy
# is a smoke test); without it, 16 articles per topic, 3 epochs, 128
# tokens, 200 test articles. Only the start of each article is read
# (``max_length``), hence the truncation warnings are silenced.
import os
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from sktransfer import LoRAClassifier
from sktransfer.datasets import load_bbc_news

QUICK = os.environ.get("SKTRANSFER_DOCS_QUICK") == "1"
warnings.filterwarnings("ignore", message=".*longer than the model's limit.*")
per_topic, epochs, max_length, n_test = (4, 1, 32, 40) if QUICK else (16, 3, 128, 200)

texts, topics = load_bbc_news(return_X_y=True)  # shuffled by the loader
train = np.concatenate([np.flatnonzero(topics == t)[:per_topic] for t in np.unique(topics)])
test = np.setdiff1d(np.arange(len(topics)), train)[:n_test]
X_train, y_train = [texts[i] for i in train], topics[train]
X_test, y_test = [texts[i] for i in test], topics[test]

clf = LoRAClassifier("sentence-transformers/all-MiniLM-L6-v2", r=8, lr=1e-2, batch_size=8,
                     max_epochs=epochs, max_length=max_length, random_state=0)
t0 = time.perf_counter()
clf.fit(X_train, y_train)
print(f"fit on {len(X_train)} articles in {time.perf_counter() - t0:.0f} s")
predicted = clf.predict(X_test)
print(f"test accuracy {np.mean(predicted == y_test):.3f} on {len(X_test)} articles")
print(f"adapted layers: {len(clf.target_modules_)} ({', '.join(sorted(set(m.split('.')[-1] for m in clf.target_modules_)))}); "
      f"trainable parameters: {clf.trainable_params_:,} ({100 * clf.trainable_fraction_:.2f} % of the model)")

# %%
# Save and load
# -------------
# The directory holds the adapter tensors, the config and a manifest of
# SHA-256 checksums; the base model's weights are not in it.
save_dir = Path(tempfile.mkdtemp(prefix="sktransfer-gallery-lora-")) / "bbc-topics"
clf.save(save_dir)
files = {p.name: p.stat().st_size for p in sorted(save_dir.iterdir())}
for name, size in files.items():
    print(f"  {name:<22} {size / 1e3:9.1f} kB")

t0 = time.perf_counter()
loaded = LoRAClassifier.load(save_dir)
print(f"loaded in {time.perf_counter() - t0:.1f} s (the base model is loaded by name)")

# %%
# The loaded model predicts exactly what the fitted one did.
same_labels = np.array_equal(predicted, loaded.predict(X_test))
max_diff = np.abs(clf.predict_proba(X_test) - loaded.predict_proba(X_test)).max()
print(f"same predicted labels: {same_labels}; largest difference in predicted probabilities: {max_diff:.2e}")

# %%
# What is on disk, against what a fully fine-tuned copy would need (every
# weight of the model in float32, which
# :meth:`~sktransfer.FineTunedClassifier.save` writes): each new task costs
# one small adapter directory, not another copy of the model.
n_params = round(clf.trainable_params_ / clf.trainable_fraction_)
base_bytes = 4 * n_params
adapter_bytes = sum(files.values())
print(f"adapter directory {adapter_bytes / 1e6:.2f} MB vs all weights {base_bytes / 1e6:.1f} MB "
      f"({base_bytes / adapter_bytes:.0f}x)")

fig, ax = plt.subplots(figsize=(7, 2.4))
ax.barh(["LoRA save\n(adapters + head)", "full copy of the\nmodel weights"], [adapter_bytes / 1e6, base_bytes / 1e6],
        color=["#55a868", "#999999"])
ax.set_xscale("log")
ax.set_xlabel("MB on disk (log scale)")
for i, v in enumerate([adapter_bytes / 1e6, base_bytes / 1e6]):
    ax.text(v, i, f" {v:.2f} MB", va="center")
ax.set_xlim(right=base_bytes / 1e6 * 8)
fig.tight_layout()
plt.show()
