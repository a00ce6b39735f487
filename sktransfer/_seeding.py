"""Randomness of a fit: one concrete seed, drawn once, used everywhere.

Every estimator that trains follows the same three rules:

1. **One seed per fit.** ``random_state=None`` draws a concrete seed from
   the operating system's entropy (never from numpy's or torch's global
   generators, which are the user's), and that one seed then drives the
   weight init, the shuffling, the validation split, augmentation and any
   later pass over the same rows (WiSE-FT's BatchNorm recalibration), so the
   parts of one fit agree with each other.
2. **The user's generators stay as they were.** Training runs inside
   :func:`isolated_torch_rng` (``torch.random.fork_rng``): seeding and every
   draw happen on a copy of the global torch state, restored afterwards.
3. **Load before seeding.** The first load of a backbone in a process builds
   the model with random init before reading its weights; seeding after the
   load makes the first fit of a process the same as every later one.
"""

import contextlib
import secrets

import torch

from ._utils import check_random_state_int


def fit_seed(random_state):
    """A concrete int seed for one fit (``None``: fresh from OS entropy)."""
    seed = check_random_state_int(random_state)
    if seed is None:
        seed = secrets.randbelow(2**31 - 1)
    return int(seed)


@contextlib.contextmanager
def isolated_torch_rng():
    """Run the block on a copy of torch's global generators (CPU and every CUDA device)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield


def data_generator(seed):
    """The DataLoader's own generator (shuffling order), seeded apart from torch's global one."""
    return torch.Generator().manual_seed(int(seed) + 1)
