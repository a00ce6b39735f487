"""`LoRAClassifier`: parameter-efficient fine-tuning through PEFT.

The adapters are PEFT's own (LoRA, DoRA, IA3, prompt tuning); the training
loop is the one :class:`~sktransfer.FineTunedClassifier` uses
(``_training._SkorchTransferBase``), so nothing here re-implements either.
The new head is registered with PEFT as ``modules_to_save``, which is what
makes it train with the adapter and come back from an adapter-only save
(the long-standing PEFT complaint of a reloaded head being random).
"""

import copy
import os
from numbers import Integral, Real

import torch
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from . import _persistence
from ._seeding import isolated_torch_rng
from ._training import INFERENCE_CONSTRAINTS, _CLASS_WEIGHT, _Exportable, _ClassifierOutputs, _SkorchTransferBase
from .backbones import load_backbone
from .backbones._base import mean_pool

METHODS = ("lora", "dora", "ia3", "prompt_tuning")
_ATTENTION = {"query", "key", "value", "q_proj", "k_proj", "v_proj", "q_lin", "k_lin", "v_lin", "qkv"}
_HEAD_NAME = "task_head"


def _adaptable_modules(body):
    """(name, module) of the layers PEFT can adapt: Linear and Conv2d."""
    return [(n, m) for n, m in body.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


# A layer gets a LoRA/DoRA adapter under target_modules="auto" only if the
# adapter holds at most this share of the layer's own weights.
_MAX_ADAPTER_SHARE = 0.1


def _adapter_share(layer, r):
    """Weights of a rank-``r`` LoRA pair over the weights of ``layer``."""
    if isinstance(layer, nn.Conv2d):
        fan_in, fan_out = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1], layer.out_channels
    else:
        fan_in, fan_out = layer.in_features, layer.out_features
    return r * (fan_in + fan_out) / layer.weight.numel()


def auto_target_modules(module, method, r=8):
    """Sensible PEFT targets per backbone family.

    Transformer encoders and ViTs: the attention projections (plus, for
    IA3, the second feed-forward layer). CNNs: the 1×1 (pointwise)
    convolutions, which carry most of their weights; for LoRA and DoRA only
    those wide enough for rank ``r`` to be a low-rank update, i.e. whose
    adapter holds at most 10 % as many weights as the layer. Mobile CNNs
    start narrow (16 to 80 channels in EfficientNet-Lite0's first four
    stages, where a rank-8 adapter is 12-75 % the size of the layer it adapts):
    adapting those saves nothing over training them and made the adapter
    file larger (``benchmarks/RESULTS.md``, "LoRA vs full fine-tuning"). If no
    layer is wide enough, every 1×1 convolution is adapted.

    Returns
    -------
    targets : list of str
        Full module names inside ``module``.
    feedforward : list of str
        For IA3: the targets that are feed-forward layers.
    """
    layers = _adaptable_modules(module.body)
    attn = [n for n, m in layers if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in _ATTENTION]
    attn += [n for n, m in layers if isinstance(m, nn.Linear) and n.endswith("attn.proj")]
    if attn:
        targets = attn
        feedforward = []
        if method == "ia3":
            targets = [n for n in attn if n.rsplit(".", 1)[-1] not in ("query", "q_proj", "q_lin")]
            feedforward = [
                n for n, m in layers
                if isinstance(m, nn.Linear) and (n.endswith(".output.dense") and ".attention." not in n or n.endswith("mlp.fc2"))
            ]
            targets += feedforward
    else:
        pointwise = [(n, m) for n, m in layers if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1]
        targets = [n for n, _ in pointwise]
        if method in ("lora", "dora"):
            wide = [n for n, m in pointwise if _adapter_share(m, r) <= _MAX_ADAPTER_SHARE]
            targets = wide or targets
        feedforward = list(targets) if method == "ia3" else []
    return [f"body.{n}" for n in targets], [f"body.{n}" for n in feedforward]


def _match_user_targets(module, target_modules):
    names = [n for n, _ in _adaptable_modules(module)]
    if isinstance(target_modules, str):
        import re

        matched = [n for n in names if re.fullmatch(target_modules, n)]
    else:
        wanted = list(target_modules)
        matched = [n for n in names if any(n == t or n.endswith("." + t) for t in wanted)]
        missing = [t for t in wanted if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            matched = []
    if not matched:
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ValueError(
            f"target_modules={target_modules!r} matches no Linear or Conv2d layer of this backbone. "
            f"Its adaptable layers end in: {suffixes[:40]} (e.g. {names[:3]})."
        )
    return matched


class _PromptTunedTextBody(nn.Module):
    """A text encoder run through PEFT prompt tuning, mean-pooled over real tokens."""

    def __init__(self, peft_encoder, n_virtual, normalize):
        super().__init__()
        self.encoder = peft_encoder
        self.n_virtual = n_virtual
        self.normalize = normalize

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state[:, self.n_virtual :]
        emb = mean_pool(hidden, attention_mask)
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb


class LoRAClassifier(_ClassifierOutputs, ClassifierMixin, _Exportable, _SkorchTransferBase):
    """Parameter-efficient fine-tuning (LoRA, DoRA, IA3, prompt tuning) with PEFT.

    The backbone's weights stay frozen; small adapters injected by PEFT and
    a new head train. Training shares the skorch machinery of
    :class:`FineTunedClassifier` (warm-up + cosine schedule, gradient
    clipping, validation split, early stopping, callbacks).

    Parameters
    ----------
    backbone : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Text encoders and timm/torchvision image models of
        :func:`sktransfer.load_backbone`.
    method : {"lora", "dora", "ia3", "prompt_tuning"}, default="lora"
        ``"prompt_tuning"`` is for text encoders only.
    r : int, default=8
        LoRA/DoRA rank.
    lora_alpha : float, default=16
        LoRA scaling (the update is scaled by ``lora_alpha / r``).
    lora_dropout : float, default=0.05
    use_dora : bool, default=False
        Deprecated (0.2, removed in 0.4): use ``method="dora"``. ``True``
        still means it, with a ``FutureWarning``.
    target_modules : "auto", str (regex) or list of str, default="auto"
        Layers to adapt. "auto": attention projections of transformer
        encoders (query/key/value) and ViTs (qkv, proj); the 1×1
        convolutions of CNNs, for LoRA/DoRA only those wide enough that a
        rank-``r`` adapter holds at most 10 % of the layer's weights (see
        :func:`auto_target_modules`; ``target_modules_`` lists the choice).
        A list names layers by suffix, a string is a regular expression;
        an error lists the model's layers when nothing matches.
    num_virtual_tokens : int, default=20
        Prompt length for ``"prompt_tuning"``.
    quantize : {None, "4bit"}, default=None
        QLoRA: load the base in 4-bit with bitsandbytes. Needs CUDA (refused
        clearly at ``fit`` otherwise) and a transformers text encoder.
    head, head_hidden, head_dropout, lr, warmup, weight_decay, grad_clip, \
max_epochs, batch_size, validation_fraction, early_stopping, augment, \
image_size, max_length, pooling, bf16, device, num_workers, random_state, \
verbose, callbacks, class_weight
        As in :class:`FineTunedClassifier`; ``lr`` applies to the adapters
        and, unless ``head_lr`` is set, to the head (default 1e-3).
        ``lr="auto"`` chooses it with a learning-rate range test on the
        training rows (see :class:`FineTunedClassifier`); with ``head_lr``
        set, the head stays at ``head_lr`` during the test and only the
        adapters' rate is searched.
    head_lr : float or None, default=None
        Learning rate of the new head (None: ``lr``), so that the head and
        the adapters can be tuned apart (e.g. in ``GridSearchCV``). On
        EfficientNet-Lite0 with Fashion-MNIST a larger head rate than the
        adapters' was not better (``benchmarks/RESULTS.md``, "LoRA vs full fine-tuning").
    head_init : {"auto", "random", "probe"}, default="auto"
        ``"auto"``: ``"probe"`` for a linear head, ``"random"`` for an MLP
        head; chosen leave one task out on the suite's text tasks, where
        LoRA from a random head ended far below the frozen probe at 8
        labeled rows per class and from the probe above it
        (``benchmarks/RESULTS.md``, "Evaluation suite"). ``"probe"`` starts training from the linear probe (LP-FT, Kumar et
        al. 2022): a ``LogisticRegression`` fitted on the features of the
        training rows sets the linear head before the adapters train. The
        features are the model's at the start of training: LoRA/DoRA
        (``B = 0``) and IA3 (scales of 1) adapters leave the base unchanged
        then; with ``"prompt_tuning"`` they include the initial virtual
        tokens. Costs one forward pass over the training rows. Needs
        ``head="linear"``.
    inference_backend : {"torch", "onnx", "openvino"}, default="torch"
        What ``predict``, ``predict_proba`` and ``transform`` run: the PEFT
        model, or the adapter merged into the weights and compiled for
        ONNX Runtime or OpenVINO (as :meth:`export` writes it). Inference
        only, as in :class:`FineTunedClassifier`. Not for
        ``method="prompt_tuning"`` (virtual tokens cannot be merged).
    inference_quantize : {None, "int8"}, default=None
        int8 with a compiled ``inference_backend``, as in
        :class:`FineTunedClassifier`.
    accelerator : accelerate.Accelerator or None, default=None
        Train through Hugging Face accelerate: mixed precision and several
        GPUs of one machine (``accelerate launch``), as in
        :class:`FineTunedClassifier`; ``device`` is then left to the
        accelerator (``accelerator.device``). None: as without it. Neither
        pickled nor saved. Unverified on GPUs in this project's CI
        (verified on the CPU): see ``docs/scaling.md``.

    Attributes
    ----------
    classes_ : ndarray
    trainable_params_ : int
        Parameters that trained (adapters + head).
    trainable_fraction_ : float
        ``trainable_params_`` over all parameters.
    adapter_nbytes_ : int
        Size of what :meth:`save` writes (adapters + head), in bytes.
    target_modules_ : list of str
    base_fingerprint_ : str
        Hash of the base weights; :meth:`load` refuses a different base.
    lr_ : float
        The adapters' learning rate: ``lr``, or the one ``lr="auto"`` chose.
    lr_finder_ : LRFinderResult or None
        The range test of ``lr="auto"`` (None with a numeric ``lr``).

    Examples
    --------
    >>> from sktransfer import LoRAClassifier
    >>> texts = ["the match ended in a draw", "shares fell sharply",
    ...          "the striker scored twice", "the bank raised rates"] * 4
    >>> y = ["sport", "business", "sport", "business"] * 4
    >>> clf = LoRAClassifier(r=4, lr=5e-3, max_epochs=3, random_state=0).fit(texts, y)
    >>> clf.trainable_fraction_ < 0.02
    True
    """

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        method="lora",
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        use_dora=False,
        target_modules="auto",
        num_virtual_tokens=20,
        quantize=None,
        head="linear",
        head_hidden=256,
        head_dropout=0.1,
        head_init="auto",
        lr=1e-3,
        head_lr=None,
        warmup=0.1,
        weight_decay=0.01,
        grad_clip=1.0,
        max_epochs=5,
        batch_size=16,
        validation_fraction=0.0,
        early_stopping=None,
        augment=True,
        image_size=None,
        max_length=None,
        pooling="mean",
        bf16=True,
        device="auto",
        num_workers=0,
        random_state=None,
        verbose=0,
        callbacks=None,
        class_weight=None,
        inference_backend="torch",
        inference_quantize=None,
        accelerator=None,
    ):
        self.backbone = backbone
        self.method = method
        self.r = r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.use_dora = use_dora
        self.target_modules = target_modules
        self.num_virtual_tokens = num_virtual_tokens
        self.quantize = quantize
        self.head = head
        self.head_hidden = head_hidden
        self.head_dropout = head_dropout
        self.head_init = head_init
        self.lr = lr
        self.head_lr = head_lr
        self.warmup = warmup
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.augment = augment
        self.image_size = image_size
        self.max_length = max_length
        self.pooling = pooling
        self.bf16 = bf16
        self.device = device
        self.num_workers = num_workers
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.class_weight = class_weight
        self.inference_backend = inference_backend
        self.inference_quantize = inference_quantize
        self.accelerator = accelerator

    # -------------------------------------------------------- validation
    _parameter_constraints: dict = {
        **_SkorchTransferBase._parameter_constraints,
        **INFERENCE_CONSTRAINTS,
        "method": [StrOptions(set(METHODS))],
        "r": [Interval(Integral, 1, None, closed="left")],
        "lora_alpha": [Interval(Real, 0, None, closed="neither")],
        "lora_dropout": [Interval(Real, 0, 1, closed="both")],
        "use_dora": ["boolean"],  # deprecated: method="dora"
        # "auto", a regex, or layer names (matched against the model in fit).
        "target_modules": [str, list, tuple],
        "num_virtual_tokens": [Interval(Integral, 1, None, closed="left")],
        "quantize": [StrOptions({"4bit"}), None],
        "head_lr": [Interval(Real, 0, None, closed="neither"), None],
        "class_weight": _CLASS_WEIGHT,
    }

    def _check_params(self):
        super()._check_params()
        if self.use_dora:
            import warnings

            from ._utils import user_stacklevel

            warnings.warn(
                "use_dora=True is deprecated since 0.2 and will be removed in 0.4: use method='dora'.",
                FutureWarning,
                stacklevel=user_stacklevel(),
            )
        if self.quantize == "4bit":  # what this machine has, which no table can say
            if not torch.cuda.is_available():
                raise RuntimeError(
                    "quantize='4bit' (QLoRA) needs a CUDA GPU and the bitsandbytes package; this machine has "
                    "no CUDA device. Use quantize=None to train LoRA on the full-precision base."
                )
            try:
                import bitsandbytes  # noqa: F401
            except ImportError as exc:  # pragma: no cover - CUDA only
                raise ImportError("quantize='4bit' needs bitsandbytes: pip install bitsandbytes") from exc

    # ------------------------------------------------------------- hooks
    def _peft_config(self, module):
        import peft

        method = "dora" if self.use_dora and self.method == "lora" else self.method
        if method == "prompt_tuning":
            return None, [], method
        if self.target_modules == "auto":
            targets, feedforward = auto_target_modules(module, method, int(self.r))
            if not targets:
                raise ValueError(f"found no layer to adapt in {self.backbone!r}; name target_modules explicitly.")
        else:
            targets = _match_user_targets(module, self.target_modules)
            feedforward = targets if method == "ia3" else []
        if method == "ia3":
            cfg = peft.IA3Config(target_modules=targets, feedforward_modules=feedforward, modules_to_save=[_HEAD_NAME])
        else:
            cfg = peft.LoraConfig(
                r=self.r,
                lora_alpha=self.lora_alpha,
                lora_dropout=self.lora_dropout,
                target_modules=targets,
                use_dora=method == "dora",
                modules_to_save=[_HEAD_NAME],
            )
        return cfg, targets, method

    def _build_module(self, shared, n_out):
        import peft

        module = super()._build_module(shared, n_out)
        if self.quantize == "4bit":  # pragma: no cover - CUDA only, unverified here
            module = self._quantize_body(module, shared)
        cfg, targets, method = self._peft_config(module)
        self.method_ = method
        self.target_modules_ = targets
        if method == "prompt_tuning":
            if shared.modality != "text":
                raise ValueError(
                    f"method='prompt_tuning' needs a text encoder; {self.backbone!r} is an image model. "
                    "Use 'lora', 'dora' or 'ia3'."
                )
            encoder = module.body.encoder
            pcfg = peft.PromptTuningConfig(task_type=peft.TaskType.FEATURE_EXTRACTION, num_virtual_tokens=self.num_virtual_tokens)
            normalize = shared.pooling == "model"  # sentence-transformers models here end in Normalize
            module.body = _PromptTunedTextBody(peft.get_peft_model(encoder, pcfg), self.num_virtual_tokens, normalize)
            for name, p in module.task_head.named_parameters():
                p.requires_grad_(True)
            return module
        return peft.get_peft_model(module, cfg)

    def _init_head(self, module, data, y_enc, stratify, seed):
        # PEFT wraps the model and the head (modules_to_save): the probe is
        # fitted on the base model's features with the adapters in place (at
        # their initial state) and written into the head's trainable copy and
        # its original alike, so that they agree.
        from ._head_init import init_head_for

        core = module.get_base_model() if hasattr(module, "get_base_model") else module
        head = core.task_head
        heads = [head]
        if hasattr(head, "modules_to_save") and hasattr(head, "original_module"):
            heads = [head.original_module, *head.modules_to_save.values()]
        init_head_for(self, core, data, y_enc, stratify, seed, heads=heads)

    def _quantize_body(self, module, shared):  # pragma: no cover - CUDA only
        from transformers import AutoModel, BitsAndBytesConfig
        import peft

        if shared.modality != "text":
            raise ValueError("quantize='4bit' supports transformers text encoders only.")
        source = shared.weights_path if shared.weights_path and os.path.isdir(shared.weights_path) else shared.name.split("/", 1)[-1]
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4")
        model = AutoModel.from_pretrained(source, quantization_config=q, device_map={"": 0})
        model = peft.prepare_model_for_kbit_training(model)
        module.body.replace_encoder(model)  # every text body can, whatever library built it
        return module

    def _net_kwargs(self):
        return {"adapter_only": True, "head_lr": self.head_lr}

    def _fit(self, X, y_enc, n_out, stratify):
        super()._fit(X, y_enc, n_out, stratify)
        module = self.net_.module_
        total = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        self.trainable_params_ = int(trainable)
        self.trainable_fraction_ = float(trainable / total)
        self.adapter_nbytes_ = int(sum(v.numel() * v.element_size() for v in self._adapter_state().values()))
        with isolated_torch_rng():  # a reload (memo evicted) builds the model first: not on the user's generator
            shared = load_backbone(self.backbone, device="cpu", pooling=self.pooling)
        self.base_fingerprint_ = shared.fingerprint()
        return self

    # ------------------------------------------------------- persistence
    _SAVED_FILES = ("config.json", "adapter.safetensors")

    def _adapter_state(self, module=None):
        """Adapter weights and the head: everything that is not the frozen base."""
        module = self.net_.module_ if module is None else module
        if self.method_ == "prompt_tuning":
            core = module
            state = {f"prompt.{k}": v for k, v in core.body.encoder.prompt_encoder.state_dict().items()}
            state.update({f"{_HEAD_NAME}.{k}": v for k, v in core.task_head.state_dict().items()})
            return state
        import peft

        return peft.get_peft_model_state_dict(module)

    def _set_adapter_state(self, module, state):
        if self.method_ == "prompt_tuning":
            prompt = {k[len("prompt."):]: v for k, v in state.items() if k.startswith("prompt.")}
            head = {k[len(_HEAD_NAME) + 1:]: v for k, v in state.items() if k.startswith(_HEAD_NAME + ".")}
            module.body.encoder.prompt_encoder.load_state_dict(prompt, strict=True)
            module.task_head.load_state_dict(head, strict=True)
            return
        import peft

        result = peft.set_peft_model_state_dict(module, state)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"adapter file has weights this model lacks: {unexpected[:5]}")

    def _base_for_adapter(self, backbone, fingerprint, where, trained_on):
        """The base to put an adapter on, refused unless its weights are the ones it was trained on."""
        shared = load_backbone(backbone, device="cpu", pooling=self.pooling)
        if shared.fingerprint() != fingerprint:
            now = f"backbone={backbone!r} has" if backbone != trained_on else f"{backbone!r} now has"
            raise ValueError(
                f"The adapter in {where} was trained on {trained_on!r} (weights fingerprint {fingerprint}), "
                f"but {now} fingerprint {shared.fingerprint()}: refusing to load it onto a different model. "
                "Use the base it was trained on."
            )
        return shared

    def save(self, path):
        """Save the adapter and the head only (a few MB), plus a JSON config.

        Writes ``adapter.safetensors``, ``config.json`` and ``manifest.json``
        (the SHA-256 of each file). The base weights are not written:
        :meth:`load` reloads the base by name and checks its fingerprint.
        """
        from safetensors.torch import save_file

        check_is_fitted(self, "net_")
        os.makedirs(path, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self._adapter_state().items()}
        save_file(state, os.path.join(path, "adapter.safetensors"))
        self._write_config(path, {"base_fingerprint": self.base_fingerprint_, "method": self.method_, "target_modules": self.target_modules_})
        _persistence.write_manifest(path, self._SAVED_FILES, type(self).__name__)
        return path

    def _fitted_json(self):
        out = super()._fitted_json()
        out.update(trainable_params=self.trainable_params_, trainable_fraction=self.trainable_fraction_, adapter_nbytes=self.adapter_nbytes_)
        return out

    def _restore_fitted(self, fitted):
        super()._restore_fitted(fitted)
        self.trainable_params_ = fitted["trainable_params"]
        self.trainable_fraction_ = fitted["trainable_fraction"]
        self.adapter_nbytes_ = fitted["adapter_nbytes"]

    @classmethod
    def load(cls, path, backbone=None):
        """Load an adapter saved with :meth:`save` onto a freshly loaded base.

        The files are checked against ``manifest.json`` first (see
        :meth:`FineTunedClassifier.load`), then the base's fingerprint
        against the one the adapter was trained on, then the adapter's
        tensors against the model the config describes.

        Parameters
        ----------
        path : str
            Directory written by :meth:`save`.
        backbone : str or None
            Load the base from here instead (e.g. a local copy). Its weights
            must be the ones the adapter was trained on: a different base is
            refused.
        """
        est, meta = cls._read_config(path)
        fingerprint = meta.get("base_fingerprint")
        if not isinstance(fingerprint, str):
            raise _persistence.SaveIntegrityError(
                f"{os.path.join(str(path), 'config.json')!r} has no base_fingerprint: not a LoRAClassifier save."
            )
        trained_on = est.backbone
        if backbone is not None:
            est.backbone = backbone
        # The base's first load in a process and the new adapters' and head's
        # init draw random numbers: on a fork, not on the user's generator.
        with isolated_torch_rng():
            shared = est._base_for_adapter(est.backbone, fingerprint, repr(str(path)), trained_on)
            module = est._build_module(shared, est._n_out_fitted())
        est.base_fingerprint_ = fingerprint
        state = _persistence.load_tensors(path, "adapter.safetensors")
        expected = est._adapter_state(module)
        _persistence.check_state_fits(expected, state, path, "adapter.safetensors", est._describe_saved())
        est._set_adapter_state(module, state)
        return est._attach_net(module)

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        # What save() keeps: the adapter and the head, not the frozen base
        # (twice the base's size through skorch); the base is reloaded by
        # name on first use, as PretrainedFeatureExtractor does.
        state = dict(super().__getstate__())
        net = state.pop("net_", None)
        if net is not None:
            state["_pickled_adapter"] = {k: v.detach().cpu().clone() for k, v in self._adapter_state().items()}
        return state

    def __getattr__(self, name):
        # Only reached for attributes not set: rebuilds net_ of an unpickled
        # estimator the first time anything (predict, save, merge) asks for it.
        pending = self.__dict__.get("_pickled_adapter")
        if name != "net_" or pending is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        try:
            with isolated_torch_rng():  # loading and building draw random numbers: not from the user's generator
                shared = self._base_for_adapter(self.backbone, self.base_fingerprint_, "this unpickled LoRAClassifier", self.backbone)
                module = self._build_module(shared, self._n_out_fitted())
            self._set_adapter_state(module, pending)
            self._attach_net(module)
        except AttributeError as exc:  # hasattr() would read it as "not fitted"
            raise RuntimeError(f"could not rebuild the unpickled LoRAClassifier: {exc}") from exc
        del self.__dict__["_pickled_adapter"]
        return self.__dict__["net_"]

    # ---------------------------------------------------- compiled inference
    def _export_module(self):
        # The adapter folded into the weights: a plain body + head, as fast as
        # the base (PEFT's extra matmuls gone); predictions equal the PEFT model's.
        if self.method_ == "prompt_tuning":
            raise ValueError(
                "method='prompt_tuning' cannot be exported or compiled: its virtual tokens cannot be merged "
                "into the weights. Use inference_backend='torch', or method='lora'."
            )
        return self.merge().net_.module_

    # ------------------------------------------------------------ merging
    def merge(self):
        """Fold the adapter into the weights: a plain fine-tuned model.

        Returns
        -------
        model : FineTunedClassifier
            Fitted, with the merged weights (no adapter overhead at
            inference); its predictions equal this estimator's.
        """
        from ._fine_tuning import FineTunedClassifier

        check_is_fitted(self, "net_")
        if self.method_ == "prompt_tuning":
            raise ValueError("prompt tuning adds virtual tokens, which cannot be merged into the weights.")
        peft_model = copy.deepcopy(self.net_.module_).cpu()
        core = peft_model.get_base_model()
        # Hand PEFT the trained head as a plain module before unloading: its
        # unload path does not expect a wrapped head (IA3 fails on it).
        core.task_head = _unwrap_head(core.task_head)
        plain = peft_model.merge_and_unload()
        common = {k: v for k, v in self.get_params().items() if k in FineTunedClassifier().get_params()}
        ft = FineTunedClassifier(**{**common, "strategy": "full"})
        ft.classes_ = self.classes_
        ft._wise_fingerprint = self.base_fingerprint_  # set_wise_alpha on the merged model mixes with this base
        for attr in ("n_epochs_", "history_"):
            setattr(ft, attr, getattr(self, attr, None))
        return ft._attach_net(plain)


def _unwrap_head(head):
    import peft

    if isinstance(head, peft.utils.other.ModulesToSaveWrapper):
        return head.modules_to_save[head.active_adapters[0]]
    return head


def merge_adapters(estimators, weights=None, *, combination_type="linear", density=None):
    """Combine LoRA adapters trained on different tasks (PEFT weighted merging).

    All estimators must share the base model and adapter targets. The
    merged adapter replaces each one's own; every task keeps its head, so
    one model answers all tasks.

    Parameters
    ----------
    estimators : list of fitted LoRAClassifier
    weights : list of float or None
        One weight per adapter (default: equal).
    combination_type : {"linear", "ties", "dare_linear", "dare_ties", "svd", "cat"}
        PEFT's ``add_weighted_adapter`` method. "linear" needs equal ranks.
    density : float or None
        Fraction of weights kept by TIES/DARE.

    Returns
    -------
    merged : list of LoRAClassifier
        Copies of ``estimators`` (same heads) that all use the merged adapter.
    """
    import peft

    if len(estimators) < 2:
        raise ValueError("merge_adapters needs at least two fitted LoRAClassifier estimators.")
    for est in estimators:
        check_is_fitted(est, "net_")
        if est.method_ not in ("lora", "dora"):
            raise ValueError(f"only LoRA adapters can be merged, got method={est.method_!r}.")
    base = estimators[0]
    for est in estimators[1:]:
        if est.base_fingerprint_ != base.base_fingerprint_:
            raise ValueError("adapters were trained on different base models; they cannot be merged.")
        if est.target_modules_ != base.target_modules_:
            raise ValueError("adapters target different layers; they cannot be merged.")
    weights = [1.0 / len(estimators)] * len(estimators) if weights is None else list(weights)
    if len(weights) != len(estimators):
        raise ValueError(f"{len(weights)} weights for {len(estimators)} estimators.")
    states = []
    for est in estimators:
        state = peft.get_peft_model_state_dict(est.net_.module_)
        # Only adapter weights are merged: each task keeps its own head.
        states.append({k: v for k, v in state.items() if _HEAD_NAME not in k})
    out = []
    for est in estimators:
        wrapped = copy.deepcopy(est.net_.module_).cpu()
        core = wrapped.get_base_model()
        core.task_head = _unwrap_head(core.task_head)
        clean = wrapped.unload()  # base weights + this task's head, no adapter
        # PEFT refuses weighted merging when modules_to_save is set: the head
        # stays outside PEFT here, as a plain trained module.
        cfg = copy.deepcopy(est.net_.module_.peft_config["default"])
        cfg.modules_to_save = None
        names = [f"task{j}" for j in range(len(estimators))]
        model = peft.get_peft_model(clean, cfg, adapter_name=names[0])
        for name, state in zip(names, states):
            if name != names[0]:
                model.add_adapter(name, copy.deepcopy(cfg))
            peft.set_peft_model_state_dict(model, state, adapter_name=name)
        model.base_model.add_weighted_adapter(names, weights, "merged", combination_type=combination_type, density=density)
        model.set_adapter("merged")
        for name in names:
            model.delete_adapter(name)
        new = copy.copy(est)
        new.__dict__ = dict(est.__dict__)
        new._attach_net(model)
        out.append(new)
    return out
