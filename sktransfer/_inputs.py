"""Validation and decoding of text and image inputs.

Every error names the row (and the file, for paths) so that a user can find
the bad input in a dataset of thousands.
"""

import hashlib
import io
import numbers
import os
import warnings
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


def _check_unicode(text, row):
    """Lone surrogates (from ``errors="surrogateescape"`` or broken JSON) crash tokenizers."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"Row {row} of X contains a lone surrogate ({text[exc.start]!r} at position {exc.start}), "
            "which is not valid Unicode and can't be tokenized. Clean the text first, e.g. "
            "text.encode('utf-8', errors='replace').decode('utf-8')."
        ) from None


def _warn_if_image_paths(texts):
    """A text backbone would embed image paths as strings: say so.

    Cheap: file names are checked (a string suffix) for every row before
    any file system call, and real texts fail that check at once.
    """
    for t in texts:
        if len(t) > 4096 or os.path.splitext(t)[1].lower() not in _IMAGE_SUFFIXES:
            return
    if all(os.path.isfile(os.path.expanduser(t)) for t in texts):
        warnings.warn(
            f"All {len(texts)} rows of X are paths to image files (e.g. {texts[0]!r}), but this backbone "
            "embeds text: the paths themselves are embedded as strings. Use an image backbone "
            "(e.g. 'timm/...') to embed the images.",
            UserWarning,
            stacklevel=4,
        )


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
        _check_unicode(t, i)
        out.append(t)
    _warn_if_image_paths(out)
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
        if (
            rows.ndim == 4
            and rows.shape[3] not in (1, 3, 4)
            and rows.shape[1] in (1, 3, 4)
            and min(rows.shape[2:]) > 4
        ):
            raise ValueError(
                f"X is an image stack of shape {rows.shape}, which looks channels-first (N×C×H×W); "
                "expected N×H×W×C. Transpose it: np.moveaxis(X, 1, -1)."
            )
        rows = list(rows)
    if len(rows) == 0:
        raise ValueError("X is empty: at least one image is needed.")
    items = []
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
            items.append(os.path.expanduser(obj))
        elif _is_pil(obj):
            _check_not_empty(obj.size[::-1], i)
            items.append(obj)
        elif isinstance(obj, np.ndarray):
            if obj.ndim not in (2, 3):
                raise ValueError(
                    f"Row {i} of X is an array of shape {obj.shape}; a single image must be H×W or H×W×C."
                )
            _check_not_empty(obj.shape[:2], i)
            _check_channels(obj.shape, i)
            items.append(obj)
        else:
            raise ValueError(
                f"Row {i} of X is a {type(obj).__name__}; expected an image path, a PIL image or an array."
            )
    return items


def check_image_headers(items):
    """Open the header of every image file among ``items`` (no decoding): a file that is not an
    image fails now, naming its row, not when its batch is read in the middle of training."""
    from PIL import Image, UnidentifiedImageError

    for row, item in enumerate(items):
        if not isinstance(item, str):
            continue
        try:
            with Image.open(item) as img:
                img.size  # noqa: B018 - the header is read by open
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise ValueError(
                f"Row {row} of X: cannot read image file {item!r}: it is corrupt, truncated or not an image ({exc})."
            ) from exc


def _check_not_empty(hw, row):
    if hw[0] == 0 or hw[1] == 0:
        raise ValueError(
            f"Row {row} of X: the image is empty ({hw[0]}×{hw[1]} pixels, no pixels to embed). "
            "Drop it, or replace it with a real image."
        )


def _check_channels(shape, row):
    if len(shape) != 3 or shape[2] in (1, 3, 4):
        return
    if shape[0] in (1, 3, 4) and min(shape[1:]) > 4:
        raise ValueError(
            f"Row {row} of X: image array of shape {shape} looks channels-first (C×H×W); expected "
            "H×W×C. Transpose it: np.moveaxis(a, 0, -1)."
        )
    raise ValueError(
        f"Row {row} of X: image array of shape {shape} has {shape[2]} channels; expected 1, 3 or 4 "
        "(H×W×C, channels last)."
    )


def image_digest(item):
    """Content hash of one image: what the model sees, as cheaply as possible.

    A file: its bytes (not its path). An array: dtype, shape and bytes. A
    palette (``P``/``PA``) image: its decoded RGB pixels, as :func:`to_rgb`
    gives them (its bytes are only indices). Another PIL image: mode, size,
    bytes and ``info["transparency"]``.
    """
    h = hashlib.sha256()
    if isinstance(item, str):
        h.update(b"file\0")
        with open(item, "rb") as f:
            h.update(f.read())
    elif isinstance(item, np.ndarray):
        a = np.ascontiguousarray(item)
        h.update(f"array\0{a.dtype.str}\0{a.shape}".encode())
        h.update(a.tobytes())
    elif item.mode in ("P", "PA"):
        # The bytes are indices into a palette (with transparency, maybe)
        # whose in-memory form PIL rewrites lazily (an RGB palette becomes
        # RGBA after a conversion): hash the decoded pixels the model sees.
        rgb = to_rgb(item, 0)
        h.update(f"pil-rgb\0{rgb.size}".encode())
        h.update(rgb.tobytes())
    else:  # PIL
        h.update(f"pil\0{item.mode}\0{item.size}".encode())
        h.update(item.tobytes())
        if "transparency" in item.info:
            h.update(f"\0transparency\0{item.info['transparency']!r}".encode())
    return h.hexdigest()


def text_digest(text):
    return hashlib.sha256(b"text\0" + text.encode("utf-8", "surrogatepass")).hexdigest()


def _array_to_pil(a, row):
    from PIL import Image

    _check_not_empty(a.shape[:2], row)
    _check_channels(a.shape, row)
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
    _check_not_empty(img.size[::-1], row)
    if img.mode == "RGBA" or (img.mode == "P" and "transparency" in img.info):
        # On a copy: converting a palette image rewrites its palette in place.
        img = (img.copy() if img is item else img).convert("RGBA")
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
