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
   draw happen on a copy of the global torch state (the CPU generator, and
   the CUDA generator of the device the fit uses, never the others), restored
   afterwards.
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


def _cuda_index(device):
    """The CUDA device index of ``device`` (None: not a CUDA device)."""
    if device is None:
        return None
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type != "cuda":
        return None
    return dev.index if dev.index is not None else torch.cuda.current_device()


@contextlib.contextmanager
def isolated_torch_rng(device=None):
    """Run the block on a copy of torch's global generators.

    The CPU generator is always forked; a CUDA generator only where the fit
    uses it: ``device`` is the fit's device (``"cpu"``: no CUDA generator,
    so a CPU fit never initialises CUDA on a GPU machine; ``"cuda:1"``: that
    device's). ``None`` (a caller that does not know the device) forks the
    CUDA generators only when CUDA is already initialised, never
    initialising it.
    """
    index = _cuda_index(device)
    if index is not None:
        devices = [index]
    elif device is None and torch.cuda.is_available() and torch.cuda.is_initialized():
        devices = list(range(torch.cuda.device_count()))
    else:
        devices = []
    with torch.random.fork_rng(devices=devices):
        yield


def seed_torch(seed, device=None):
    """Seed torch's CPU generator and, for a CUDA ``device``, that device's generator only.

    Not ``torch.manual_seed``: it seeds every CUDA device too (queued until
    CUDA initialises, so a CPU fit would reseed the user's later CUDA work),
    outside what :func:`isolated_torch_rng` forked.
    """
    torch.default_generator.manual_seed(int(seed))
    index = _cuda_index(device)
    if index is not None:
        with torch.cuda.device(index):
            torch.cuda.manual_seed(int(seed))


def data_generator(seed):
    """The DataLoader's own generator (shuffling order), seeded apart from torch's global one."""
    return torch.Generator().manual_seed(int(seed) + 1)
