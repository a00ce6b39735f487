"""
Images from a folder of files
=============================

Image data often arrives as files on disk, one folder per class
(``root/<class>/<file>.png``, the layout of torchvision's ``ImageFolder``).
:class:`~sktransfer.PretrainedFeatureExtractor` reads file paths directly:
a list of paths is ``X``, and the folder names are ``y``. No data loader,
no tensors: the pipeline below is plain scikit-learn.

Here we write a few Fashion-MNIST images
(:func:`sktransfer.datasets.load_fashion_mnist`) to a temporary folder as
PNG files, then embed them with a pretrained EfficientNet-Lite0 and fit a
logistic-regression probe on the embeddings, cross-validated.
"""

# %%
# A folder of PNG files
# ---------------------
# ``SKTRANSFER_DOCS_QUICK=1`` (set by ``make docs``) writes 8 images per
# class and embeds them at 32 px so that the page builds in well under a
# minute on a 2-core CPU; without it, 60 images per class at 64 px.
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatureExtractor
from sktransfer.datasets import load_fashion_mnist

QUICK = os.environ.get("SKTRANSFER_DOCS_QUICK") == "1"
per_class, image_size, n_folds = (8, 32, 4) if QUICK else (60, 64, 5)

fashion = load_fashion_mnist(subset="test")
root = Path(tempfile.mkdtemp(prefix="sktransfer-gallery-images-"))
rng = np.random.RandomState(0)
for code, name in enumerate(fashion.target_names):
    folder = root / name.replace("/", "-")  # "T-shirt/top" is not a folder name
    folder.mkdir()
    for i in rng.choice(np.flatnonzero(fashion.target == code), per_class, replace=False):
        Image.fromarray(fashion.data[i]).save(folder / f"{i:05d}.png")

# %%
# ``X`` is the list of paths and ``y`` the name of each file's folder. This
# is all the "loading" there is: the extractor opens each file when it
# embeds it (grayscale is turned into 3 channels and resized to the
# backbone's input size, with the backbone's own normalisation).
paths = sorted(str(p) for p in root.glob("*/*.png"))
labels = np.array([Path(p).parent.name for p in paths])
print(f"{len(paths)} PNG files in {len(set(labels))} folders of a temporary directory")
print("first paths:", *[os.path.relpath(p, root) for p in paths[:3]], sep="\n  ")

# %%
# A probe on the embeddings, cross-validated
# ------------------------------------------
# ``cache=True`` keeps each image's embedding on disk, keyed by the file's
# bytes (not its path), so the folds of the cross-validation, and a second
# run of this script, do not run the backbone again for the same image.
pipe = make_pipeline(
    PretrainedFeatureExtractor("timm/tf_efficientnet_lite0", image_size=image_size, cache=True),
    LogisticRegression(max_iter=2000),
)
cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=0)
predicted = cross_val_predict(pipe, paths, labels, cv=cv)
print(f"{n_folds}-fold cross-validated accuracy: {accuracy_score(labels, predicted):.3f} "
      f"(chance: {1 / len(set(labels)):.3f}; {per_class} images per class, {image_size} px)")

# %%
# Where the probe goes wrong: each row is a true class, each column the
# class the probe gave. On Fashion-MNIST the upper-body garments (T-shirt,
# shirt, pullover, coat) are the usual suspects.
fig, ax = plt.subplots(figsize=(7, 6))
ConfusionMatrixDisplay.from_predictions(labels, predicted, ax=ax, xticks_rotation=60, colorbar=False)
ax.set_title(f"Cross-validated predictions, {len(paths)} PNG files")
fig.tight_layout()

# %%
# A few files with the class the probe gave them (red: wrong).
shown = rng.choice(len(paths), 10, replace=False)
fig, axes = plt.subplots(2, 5, figsize=(8, 3.8))
for ax, i in zip(axes.ravel(), shown):
    ax.imshow(Image.open(paths[i]), cmap="gray")
    ax.set_title(f"{Path(paths[i]).name}\n{predicted[i]}", fontsize=8,
                 color="black" if predicted[i] == labels[i] else "red")
    ax.axis("off")
fig.tight_layout()

# %%
# A file that is not an image
# ---------------------------
# A broken file fails with an error that names the row and the file, so
# that it can be found in a folder of thousands.
bad = root / "Bag" / "notes.png"
bad.write_text("this is not an image")
fitted = pipe.fit(paths, labels)
try:
    fitted.predict(paths[:2] + [str(bad)])
except (ValueError, OSError) as err:
    print(f"{type(err).__name__}: {str(err).replace(str(root), '<root>')}")
plt.show()
