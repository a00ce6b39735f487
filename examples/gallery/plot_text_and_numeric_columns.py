"""
A text column next to numeric columns, into XGBoost
===================================================

A table often holds free text beside numbers. Here each BBC News article
(:func:`sktransfer.datasets.load_bbc_news`) is a row of a DataFrame with its
text and three numeric columns computed from it (number of words, of
paragraphs, of digits). A :class:`~sklearn.compose.ColumnTransformer` sends
the text column through :class:`~sktransfer.PretrainedFeatureExtractor`
(frozen MiniLM sentence embeddings) and passes the numeric columns through;
:class:`xgboost.XGBClassifier` learns the topic from both.

We compare three feature sets on the same split: the numeric columns alone,
the text embeddings alone, and both together.
"""

# %%
# The data
# --------
# ``SKTRANSFER_DOCS_QUICK=1`` (set by ``make docs``) keeps 200 articles so
# that the page builds in seconds; without it the whole corpus is used.
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder
from xgboost import XGBClassifier

from sktransfer import PretrainedFeatureExtractor
from sktransfer.datasets import load_bbc_news

QUICK = os.environ.get("SKTRANSFER_DOCS_QUICK") == "1"

texts, topics = load_bbc_news(return_X_y=True)
if QUICK:
    texts, topics = texts[:200], topics[:200]  # the loader shuffles (random_state=42)

df = pd.DataFrame({
    "text": list(texts),
    "n_words": [len(t.split()) for t in texts],
    "n_paragraphs": [t.count("\n\n") + 1 for t in texts],
    "n_digits": [sum(c.isdigit() for c in t) for t in texts],
})
y = LabelEncoder().fit_transform(topics)
df_train, df_test, y_train, y_test = train_test_split(df, y, test_size=0.3, stratify=y, random_state=0)
print(f"{len(df_train)} training and {len(df_test)} test articles, {len(set(y))} topics")
df.head(3)

# %%
# Three pipelines
# ---------------
# The extractor is an ordinary transformer, so it takes a column of the
# ``ColumnTransformer`` like any other. ``cache=True`` keeps each article's
# embedding on disk: the second and third pipelines do not run the model
# again for articles the first one embedded.
NUMERIC = ["n_words", "n_paragraphs", "n_digits"]


def extractor():
    return PretrainedFeatureExtractor("sentence-transformers/all-MiniLM-L6-v2", max_length=128, cache=True)


def xgb():
    return XGBClassifier(n_estimators=150, max_depth=3, learning_rate=0.2, n_jobs=1, random_state=0)


feature_sets = {
    "numeric columns": ColumnTransformer([("num", "passthrough", NUMERIC)]),
    "text embeddings": ColumnTransformer([("text", extractor(), "text")]),
    "text + numeric": ColumnTransformer([("text", extractor(), "text"), ("num", "passthrough", NUMERIC)]),
}

scores = {}
for name, columns in feature_sets.items():
    t0 = time.perf_counter()
    model = make_pipeline(columns, xgb()).fit(df_train, y_train)
    scores[name] = accuracy_score(y_test, model.predict(df_test))
    print(f"{name:>16}: test accuracy {scores[name]:.3f}  ({time.perf_counter() - t0:.1f} s)")

# %%
# The text carries the topic: the embeddings alone do far better than the
# numeric columns alone. The numeric columns here are computed from the
# text itself (mostly its length), so they add no information the
# embeddings lack, and beside them they may cost a few points on a small
# training set (three more columns for XGBoost to split on). Columns that
# hold information the text does not (a price, a date, a user's history)
# are where the combination pays.
diff = scores["text + numeric"] - scores["text embeddings"]
print(f"text + numeric vs text alone: {100 * diff:+.1f} points on {len(df_test)} test articles")
fig, ax = plt.subplots(figsize=(6, 3))
names = list(scores)
ax.barh(names, [scores[n] for n in names], color=["#999999", "#4c72b0", "#55a868"])
for i, n in enumerate(names):
    ax.text(scores[n] + 0.01, i, f"{scores[n]:.3f}", va="center")
ax.set_xlim(0, 1.1)
ax.set_xlabel("test accuracy")
ax.set_title(f"BBC News topics, XGBoost, {len(df_train)} training articles")
fig.tight_layout()
plt.show()
