"""Fast CPU inference: a backbone's body, or a trained model, compiled for ONNX Runtime or OpenVINO.

:func:`compile_body` turns a :class:`~sktransfer.backbones.Backbone`'s body
(final embedding) into a :class:`CompiledBody`: called with the keyword
inputs of ``backbone.module_inputs`` for one batch, it returns the pooled
embeddings as float32 numpy ``(n, d)``, as the torch body does.
:func:`compile_module` does the same for any module an export spec
describes, keyed by a fingerprint of its weights: the trained estimators'
body + head (``_transfer_module.export_spec``; outputs named, e.g.
``logits`` and ``embedding``), whose ``export`` writes the same files
(:func:`compiled_files`, :func:`write_model_files`).

- Export: ``torch.onnx.export`` (the TorchScript exporter) of the module the
  backbone describes (:meth:`Backbone.export_spec`): inputs in a fixed order,
  dynamic batch (and sequence length for text), images as uint8 crops
  normalised inside the graph.
- int8, ONNX: the scheme the backbone declares. Transformers get ONNX
  Runtime's dynamic quantization of the MatMul weights only, per channel
  (all ops dynamic loses too much: cosine 0.96 on MiniLM); CNNs get static
  QDQ quantization, per channel, by NNCF on the ONNX graph, calibrated on
  ``calibration`` rows (onnxruntime's ``quantize_static`` measured cosine
  0.93 on EfficientNet-Lite0 where NNCF gives 0.99).
- OpenVINO: ``convert_model`` of the ONNX export; int8 with ``nncf.quantize``
  (``ModelType.TRANSFORMER`` for text) on the ``calibration`` rows; CNNs with
  the recipe ``CNN_INT8_RECIPE`` names in ``CNN_INT8_RECIPES`` (NNCF's
  defaults unless changed; the recipe is part of the cache key).

Exported and quantized models are cached under ``<cache_dir>/compiled/``
(one ``<backend>-<quantize>-<key>.sktrt`` file each; a load from the cache
sets its time to now, so ``sktransfer cache prune --compiled`` removes the
least recently used),
keyed by the weights' fingerprint, the backend, the quantization, the
opset, the graph's preprocessing (image size), the tool versions and, for
calibrated int8, a hash of the calibration batches. Files are written
atomically and carry a checksum keyed by their key: a damaged file is
rebuilt, with a warning, never served.
"""

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import threading
import warnings

import numpy as np

BACKENDS = ("onnx", "openvino")
QUANTIZE = (None, "int8")
OPSET = 17
# Calibration uses at most this many rows (evenly spaced), in batches of _CALIB_BATCH.
MAX_CALIBRATION_ROWS = 256
_CALIB_BATCH = 16
_FORMAT = 1
_MAGIC = b"SKTRT\x00\x00\x01"
_EXTRAS = {"onnx": "onnx", "openvino": "openvino"}
# How NNCF quantizes a CNN (an image model: ``spec.nncf_model_type`` None), by name. Each
# recipe is data (it enters the cache key: a changed recipe rebuilds the model):
# ``preset`` (NNCF's QuantizationPreset name), ``fast_bias_correction``, ``ignore``
# (layers kept in float, found by position in the graph: "first_conv", "last_conv",
# "pool"), ``activations_range`` (a RangeEstimatorParametersSet name). Compared by
# ``benchmarks/bench_int8_recipes.py``.
CNN_INT8_RECIPES = {
    "nncf_default": {},
    "mixed": {"preset": "MIXED"},
    "full_bias_correction": {"fast_bias_correction": False},
    "ends_fp32": {"ignore": ["first_conv", "last_conv", "pool"]},
    "minmax": {"activations_range": "MINMAX"},
}
# Chosen by a rule fixed before the held-out runs (highest mean cosine to torch fp32 among
# recipes keeping >= 2.5x speed) on openclipart, emoji and lfw_faces; on the held-out digits
# and Fashion-MNIST it moved the mean cosine from 0.966 to 0.985 / 0.974 at the same speed
# (the first build is ~1.7x slower). Probe accuracy does not separate the recipes at 32 rows
# per class (benchmarks/RESULTS.md, "Int8 recipes").
CNN_INT8_RECIPE = "full_bias_correction"

_stats_lock = threading.Lock()
_stats = {"exports": 0, "builds": 0, "loads": 0, "damaged": 0}


def runtime_stats():
    """Counters of this process: ONNX exports, models built, models loaded from the cache, damaged files."""
    with _stats_lock:
        return dict(_stats)


def _count(name):
    with _stats_lock:
        _stats[name] += 1


# ------------------------------------------------------------------ checks
def check_backend(backend, quantize):
    """Validate ``backend`` and ``quantize`` (errors list the valid values)."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend={backend!r} is not supported by the compiled runtime; valid values: "
            + ", ".join(repr(b) for b in BACKENDS)
            + " (or 'torch' for the plain torch body)."
        )
    if quantize not in QUANTIZE:
        raise ValueError(
            f"quantize={quantize!r} is not supported; valid values: " + ", ".join(repr(q) for q in QUANTIZE) + "."
        )


def _require(module, backend, purpose):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRAS[backend]
        raise ImportError(
            f"backend={backend!r} needs the {module.split('.')[0]!r} package ({purpose}), which is not "
            f"installed. Install it with: pip install 'sktransfer[{extra}]'"
        ) from exc


def _require_all(backend, quantize, static):
    _require("onnx", backend, "to export the model")
    if backend == "onnx":
        _require("onnxruntime", backend, "to run the model")
        if quantize and not static:
            _require("onnxruntime.quantization", backend, "to quantize the model")
    else:
        _require("openvino", backend, "to run the model")
    if static:
        _require("nncf", backend, "to quantize the model with calibration")


def require_backend(backend, quantize=None):
    """Validate ``backend``/``quantize`` and import what they may need, before any work
    (an estimator's ``fit``): a missing package is named with its extra."""
    check_backend(backend, quantize)
    _require_all(backend, None, False)
    if quantize:
        if backend == "onnx":
            _require("onnxruntime.quantization", backend, "to quantize the model")
        _require("nncf", backend, "to quantize the model with calibration")


# -------------------------------------------------------------------- API
def compile_body(
    backbone,
    backend,
    quantize=None,
    *,
    calibration=None,
    cache_dir=None,
    max_length=None,
    image_size=None,
    layer=None,
    n_threads=None,
):
    """Compile ``backbone``'s body for a fast CPU backend.

    Parameters
    ----------
    backbone : Backbone
        From :func:`sktransfer.backbones.load_backbone`.
    backend : {"onnx", "openvino"}
        ONNX Runtime or OpenVINO (CPU).
    quantize : {None, "int8"}, default=None
        int8: dynamic (weights) or static (calibrated) quantization, as the
        backbone declares for ONNX Runtime; NNCF for OpenVINO.
    calibration : list of input rows, default=None
        Rows the backbone reads (texts, images), e.g. those given to
        ``fit``; needed by static int8 (ONNX images, OpenVINO). At most
        ``MAX_CALIBRATION_ROWS`` evenly spaced rows are used.
    cache_dir : str, default=None
        Root of the cache (models go in ``<cache_dir>/compiled``); None:
        ``get_config()["cache_dir"]``.
    max_length, image_size : int, default=None
        The preprocessing the runner will be fed (image size shapes the graph).
    layer : None
        Only the final embedding is exported; an int raises a ValueError.
    n_threads : int, default=None
        Intra-op threads; None: ``torch.get_num_threads()``.

    Returns
    -------
    runner : CompiledBody
        ``runner(**backbone.module_inputs(items, rows, ...))`` → float32 ``(n, d)``.
    """
    check_backend(backend, quantize)
    name = getattr(backbone, "name", type(backbone).__name__)
    try:
        spec = backbone.export_spec(layer=layer, max_length=max_length, image_size=image_size)
    except NotImplementedError as exc:
        raise ValueError(f"backend={backend!r} cannot run backbone {name!r}: {exc}. Use backend='torch'.") from exc
    calib = _prepare_calibration(backend, quantize, spec, name, calibration, backbone, max_length, image_size)
    return _compile(backbone.fingerprint(), spec, name, backend, quantize, calib, cache_dir, n_threads, ("embedding",))


def compile_module(
    spec,
    fingerprint,
    backend,
    quantize=None,
    *,
    name,
    backbone=None,
    calibration=None,
    cache_dir=None,
    max_length=None,
    image_size=None,
    n_threads=None,
):
    """Compile any module an :class:`~sktransfer.backbones.ExportSpec` describes (a trained model).

    :func:`compile_body` for a backbone's frozen body; this, for a module of
    one's own (a fine-tuned body + head, :func:`sktransfer._transfer_module.export_spec`),
    cached by ``fingerprint`` (the hash of its weights) the same way.

    Parameters
    ----------
    spec : ExportSpec
        The module, its input names (those of ``backbone.module_inputs``),
        example inputs and dynamic axes; ``spec.output_names`` (default
        ``("embedding",)``) names the graph's outputs, in order.
    fingerprint : str
        What the module's outputs depend on (weights, head, output scaling).
    backend, quantize
        As :func:`compile_body`.
    name : str
        What the errors call the model.
    backbone : Backbone, default=None
        Prepares ``calibration`` rows (static int8 only).
    calibration, cache_dir, max_length, image_size, n_threads
        As :func:`compile_body`.

    Returns
    -------
    runner : CompiledBody
        ``runner(**inputs)`` → the first output; ``runner.run(inputs)`` → all of them by name.
    """
    check_backend(backend, quantize)
    outputs = tuple(getattr(spec, "output_names", ("embedding",)))
    calib = _prepare_calibration(backend, quantize, spec, name, calibration, backbone, max_length, image_size)
    return _compile(fingerprint, spec, name, backend, quantize, calib, cache_dir, n_threads, outputs)


def is_static(backend, quantize, spec):
    """Whether this int8 model is calibrated (needs rows of inputs to build)."""
    return quantize == "int8" and (backend == "openvino" or spec.int8 == "static")


def _prepare_calibration(backend, quantize, spec, name, calibration, backbone, max_length, image_size):
    static = is_static(backend, quantize, spec)
    _require_all(backend, quantize, static)
    if not static:
        return None
    if calibration is None or len(calibration) == 0:
        why = "OpenVINO int8 (NNCF)" if backend == "openvino" else f"ONNX int8 for {name!r} (static, calibrated)"
        raise ValueError(
            f"quantize='int8' with backend={backend!r} needs calibration rows: {why} is calibrated on "
            f"inputs of the model. Pass calibration=X (e.g. the rows given to fit), got calibration={calibration!r}."
        )
    return _calibration_batches(backbone, calibration, max_length, image_size)


def _compile(fingerprint, spec, name, backend, quantize, calib, cache_dir, n_threads, outputs, files=False):
    from ._config import get_config

    root = os.path.join(os.path.expanduser(os.fsdecode(cache_dir or get_config()["cache_dir"])), "compiled")
    ctx = _Context(fingerprint, spec, name, root, calib, outputs)
    if files:  # the model's files themselves (export)
        return ctx.get(backend, quantize)[0]
    threads = int(n_threads) if n_threads else _torch_threads()

    def load(parts):
        return CompiledBody(backend, quantize, spec.input_names, parts, threads)

    runner, path, built = ctx.get(backend, quantize, load)
    runner.path, runner.built, runner.key = path, built, ctx.key(backend, quantize)
    return runner


def compiled_files(
    spec, fingerprint, backend, quantize=None, *, name, backbone=None, calibration=None, cache_dir=None,
    max_length=None, image_size=None,
):
    """The files of the model :func:`compile_module` runs (ONNX: ``[model]``; OpenVINO: ``[xml, bin]``), as bytes.

    From the cache when there, built (and cached) otherwise: an exported file
    is the very model a compiled ``predict`` runs.
    """
    check_backend(backend, quantize)
    outputs = tuple(getattr(spec, "output_names", ("embedding",)))
    calib = _prepare_calibration(backend, quantize, spec, name, calibration, backbone, max_length, image_size)
    return _compile(fingerprint, spec, name, backend, quantize, calib, cache_dir, None, outputs, files=True)


def load_entry(path, key):
    """The files of a model cached at ``path`` under ``key`` (ONNX: one; OpenVINO: xml, bin), or None."""
    return _read_entry(path, key) if path else None


def write_model_files(parts, backend, path):
    """Write a compiled model's files where a user asked: ``path`` (ONNX), or ``<stem>.xml`` + ``<stem>.bin``
    (OpenVINO). Returns the path written (ONNX) or the pair ``(xml, bin)``.
    """
    from ._utils import atomic_write_bytes

    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"Cannot export to {path!r}: the directory {parent!r} does not exist.")
    if backend == "onnx":
        atomic_write_bytes(path, parts[0])
        return path
    stem = path[: -len(".xml")] if path.endswith(".xml") else path
    xml, bin_ = stem + ".xml", stem + ".bin"
    atomic_write_bytes(bin_, parts[1])
    atomic_write_bytes(xml, parts[0])
    return xml, bin_


def load_compiled_module(path, key, input_names, backend, quantize=None, *, n_threads=None):
    """The runner of a model :func:`compile_module` cached at ``path`` under ``key``, or None when gone or damaged."""
    check_backend(backend, quantize)
    parts = _read_entry(path, key) if path else None
    if parts is None:
        return None
    threads = int(n_threads) if n_threads else _torch_threads()
    try:
        runner = CompiledBody(backend, quantize, input_names, parts, threads)
    except Exception as exc:  # noqa: BLE001 - any load failure: the caller rebuilds
        _warn_damaged(path, f"it does not load ({type(exc).__name__}: {exc})")
        return None
    runner.path, runner.built, runner.key = path, False, key
    _count("loads")
    _mark_used(path)
    return runner


def module_fingerprint(module):
    """Hash of a module's state (weights and buffers): what its compiled model is keyed by."""
    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
        if str(t.dtype) == "torch.bfloat16":  # numpy has none: hashed as float32
            t = t.float()
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:32]


def load_compiled(path, key, backbone, backend, quantize=None, *, max_length=None, image_size=None, n_threads=None):
    """The runner of a model :func:`compile_body` cached at ``path`` under ``key``, or None when
    it is gone or damaged (its calibration rows are not needed again).

    What an unpickled estimator uses to get its calibrated model back.
    """
    check_backend(backend, quantize)
    spec = backbone.export_spec(layer=None, max_length=max_length, image_size=image_size)
    parts = _read_entry(path, key) if path else None
    if parts is None:
        return None
    threads = int(n_threads) if n_threads else _torch_threads()
    runner = CompiledBody(backend, quantize, spec.input_names, parts, threads)
    runner.path, runner.built, runner.key = path, False, key
    _count("loads")
    _mark_used(path)
    return runner


def _torch_threads():
    import torch

    return max(1, int(torch.get_num_threads()))


# ----------------------------------------------------------------- runner
class CompiledBody:
    """A compiled body: ``runner(**inputs)`` → float32 numpy ``(n, d)``.

    Attributes
    ----------
    backend, quantize : str, str or None
    input_names : tuple of str
        The keyword inputs it takes (those of ``backbone.module_inputs``).
    output_names : tuple of str
        The graph's outputs, in order (``"embedding"`` for a body; a
        trained model's ``"logits"`` or ``"predictions"``, then ``"embedding"``).
    path : str or None
        The cached model file (None when the cache could not be written).
    built : bool
        True when this call exported or quantized the model, False when it
        was loaded from the cache.
    key : str
        The model's cache key (weights, backend, quantization, calibration,
        tool versions): what its outputs depend on.
    """

    def __init__(self, backend, quantize, input_names, parts, n_threads):
        self.backend = backend
        self.quantize = quantize
        self.input_names = tuple(input_names)
        self.path = None
        self.built = None
        self.key = None
        self.n_threads = n_threads
        if backend == "onnx":
            self._session = _ort_session(parts[0], n_threads)
            self._graph_inputs = tuple(i.name for i in self._session.get_inputs())
            self._dtypes = {i.name: _ORT_TYPES.get(i.type) for i in self._session.get_inputs()}
            self.output_names = tuple(o.name for o in self._session.get_outputs())
        else:
            self._compiled = _ov_compiled(parts, n_threads)
            self._request = self._compiled.create_infer_request()
            self._graph_inputs = tuple(p.get_any_name() for p in self._compiled.inputs)
            self._dtypes = {p.get_any_name(): p.get_element_type().to_dtype() for p in self._compiled.inputs}
            self.output_names = tuple(p.get_any_name() for p in self._compiled.outputs)
        self._lock = threading.Lock()

    def __call__(self, **inputs):
        """The graph's first output (a body's embedding, a trained model's logits) for one batch."""
        return self.run(inputs)[self.output_names[0]]

    def run(self, inputs, outputs=None):
        """``{output name: float32 array}`` for one batch (``outputs``: names to return; None: all)."""
        unknown = sorted(set(inputs) - set(self.input_names))
        if unknown:
            raise ValueError(
                f"Unexpected inputs {unknown}: the compiled body takes {list(self.input_names)} "
                "(the keyword inputs of backbone.module_inputs)."
            )
        feed = {}
        for key in self._graph_inputs:  # the exporter may drop an input the graph never reads
            if key not in inputs:
                raise ValueError(f"Missing input {key!r}: the compiled body takes {list(self.input_names)}.")
            value = inputs[key]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            dtype = self._dtypes.get(key)
            feed[key] = np.ascontiguousarray(value, dtype=dtype) if dtype is not None else np.ascontiguousarray(value)
        names = self.output_names if outputs is None else tuple(outputs)
        missing = sorted(set(names) - set(self.output_names))
        if missing:
            raise ValueError(f"The compiled model has no output {missing}; its outputs: {list(self.output_names)}.")
        if self.backend == "onnx":
            values = self._session.run(list(names), feed)
        else:
            with self._lock:  # one infer request, not thread-safe
                self._request.infer(feed)
                values = [self._request.get_output_tensor(self.output_names.index(n)).data.copy() for n in names]
        return {n: np.asarray(v, dtype=np.float32) for n, v in zip(names, values)}

    def __getstate__(self):
        raise TypeError(
            "A CompiledBody holds a native inference session and cannot be pickled; compile it again "
            "after loading (the model is read from the cache)."
        )

    def __repr__(self):
        return f"CompiledBody(backend={self.backend!r}, quantize={self.quantize!r}, inputs={list(self.input_names)})"


_ORT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(float)": np.float32}


def _ort_session(model_bytes, n_threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = n_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def _ov_config(n_threads):
    # f32 explicitly: on CPUs with bf16 support OpenVINO would otherwise run
    # the float parts in bf16 (cosine to torch well under 0.9999).
    return {"INFERENCE_NUM_THREADS": int(n_threads), "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


def _ov_compiled(parts, n_threads):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(parts[0], parts[1])
    return core.compile_model(model, "CPU", _ov_config(n_threads))


# ------------------------------------------------------------ calibration
def _calibration_batches(backbone, calibration, max_length, image_size):
    items = backbone.check_inputs(calibration)
    n = len(items)
    rows = np.arange(n) if n <= MAX_CALIBRATION_ROWS else np.unique(np.linspace(0, n - 1, MAX_CALIBRATION_ROWS).astype(int))
    batches = []
    for s in range(0, len(rows), _CALIB_BATCH):
        batch = backbone.module_inputs(items, rows[s : s + _CALIB_BATCH], max_length=max_length, image_size=image_size)
        batches.append({k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in batch.items()})
    return batches


def _calibration_digest(batches):
    h = hashlib.sha256()
    for batch in batches:
        for k in sorted(batch):
            a = np.ascontiguousarray(batch[k])
            h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()[:32]


# ------------------------------------------------------------------ cache
def _versions(backend, quantize, static):
    """Versions of the tools that made the file (an upgrade rebuilds it)."""
    import torch

    v = {"torch": torch.__version__}
    if backend == "onnx" and quantize and not static:
        import onnxruntime

        v["onnxruntime"] = onnxruntime.__version__
    if backend == "openvino":
        import openvino

        v["openvino"] = openvino.__version__
    if static:
        import nncf

        v["nncf"] = nncf.__version__
    return v


class _Context:
    """Builds and caches the models of one compile (the fp32 ONNX export is shared)."""

    def __init__(self, source, spec, name, root, calib, outputs=("embedding",)):
        # ``source``: the weights' fingerprint, or a Backbone (its body's fingerprint).
        self.fingerprint = source if isinstance(source, str) else source.fingerprint()
        self.outputs = tuple(outputs)
        self.spec = spec
        self.name = name
        self.root = root
        self.calib = calib

    def key(self, backend, quantize):
        static = is_static(backend, quantize, self.spec)
        parts = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "backend": backend,
            "quantize": quantize,
            "opset": OPSET,
            "inputs": list(self.spec.input_names),
            "graph": self.spec.graph_key,
            "versions": _versions(backend, quantize, static),
        }
        if self.outputs != ("embedding",):  # a trained model's graph (bodies keep their keys)
            parts["outputs"] = list(self.outputs)
        if static:
            parts["calibration"] = _calibration_digest(self.calib)
            parts["scheme"] = "static"
            recipe = self.recipe(backend)
            if recipe:  # NNCF's defaults ({}) keep the keys of models built before recipes existed
                parts["recipe"] = recipe
        elif quantize:
            parts["scheme"] = self.spec.int8
        blob = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:40]

    def path(self, backend, quantize, key):
        tag = f"{backend}-{quantize or 'fp32'}"
        return os.path.join(self.root, f"{tag}-{key}.sktrt")

    def get(self, backend, quantize, load=None):
        """``(load(parts), path, built)``: the model's files, from the cache or built now."""
        load = load or (lambda parts: parts)
        key = self.key(backend, quantize)
        path = self.path(backend, quantize, key)
        parts = _read_entry(path, key)
        if parts is not None:
            try:
                obj = load(parts)
            except Exception as exc:  # noqa: BLE001 - any load failure means: rebuild
                _warn_damaged(path, f"it does not load ({type(exc).__name__}: {exc})")
            else:
                _count("loads")
                _mark_used(path)
                return obj, path, False
        parts = self.build(backend, quantize)
        _count("builds")
        obj = load(parts)
        try:
            _write_entry(path, key, parts)
        except OSError as exc:
            warnings.warn(
                f"Could not write the compiled model to {path!r} ({exc}); it will be built again next time.",
                UserWarning,
                stacklevel=3,
            )
            path = None
        return obj, path, True

    # -- builders ---------------------------------------------------------
    def build(self, backend, quantize):
        if backend == "onnx" and quantize is None:
            return [self.export()]
        fp32 = self.get("onnx", None)[0][0]
        with tempfile.TemporaryDirectory(prefix="sktransfer-rt-") as tmp:
            src = os.path.join(tmp, "model.onnx")
            with open(src, "wb") as f:
                f.write(fp32)
            if backend == "onnx":
                return [self._quantize_ort(src, tmp)]
            return self._openvino(src, quantize, tmp)

    def export(self):
        import copy

        import torch

        spec = self.spec
        module = spec.module
        if any(p.device.type != "cpu" for p in module.parameters()):
            module = copy.deepcopy(module).cpu()
        with tempfile.TemporaryDirectory(prefix="sktransfer-rt-") as tmp:
            out = os.path.join(tmp, "model.onnx")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with torch.no_grad():
                        torch.onnx.export(
                            module,
                            tuple(spec.example),
                            out,
                            input_names=list(spec.input_names),
                            output_names=list(self.outputs),
                            dynamic_axes=spec.dynamic_axes,
                            opset_version=OPSET,
                            do_constant_folding=True,
                            dynamo=False,
                        )
            except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
                first = (str(exc).strip().splitlines() or [""])[0]  # the rest is the traced graph
                raise ValueError(
                    f"{'Backbone' if self.outputs == ('embedding',) else 'Model'} {self.name!r} could not be exported to ONNX for a compiled backend "
                    f"({type(exc).__name__}: {first}). Use backend='torch'."
                ) from exc
            _count("exports")
            with open(out, "rb") as f:
                return f.read()

    def _quantize_ort(self, src, tmp):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        out = os.path.join(tmp, "model.int8.onnx")
        if self.spec.int8 == "dynamic":
            with _quiet("root", "ERROR"):  # its advice to pre-process is for static quantization
                quantize_dynamic(
                    src,
                    out,
                    per_channel=True,
                    weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul"],
                )
        else:
            # Static QDQ by NNCF (per-channel weights, bias correction): on EfficientNet-Lite0
            # cosine 0.990 to torch vs 0.926 for onnxruntime's quantize_static (MinMax, QDQ, per channel).
            import nncf
            import onnx

            data = [{k: b[k] for k in self.spec.input_names if k in b} for b in self.calib]
            model = onnx.load(src)
            kwargs = self._nncf_kwargs(model, "onnx")
            with _quiet("nncf"):
                model = nncf.quantize(model, nncf.Dataset(data), subset_size=len(data), **kwargs)
            onnx.save(model, out)
        with open(out, "rb") as f:
            return f.read()

    def _openvino(self, src, quantize, tmp):
        import openvino as ov

        model = ov.convert_model(src)
        if quantize:
            import nncf

            kwargs = self._nncf_kwargs(model, "openvino")
            names = [p.get_any_name() for p in model.inputs]
            data = [{k: b[k] for k in names} for b in self.calib]
            with _quiet("nncf"):  # items are batches
                model = nncf.quantize(model, nncf.Dataset(data), subset_size=len(data), **kwargs)
        xml = os.path.join(tmp, "model.xml")
        ov.save_model(model, xml, compress_to_fp16=False)
        with open(xml, "rb") as f:
            xml_bytes = f.read()
        with open(os.path.join(tmp, "model.bin"), "rb") as f:
            bin_bytes = f.read()
        return [xml_bytes, bin_bytes]

    def recipe(self, backend):
        """The NNCF recipe (a dict) of this model's calibrated int8 on ``backend``.

        ``CNN_INT8_RECIPES[CNN_INT8_RECIPE]`` for a CNN on OpenVINO (the recipes were
        measured there); None for a transformer, and for ONNX Runtime (NNCF's defaults).
        """
        if self.spec.nncf_model_type or backend != "openvino":
            return None
        if CNN_INT8_RECIPE not in CNN_INT8_RECIPES:
            raise ValueError(
                f"CNN_INT8_RECIPE={CNN_INT8_RECIPE!r} is not a recipe of CNN_INT8_RECIPES: "
                + ", ".join(repr(k) for k in CNN_INT8_RECIPES) + "."
            )
        return dict(CNN_INT8_RECIPES[CNN_INT8_RECIPE])

    def _nncf_kwargs(self, model, backend):
        """``nncf.quantize`` keyword arguments: the transformer model type, or the CNN recipe."""
        import nncf

        if self.spec.nncf_model_type:
            return {"model_type": getattr(nncf.ModelType, self.spec.nncf_model_type)}
        recipe, kwargs = self.recipe(backend) or {}, {}
        if "preset" in recipe:
            kwargs["preset"] = getattr(nncf.QuantizationPreset, recipe["preset"])
        if "fast_bias_correction" in recipe:
            kwargs["fast_bias_correction"] = bool(recipe["fast_bias_correction"])
        if recipe.get("ignore"):
            names = _layers_by_position(model, backend, recipe["ignore"])
            kwargs["ignored_scope"] = nncf.IgnoredScope(names=names, validate=False)
        if "activations_range" in recipe:
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
            from nncf.quantization.range_estimator import RangeEstimatorParametersSet

            kwargs["advanced_parameters"] = AdvancedQuantizationParameters(
                activations_range_estimator_params=getattr(RangeEstimatorParametersSet, recipe["activations_range"])
            )
        return kwargs


def _layers_by_position(model, backend, where):
    """Names of the graph's first / last convolution and its last pooling (``where``), for NNCF's ignored scope.

    Found by position in the topologically ordered graph, so that no model's
    layer names are written here: ``"first_conv"``, ``"last_conv"``, ``"pool"``.
    """
    if backend == "openvino":
        ops = [(op.get_type_name(), op.get_friendly_name()) for op in model.get_ordered_ops()]
        conv, pool = ("Convolution", "GroupConvolution"), ("ReduceMean", "AvgPool")
    else:
        ops = [(n.op_type, n.name) for n in model.graph.node]
        conv, pool = ("Conv",), ("GlobalAveragePool", "ReduceMean", "AveragePool")
    convs = [name for kind, name in ops if kind in conv]
    pools = [name for kind, name in ops if kind in pool]
    found = {"first_conv": convs[:1], "last_conv": convs[-1:], "pool": pools[-1:]}
    return sorted({n for w in where for n in found[w]})


@contextlib.contextmanager
def _quiet(logger_name, level="WARNING"):
    """A library's logs below ``level`` off for one call."""
    import logging

    logger = logging.getLogger(logger_name)
    old = logger.level
    logger.setLevel(getattr(logging, level))
    try:
        yield
    finally:
        logger.setLevel(old)


# One file per model: magic, part count, (length, bytes) per part, then a
# sha256 keyed by the entry's key (a file copied to another key is damaged too).
_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<Q")


def _digest(key, parts):
    h = hashlib.sha256(key.encode())
    for p in parts:
        h.update(_LEN.pack(len(p)))
        h.update(p)
    return h.digest()


def _write_entry(path, key, parts):
    from ._utils import atomic_write_bytes

    chunks = [_MAGIC, _COUNT.pack(len(parts))]
    for p in parts:
        chunks += [_LEN.pack(len(p)), p]
    chunks.append(_digest(key, parts))
    atomic_write_bytes(path, b"".join(chunks))


def _read_entry(path, key):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        _warn_damaged(path, f"it cannot be read ({exc})")
        return None
    try:
        if not data.startswith(_MAGIC):
            raise ValueError("bad header")
        pos = len(_MAGIC)
        (n,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        parts = []
        for _ in range(n):
            (size,) = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            if pos + size > len(data):
                raise ValueError("truncated")
            parts.append(data[pos : pos + size])
            pos += size
        if data[pos:] != _digest(key, parts):
            raise ValueError("checksum mismatch")
    except (ValueError, struct.error) as exc:
        _warn_damaged(path, f"its contents are damaged ({exc})")
        return None
    return parts


def _mark_used(path):
    """Set a cached model's time to now when it is loaded: ``sktransfer cache prune --compiled``
    removes the models not *used* for a while, least recently used first (file access times are
    not reliable: many filesystems are mounted ``noatime``/``relatime``). A read-only cache is left as is."""
    try:
        os.utime(path)
    except OSError:
        pass


def _warn_damaged(path, why):
    _count("damaged")
    warnings.warn(
        f"The compiled model cached at {path!r} is unusable: {why}. It is exported again.",
        UserWarning,
        stacklevel=4,
    )
