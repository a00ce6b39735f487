"""Validation and decoding of text and image inputs.

Every error names the row (and the file, for paths) so that a user can find
the bad input in a dataset of thousands.
"""

import hashlib
import io
import numbers
import os
from pathlib import Path

import numpy as np

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _is_pil(obj):
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def _is_missing(obj):
    if obj is None:
        return True
    if isinstance(obj, float) and np.isnan(obj):
        return True
    try:
        import pandas as pd

        return obj is pd.NA or obj is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def as_rows(X, what="X"):
    """Turn list / array / Series / one-column DataFrame into a list of rows.

    A single ndarray of numbers is returned as is (a stack of images).
    """
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise ValueError(
                f"{what} is a DataFrame with {X.shape[1]} columns {list(X.columns)[:5]}; pass the one "
                "column to embed (in a ColumnTransformer, select it by name)."
            )
        return list(X.iloc[:, 0])
    if pd is not None and isinstance(X, pd.Series):
        return list(X)
    if isinstance(X, np.ndarray):
        if X.dtype.kind in "OUS":
            if X.ndim == 2 and X.shape[1] == 1:
                return list(X[:, 0])
            if X.ndim == 1:
                return list(X)
            raise ValueError(f"{what} is a {X.ndim}-D array of objects with shape {X.shape}; expected one column.")
        return X
    if isinstance(X, (str, bytes)) or _is_pil(X) or isinstance(X, Path):
        raise ValueError(
            f"{what} must be a sequence of inputs (one per row), got a single {type(X).__name__}. "
            "Wrap it in a list."
        )
    if X is None:
        raise ValueError(f"{what} is None; expected a list of texts or images.")
    try:
        return list(X)
    except TypeError:
        raise ValueError(f"{what} must be a list, array, Series or DataFrame, got {type(X).__name__}.") from None


def _kind(obj):
    if isinstance(obj, str):
        return "str"
    if isinstance(obj, Path):
        return "path"
    if _is_pil(obj) or isinstance(obj, np.ndarray):
        return "image"
    return None


def check_texts(X):
    """Validate text input; return a list of str."""
    rows = as_rows(X)
    if isinstance(rows, np.ndarray):
        raise ValueError(
            f"Expected text, got a numeric array of shape {rows.shape}. This backbone embeds text: "
            "pass a list, Series or one-column DataFrame of strings."
        )
    if len(rows) == 0:
        raise ValueError("X is empty: at least one text is needed.")
    out = []
    for i, t in enumerate(rows):
        if _is_missing(t):
            raise ValueError(f"Row {i} of X is missing (None/NaN). Drop or fill missing texts before embedding.")
        if isinstance(t, np.str_):
            t = str(t)
        if not isinstance(t, str):
            if _is_pil(t) or isinstance(t, np.ndarray):
                raise ValueError(
                    f"Row {i} of X is an image but this backbone embeds text: X mixes text and images, "
                    "or the wrong backbone was chosen."
                )
            raise ValueError(f"Row {i} of X is a {type(t).__name__} ({t!r:.40}), not a str. Convert the column to text first.")
        out.append(t)
    return out


def check_images(X):
    """Validate image input cheaply (no decoding); return a list of items.

    Items are paths (str), PIL images or single-image arrays. A stacked
    ``N×H×W`` or ``N×H×W×C`` array is split into its images.
    """
    rows = as_rows(X)
    if isinstance(rows, np.ndarray):
        if rows.ndim not in (3, 4):
            raise ValueError(
                f"A stacked image array must be N×H×W or N×H×W×C, got shape {rows.shape} "
                f"({rows.ndim}-D). For a list of single images, pass a list."
            )
        if rows.shape[0] == 0:
            raise ValueError("X is empty: at least one image is needed.")
        rows = list(rows)
    if len(rows) == 0:
        raise ValueError("X is empty: at least one image is needed.")
    items = []
    kinds = set()
    for i, obj in enumerate(rows):
        if _is_missing(obj):
            raise ValueError(f"Row {i} of X is missing (None/NaN); expected an image or an image path.")
        if isinstance(obj, Path):
            obj = str(obj)
        if isinstance(obj, np.str_):
            obj = str(obj)
        if isinstance(obj, str):
            if not os.path.isfile(os.path.expanduser(obj)):
                looks_like_path = Path(obj).suffix.lower() in _IMAGE_SUFFIXES or os.sep in obj
                if looks_like_path:
                    raise FileNotFoundError(f"Row {i} of X: image file not found: {obj!r}.")
                raise ValueError(
                    f"Row {i} of X is text ({obj!r:.40}) but this backbone embeds images: "
                    "X mixes text and images, or the wrong backbone was chosen."
                )
            kinds.add("path")
            items.append(os.path.expanduser(obj))
        elif _is_pil(obj):
            kinds.add("image")
            items.append(obj)
        elif isinstance(obj, np.ndarray):
            if obj.ndim not in (2, 3):
                raise ValueError(
                    f"Row {i} of X is an array of shape {obj.shape}; a single image must be H×W or H×W×C."
                )
            kinds.add("image")
            items.append(obj)
        else:
            raise ValueError(
                f"Row {i} of X is a {type(obj).__name__}; expected an image path, a PIL image or an array."
            )
    return items


def image_digest(item):
    """Content hash of one image: the file's bytes (not its path), or its pixels."""
    h = hashlib.sha256()
    if isinstance(item, str):
        h.update(b"file\0")
        with open(item, "rb") as f:
            h.update(f.read())
    elif isinstance(item, np.ndarray):
        a = np.ascontiguousarray(item)
        h.update(f"array\0{a.dtype.str}\0{a.shape}".encode())
        h.update(a.tobytes())
    else:  # PIL
        h.update(f"pil\0{item.mode}\0{item.size}".encode())
        h.update(item.tobytes())
    return h.hexdigest()


def text_digest(text):
    return hashlib.sha256(b"text\0" + text.encode("utf-8", "surrogatepass")).hexdigest()


def _array_to_pil(a, row):
    from PIL import Image

    if a.ndim == 3 and a.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"Row {row} of X: image array of shape {a.shape} has {a.shape[2]} channels; expected 1, 3 or 4 "
            "(H×W×C, channels last)."
        )
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.bool_:
        raise ValueError(f"Row {row} of X: boolean image arrays are ambiguous; convert to uint8 (0-255).")
    elif a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"Row {row} of X: float image contains NaN or inf.")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"Row {row} of X: float image values must lie in [0, 1], got range [{lo:g}, {hi:g}]. "
                "Divide 0-255 data by 255, or pass uint8."
            )
        a = np.round(a * 255.0).astype(np.uint8)
    elif a.dtype.kind in "iu":
        lo, hi = int(a.min()), int(a.max())
        if a.dtype.itemsize > 1 and (lo < 0 or hi > 255):
            raise ValueError(
                f"Row {row} of X: {a.dtype} image with values in [{lo}, {hi}] is out of the 8-bit range "
                "(a 16-bit image?). Scale it to 0-255 explicitly, e.g. (img / 257).astype(np.uint8)."
            )
        a = a.astype(np.uint8)
    else:
        raise ValueError(f"Row {row} of X: unsupported image dtype {a.dtype}.")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(a))


def to_rgb(item, row):
    """Decode one validated item into an RGB PIL image."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, str):
        try:
            with open(item, "rb") as f:
                data = f.read()
            img = Image.open(io.BytesIO(data))
            img.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"Row {row} of X: cannot read image file {item!r}: it is corrupt, truncated or not an image ({exc}).") from exc
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(img)
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError(
                    f"Row {row} of X: image file {item!r} is {img.mode} (16-bit or float) with values up to "
                    f"{arr.max()}; convert it to 8-bit first."
                )
            img = Image.fromarray(arr.astype(np.uint8))
    elif isinstance(item, np.ndarray):
        img = _array_to_pil(item, row)
    else:
        img = item
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return to_rgb(np.asarray(img), row)
    if img.mode == "RGBA" or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def check_in_range_int(value, name, low, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}.")
    return int(value)
