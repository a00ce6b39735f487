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

import json
import os
import warnings
from collections.abc import Mapping

import numpy as np

from ._utils import atomic_write_bytes, sha256_file

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# Key of config.json saying the save has a manifest: without it, a save that
# lost its manifest.json is refused, not loaded as an older, unverified save.
MANIFEST_MARKER = "manifest"


class SaveIntegrityError(ValueError):
    """A saved estimator's files are corrupt, edited or inconsistent."""


class UnverifiedSaveWarning(UserWarning):
    """A save has no manifest (written before sktransfer kept one), so its files can't be verified."""


def write_manifest(path, files, estimator):
    """Write ``manifest.json`` in ``path``: the SHA-256 and size of each of ``files``.

    Called last by every ``save``, after the files it lists are complete.
    """
    from . import __version__

    entries = {}
    for name in files:
        full = os.path.join(path, name)
        entries[name] = {"sha256": sha256_file(full), "bytes": os.path.getsize(full)}
    manifest = {
        "format": "sktransfer-save",
        "format_version": FORMAT_VERSION,
        "sktransfer_version": __version__,
        "estimator": estimator,
        "files": entries,
    }
    atomic_write_bytes(os.path.join(path, MANIFEST), json.dumps(manifest, indent=2).encode("utf-8"))


def write_config(path, meta):
    """Write ``config.json`` in ``path`` (atomically), marked as part of a save with a manifest.

    Every ``save`` writes its config through here and then
    :func:`write_manifest`; the marker lets :func:`verify_save` tell a save
    whose manifest was deleted from one older than manifests.
    """
    meta = {**meta, MANIFEST_MARKER: FORMAT_VERSION}
    data = json.dumps(meta, indent=2, default=str).encode("utf-8")
    atomic_write_bytes(os.path.join(str(path), "config.json"), data)


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
        meta = _config_if_readable(path)
        if isinstance(meta, dict) and meta.get(MANIFEST_MARKER):
            raise SaveIntegrityError(
                f"{os.path.join(path, MANIFEST)!r} is missing: {os.path.join(path, 'config.json')!r} says the save "
                "was written with a manifest, so its files can't be verified without it. Refusing to load; "
                "copy the whole directory that save() wrote, or save the estimator again."
            )
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
        digest = sha256_file(full)
        recorded = entry.get("sha256") if isinstance(entry, dict) else None
        if digest != recorded:
            raise SaveIntegrityError(
                f"{full!r} does not match the SHA-256 recorded in {MANIFEST} when it was saved "
                f"(now {digest[:16]}..., recorded {str(recorded)[:16]}...): the file is corrupt or was "
                "edited. Refusing to load it; save the estimator again."
            )
    return set(listed)


def _config_if_readable(path):
    """``config.json`` of ``path`` as JSON, or None when it is missing or not JSON (read_json names those)."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


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


def _portable_device(params, config):
    """A save's ``device`` this machine lacks (trained on a GPU, loaded on a CPU) → ``"auto"``, with a warning."""
    device = params.get("device")
    if not isinstance(device, str):
        return params
    import torch

    mps = getattr(torch.backends, "mps", None)
    missing = (device.startswith("cuda") and not torch.cuda.is_available()) or (
        device.startswith("mps") and not (mps is not None and mps.is_available())
    )
    if not missing:
        return params
    import warnings

    from ._utils import resolve_device

    warnings.warn(
        f"{config!r} was saved with device={device!r}, which this machine does not have: loaded with "
        f"device='auto' ({resolve_device('auto')}). Set the loaded model's device to choose another.",
        UserWarning,
        stacklevel=4,
    )
    return {**params, "device": "auto"}


def build_estimator(cls, params, path, legacy=None, file="config.json"):
    """``cls(**params)`` from a saved config, its parameters validated as ``fit`` would.

    ``legacy`` fills in parameters the save predates. Unknown, missing or
    invalid parameters raise a :class:`SaveIntegrityError` naming the file
    (``file`` in the folder ``path``).
    """
    config = os.path.join(str(path), file)
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
    params = _portable_device(params, config)
    est = cls(**params)
    try:
        # The estimator's own checks, as at fit: its ``_check_params`` (which
        # includes the declared constraints, where it has both) or sklearn's
        # ``_validate_params`` on ``_parameter_constraints`` alone.
        check = getattr(est, "_check_params", None)
        if check is not None:
            check()
        elif getattr(cls, "_parameter_constraints", None):
            est._validate_params()
        _check_model_params(params)
    except (ValueError, TypeError) as exc:
        raise SaveIntegrityError(f"{config!r} holds an invalid parameter: {exc}") from exc
    return est


def _check_model_params(params):
    """The parameters ``fit`` checks on the estimator, checked on the saved config (backbone: a name)."""
    from ._validation import check_model_params

    check_model_params(params=params, saved=True)
    if "target_modules" in params:
        targets = params["target_modules"]
        if not (isinstance(targets, str) and targets) and not (
            isinstance(targets, (list, tuple)) and targets and all(isinstance(t, str) and t for t in targets)
        ):
            raise ValueError(f"target_modules must be 'auto', a regex or a list of layer names, got {targets!r}")


def write_tensors(path, name, state):
    """Write ``state`` (name → tensor, e.g. a module's ``state_dict()``) as safetensors file ``name``."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, os.path.join(str(path), name))


def dump_skops(path, name, obj):
    """Write a fitted sklearn object as skops file ``name`` (loading it runs no arbitrary code)."""
    import skops.io as sio

    sio.dump(obj, os.path.join(str(path), name))


def load_skops(path, name, trusted=None):
    """The sklearn object in skops file ``name``, building only types skops trusts and ``trusted``.

    Types beyond those are refused with a ValueError that lists them (to
    pass as ``trusted=`` when the file is trusted); a damaged file raises
    a :class:`SaveIntegrityError` naming it.
    """
    import skops.io as sio

    full = os.path.join(str(path), name)
    if not os.path.isfile(full):
        raise _missing(path, name)
    trusted = list(trusted or [])
    try:
        untrusted = [t for t in sio.get_untrusted_types(file=full) if t not in trusted]
    except Exception as exc:  # skops raises zipfile/KeyError/... on a damaged file
        raise SaveIntegrityError(f"{full!r} is not a readable skops file: {exc!r}") from exc
    if untrusted:
        raise ValueError(
            f"The estimator saved in {full!r} uses types skops does not trust by default: {untrusted}. "
            f"If you trust this file, load it with trusted={untrusted}."
        )
    try:
        return sio.load(full, trusted=trusted)
    except Exception as exc:  # as above: a damaged file fails in many ways
        raise SaveIntegrityError(f"{full!r} is not a readable skops file: {exc!r}") from exc


def dict_to_pairs(mapping):
    """A dict parameter as JSON: a list of ``[key, value]`` pairs (JSON object keys are strings only)."""
    if mapping is None:
        return None
    return [[getattr(k, "item", lambda: k)(), getattr(v, "item", lambda: v)()] for k, v in mapping.items()]


def pairs_to_dict(pairs, name, path):
    """The dict :func:`dict_to_pairs` wrote; garbled pairs raise a :class:`SaveIntegrityError` naming ``name``."""
    if pairs is None:
        return None
    try:
        return {k: v for k, v in pairs}
    except (TypeError, ValueError) as exc:
        raise SaveIntegrityError(
            f"{os.path.join(str(path), 'config.json')!r}: {name} is not a list of [key, value] pairs, got {pairs!r}."
        ) from exc


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


class TensorFile(Mapping):
    """The tensors of safetensors file ``name`` in ``path``, each read from disk when it is looked up.

    A soup of ten models needs one tensor of a model at a time, not the
    model: looking a name up opens the file, copies that tensor out and
    closes the file again, so neither the tensors read before nor the file's
    mapped pages stay resident (measured in ``tests/test_merging.py``).
    ``shape(name)`` reads the header only. A damaged file is named.
    ``replace(overrides)`` gives the same file with some tensors given in
    memory instead (a regressor's rescaled head).
    """

    def __init__(self, path, name, overrides=None):
        self.full = os.path.join(str(path), name)
        if not os.path.isfile(self.full):
            raise _missing(path, name)
        with self._open() as f:
            self._shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        self._overrides = dict(overrides or {})

    def _open(self):
        from safetensors import SafetensorError, safe_open

        try:
            return safe_open(self.full, framework="pt", device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise SaveIntegrityError(f"{self.full!r} is not a readable safetensors file (truncated or edited?): {exc}") from exc

    def __getitem__(self, key):
        if key in self._overrides:
            return self._overrides[key]
        if key not in self._shapes:
            raise KeyError(key)
        from safetensors import SafetensorError

        with self._open() as f:
            try:
                return f.get_tensor(key)
            except (SafetensorError, OSError, ValueError) as exc:
                raise SaveIntegrityError(f"tensor {key!r} of {self.full!r} could not be read (truncated or edited?): {exc}") from exc

    def __iter__(self):
        return iter(self._shapes)

    def __len__(self):
        return len(self._shapes)

    def chunks(self, key, max_bytes=4 << 20):
        """``(index, part)`` pairs covering tensor ``key`` by blocks of rows of at most ``max_bytes``.

        ``dest[index]`` is where ``part`` belongs. Read through safetensors'
        slices, so a large tensor (a text model's token embeddings: half of
        MiniLM) is never whole in memory twice.
        """
        shape = self.shape(key)
        if key in self._overrides or len(shape) == 0 or shape[0] == 0:
            yield ..., self[key]
            return
        row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * 8)  # 8: the widest dtype saved here
        step = max(1, max_bytes // row_bytes)
        for a in range(0, shape[0], step):
            # Opened per block: a slice is read through the file's memory map, whose pages stay
            # resident (counted in the process's RSS) until the file is closed.
            with self._open() as f:
                part = f.get_slice(key)[a : a + step]
            yield slice(a, a + step), part

    def shape(self, key):
        return tuple(self._overrides[key].shape) if key in self._overrides else self._shapes[key]

    def replace(self, overrides):
        out = object.__new__(TensorFile)
        out.full, out._shapes, out._overrides = self.full, self._shapes, {**self._overrides, **overrides}
        return out


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
    """``classes`` from a saved config as an array: two or more distinct labels, all strings or all numbers.

    The labels are checked as ``fit`` checks ``y`` (:func:`~sktransfer._validation.check_labels`),
    plus what ``classes_`` is: a list (JSON keeps no bytes, so strings,
    numbers or bools), each label once, finite numbers.
    """
    import numpy as np

    from ._validation import check_labels

    if not isinstance(classes, list) or len(classes) < 2:
        raise SaveIntegrityError(f"{config!r}: 'classes' must be a list of two or more labels, got {classes!r}.")
    try:
        # Two or more labels, each once (below), is two or more classes: no min_classes here.
        arr = check_labels(classes, name="classes", min_classes=0, task="a classifier")
        ok = arr.dtype.kind in "Uiub" or (arr.dtype.kind == "f" and np.isfinite(arr).all())
    except ValueError as exc:
        ok, why = False, f" ({exc})"
    else:
        why = ""
    if not ok:
        raise SaveIntegrityError(
            f"{config!r}: 'classes' must be all strings or all finite numbers{why}, got {classes!r}."
        )
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
