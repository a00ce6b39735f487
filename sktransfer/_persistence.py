"""Saved estimators: one manifest of digests, and the checks every ``load`` runs.

Every estimator's ``save`` writes its files (safetensors, JSON, skops) and
then :func:`write_manifest`; every ``load`` goes through
:func:`read_saved_config`, :func:`build_estimator` and
:func:`load_tensors` / :func:`check_state_fits`, so that a flipped byte, an
edited config, a missing file or a save that does not fit the model it is
loaded into is refused with an error that names the file, never loaded
silently and never a raw traceback from deep inside torch.

The manifest is tamper *evidence* against corruption and accidental edits,
not a signature: whoever can rewrite the files can rewrite the manifest.
Loading never unpickles and never runs code from the save (tensors come from
safetensors, parameters from JSON, sklearn heads from skops' trusted types).
"""

import hashlib
import json
import os
import warnings

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


class SaveIntegrityError(ValueError):
    """A saved estimator's files are corrupt, edited or inconsistent."""


class UnverifiedSaveWarning(UserWarning):
    """A save has no manifest (written before sktransfer kept one), so its files can't be verified."""


def _sha256(path):
    # hashlib.file_digest needs Python 3.11; the package supports 3.10.
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(path, files, estimator):
    """Write ``manifest.json`` in ``path``: the SHA-256 and size of each of ``files``.

    Called last by every ``save``, after the files it lists are complete.
    """
    from . import __version__

    entries = {}
    for name in files:
        full = os.path.join(path, name)
        entries[name] = {"sha256": _sha256(full), "bytes": os.path.getsize(full)}
    manifest = {
        "format": "sktransfer-save",
        "format_version": FORMAT_VERSION,
        "sktransfer_version": __version__,
        "estimator": estimator,
        "files": entries,
    }
    with open(os.path.join(path, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)


def _missing(path, name):
    return FileNotFoundError(
        f"{name!r} is missing from the saved estimator in {str(path)!r} "
        f"(it holds: {sorted(os.listdir(path))}). Copy the whole directory that save() wrote."
    )


def read_json(path, name):
    """The JSON file ``name`` of the save in ``path``; errors name the file."""
    full = os.path.join(path, name)
    if not os.path.isfile(full):
        raise _missing(path, name)
    try:
        with open(full, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SaveIntegrityError(
            f"{full!r} is not valid JSON (truncated or edited?): {exc}. Save the estimator again."
        ) from exc


def verify_save(path, stacklevel=2):
    """Check the files of the save in ``path`` against its manifest, before anything is read.

    Each file the manifest lists must exist and have the recorded SHA-256.
    Returns the names it lists, or None for a save without a manifest
    (older than the manifest), which loads with an
    :class:`UnverifiedSaveWarning`.
    """
    path = str(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No saved estimator at {path!r}: the directory does not exist.")
    if not os.path.exists(os.path.join(path, MANIFEST)):
        warnings.warn(
            f"{path!r} has no {MANIFEST}: it was saved before sktransfer kept one, so its files can't be "
            "checked for corruption or edits. Save the loaded estimator again to add one.",
            UnverifiedSaveWarning,
            stacklevel=stacklevel + 1,
        )
        return None
    manifest = read_json(path, MANIFEST)
    manifest_file = os.path.join(path, MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise SaveIntegrityError(f"{manifest_file!r} is not an sktransfer manifest (no 'files' table).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SaveIntegrityError(
            f"{path!r} was saved in format version {version!r} by sktransfer "
            f"{manifest.get('sktransfer_version')!r}; this sktransfer reads up to version {FORMAT_VERSION}. "
            "Upgrade sktransfer to load it."
        )
    listed = manifest["files"]
    for name, entry in listed.items():
        full = os.path.join(path, name)
        if os.path.basename(name) != name or name == MANIFEST:
            raise SaveIntegrityError(f"{manifest_file!r} lists {name!r}, which is not a file of the save.")
        if not os.path.isfile(full):
            raise _missing(path, name)
        digest = _sha256(full)
        recorded = entry.get("sha256") if isinstance(entry, dict) else None
        if digest != recorded:
            raise SaveIntegrityError(
                f"{full!r} does not match the SHA-256 recorded in {MANIFEST} when it was saved "
                f"(now {digest[:16]}..., recorded {str(recorded)[:16]}...): the file is corrupt or was "
                "edited. Refusing to load it; save the estimator again."
            )
    return set(listed)


def read_saved_config(path, cls, files, stacklevel=2):
    """Verify the save in ``path`` and return its ``config.json``, checked to hold a ``cls``.

    ``files`` are the names ``cls`` needs: each must exist and, in a save
    with a manifest, be listed in it. ``stacklevel`` points a warning at the
    caller's caller (the user's ``load``).
    """
    listed = verify_save(path, stacklevel + 1)
    config = os.path.join(str(path), "config.json")

    def check_listed(name):
        if listed is not None and name not in listed:
            raise SaveIntegrityError(
                f"{os.path.join(str(path), MANIFEST)!r} does not list {name!r}: the save is incomplete or was edited."
            )

    check_listed("config.json")
    meta = read_json(path, "config.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
        raise SaveIntegrityError(f"{config!r} has no 'params' table: not an sktransfer save.")
    if meta.get("class") != cls.__name__:
        raise ValueError(f"{str(path)!r} holds a {meta.get('class')}, not a {cls.__name__}.")
    for name in files:
        if not os.path.isfile(os.path.join(str(path), name)):
            raise _missing(path, name)
        check_listed(name)
    return meta


def build_estimator(cls, params, path, legacy=None):
    """``cls(**params)`` from a saved config, its parameters validated as ``fit`` would.

    ``legacy`` fills in parameters the save predates. Unknown, missing or
    invalid parameters raise a :class:`SaveIntegrityError` naming the file.
    """
    config = os.path.join(str(path), "config.json")
    params = dict(params)
    if legacy is not None:
        params = legacy(cls, params)
    names = set(cls._get_param_names())
    unknown, absent = sorted(set(params) - names), sorted(names - set(params))
    if unknown or absent:
        what = "; ".join(
            part for part in (
                f"unknown parameters {unknown}" if unknown else "",
                f"no value for {absent}" if absent else "",
            ) if part
        )
        raise SaveIntegrityError(f"{config!r} does not fit {cls.__name__}: {what}. The file was edited or is damaged.")
    est = cls(**params)
    try:
        est._check_params()
        _check_model_params(params)
    except (ValueError, TypeError) as exc:
        raise SaveIntegrityError(f"{config!r} holds an invalid parameter: {exc}") from exc
    return est


def _check_model_params(params):
    """The parameters ``fit`` checks only when it loads the backbone or tokenizes, checked up front.

    A save always names its backbone (``save`` refuses a module); the device
    must parse, not be present here (a model saved on a GPU may be loaded
    where there is none: ``load`` then says so).
    """
    import torch

    backbone = params.get("backbone")
    if not isinstance(backbone, str) or not backbone.strip():
        raise ValueError(f"backbone must be a model name or path, got {backbone!r}")
    if "pooling" in params and params["pooling"] not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls', got {params['pooling']!r}")
    device = params.get("device")
    if device is not None and device != "auto":
        try:
            if not isinstance(device, str):
                raise TypeError
            torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"device must be 'auto', None or a torch device name such as 'cpu' or 'cuda:0', got {device!r}") from None
    max_length = params.get("max_length")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be None or a positive integer, got {max_length!r}")
    if "target_modules" in params:
        targets = params["target_modules"]
        if not (isinstance(targets, str) and targets) and not (
            isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) and t for t in targets)
        ):
            raise ValueError(f"target_modules must be 'auto', a regex or a list of layer names, got {targets!r}")


def load_tensors(path, name):
    """The tensors of safetensors file ``name`` in ``path``; a damaged file is named."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    full = os.path.join(str(path), name)
    if not os.path.isfile(full):
        raise _missing(path, name)
    try:
        return load_file(full)
    except (SafetensorError, OSError, ValueError) as exc:
        raise SaveIntegrityError(f"{full!r} is not a readable safetensors file (truncated or edited?): {exc}") from exc


def check_state_fits(expected, loaded, path, name, describe):
    """Refuse tensors that do not fit the module rebuilt from the config.

    ``expected`` is the rebuilt module's state (name → tensor), ``loaded``
    the file's; ``describe`` says what the config asked for (classes,
    backbone), so that the error names what differs.
    """
    full = os.path.join(str(path), name)
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    shapes = [
        f"{k}: {tuple(loaded[k].shape)} in the file, {tuple(expected[k].shape)} expected"
        for k in sorted(set(expected) & set(loaded))
        if tuple(loaded[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} tensors differ in shape ({'; '.join(shapes[:3])})")
    if missing:
        parts.append(f"{len(missing)} tensors are missing (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors are not in the model (e.g. {unexpected[:3]})")
    raise SaveIntegrityError(
        f"{full!r} does not fit the model that config.json describes ({describe}): {', '.join(parts)}. "
        "The weights were saved from another model (another backbone or class count) or the config was edited."
    )


def check_classes(classes, config):
    """``classes`` from a saved config as an array: two or more distinct labels, all strings or all numbers."""
    import numbers

    import numpy as np

    def kind(v):
        if isinstance(v, str):
            return "str"
        if isinstance(v, numbers.Number) and not isinstance(v, bool) and np.isfinite(v):
            return "number"
        return None

    if not isinstance(classes, list) or len(classes) < 2:
        raise SaveIntegrityError(f"{config!r}: 'classes' must be a list of two or more labels, got {classes!r}.")
    kinds = {kind(v) for v in classes}
    if None in kinds or len(kinds) != 1:
        raise SaveIntegrityError(
            f"{config!r}: 'classes' must be all strings or all finite numbers, got {classes!r}."
        )
    arr = np.asarray(classes)
    if len(np.unique(arr)) != len(arr):
        raise SaveIntegrityError(f"{config!r}: 'classes' lists a label twice: {classes!r}.")
    return arr


def check_regression_state(n_outputs, y_1d, y_mean, y_scale, config):
    """A regressor's saved target scaling: ``n_outputs`` finite means and positive scales."""
    import numpy as np

    if isinstance(n_outputs, bool) or not isinstance(n_outputs, int) or n_outputs < 1:
        raise SaveIntegrityError(f"{config!r}: 'n_outputs' must be a positive integer, got {n_outputs!r}.")
    if not isinstance(y_1d, bool) or (y_1d and n_outputs != 1):
        raise SaveIntegrityError(f"{config!r}: 'y_1d' must be true or false (true only with one output), got {y_1d!r}.")
    out = []
    for name, values, positive in (("y_mean", y_mean, False), ("y_scale", y_scale, True)):
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (n_outputs,) or not np.isfinite(arr).all() or (positive and not (arr > 0).all()):
            raise SaveIntegrityError(
                f"{config!r}: {name!r} must list {n_outputs} finite{' positive' if positive else ''} numbers, got {values!r}."
            )
        out.append(arr)
    return out
