"""Text backbones: sentence-transformers models and Hugging Face encoders."""

import torch
from torch import nn

from . import _offline
from ._base import Backbone, mean_pool


class _SentenceTransformerBody(nn.Module):
    """Token ids → the model's own sentence embedding (pooling, Normalize...)."""

    def __init__(self, st_model):
        super().__init__()
        self.st = st_model

    @property
    def encoder(self):
        """The transformers encoder inside (what PEFT wraps or a quantized copy replaces)."""
        return self.st[0].auto_model

    def replace_encoder(self, model):
        # A method, not a property setter: nn.Module.__setattr__ would register
        # an nn.Module value under the name and never call the setter. For the
        # same reason, assigning sentence-transformers' ``auto_model`` (a
        # read-only property over the child module ``model`` in 6.x) does
        # nothing: replace the child itself.
        transformer = self.st[0]
        import inspect

        if isinstance(inspect.getattr_static(type(transformer), "auto_model", None), property) and hasattr(transformer, "model"):
            transformer.model = model
        else:  # sentence-transformers < 6: a plain attribute
            transformer.auto_model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            features["token_type_ids"] = token_type_ids
        return self.st(features)["sentence_embedding"]


class _PooledEncoderBody(nn.Module):
    """A transformers encoder with mean or CLS pooling over its last layer."""

    def __init__(self, model, pooling="mean"):
        super().__init__()
        self.model = model
        self.pooling = pooling

    @property
    def encoder(self):
        """The transformers encoder (what PEFT wraps or a quantized copy replaces)."""
        return self.model

    def replace_encoder(self, model):
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.model(**kwargs).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, attention_mask)


class TextBackbone(Backbone):
    """A text encoder: tokenizer from the model, pooled sentence features."""

    modality = "text"

    def __init__(self, name, body, embedding_dim, source, tokenizer, max_length, pooling="mean"):
        super().__init__(name, body, embedding_dim, source)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pooling = pooling
        self.device = "cpu"

    def preprocess_config(self, max_length=None):
        return {"max_length": int(max_length or self.max_length), "pooling": self.pooling}

    def position_limit(self):
        """The most tokens the encoder can take (None if it has no fixed limit).

        Read from the model's own position embeddings, not from the default
        truncation length (sentence-transformers' ``max_seq_length`` is a
        default: MiniLM truncates at 256 but reads up to 512). Encoders whose
        positions start after the padding index (RoBERTa: 514 embeddings,
        padding_idx 1) lose ``padding_idx + 1`` of them.
        """
        encoder = self.body.encoder
        table = getattr(getattr(encoder, "embeddings", None), "position_embeddings", None)
        if isinstance(table, nn.Embedding):
            offset = 0 if table.padding_idx is None else table.padding_idx + 1
            return int(table.num_embeddings) - offset
        n = getattr(encoder.config, "max_position_embeddings", None)
        return int(n) if n else None

    def check_max_length(self, max_length):
        """Resolve ``max_length`` (None: the default) and check it fits the model."""
        if max_length is None:
            return self.max_length
        limit = self.position_limit()
        if limit is not None and int(max_length) > limit:
            raise ValueError(
                f"max_length={max_length} is more than {self.name!r} can read: its limit of {limit} tokens "
                f"(its position embeddings). Use max_length <= {limit}, or None for the default "
                f"({self.max_length}); longer texts are truncated."
            )
        return int(max_length)

    def module_inputs(self, items, rows, max_length=None, image_size=None):
        return self.collate([items[i] for i in rows], max_length=max_length)

    def chunk(self, items, max_length=None, overlap=0.125):
        """Split texts into overlapping token windows the model can read whole.

        Each window holds at most ``max_length`` tokens (None: the model's
        default), special tokens included, so it is a complete input of the
        model. Consecutive windows of a text share ``overlap`` (a fraction of
        the window's text tokens) so that a sentence cut at one window's edge
        is read whole in the next. A text that fits in one window gives one
        window, with the same tokens as :meth:`collate` (truncation) gives it.

        Parameters
        ----------
        items : list of str
            Validated texts.
        max_length : int or None
            Tokens per window.
        overlap : float in [0, 0.5]
            Fraction of a window's text tokens repeated in the next window.

        Returns
        -------
        windows : list of dict
            One tokenized window each (token lists, unpadded): rows for
            :meth:`window_inputs`.
        owner : ndarray of int64, shape (n_windows,)
            The index in ``items`` of each window's text, in order.
        """
        import numpy as np

        limit = self.check_max_length(max_length)
        room = limit - self.tokenizer.num_special_tokens_to_add(pair=False)
        if room < 2:
            raise ValueError(
                f"max_length={limit} leaves {max(room, 0)} text tokens per window for {self.name!r}: too few to "
                "split texts into overlapping windows. Use a larger max_length."
            )
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(
                f"Splitting long texts into windows needs a fast (Rust) tokenizer, and {self.name!r} has a slow "
                f"one ({type(self.tokenizer).__name__}). Use long_texts='truncate'."
            )
        stride = min(int(round(float(overlap) * room)), room - 1)  # tokens shared by consecutive windows
        enc = self.tokenizer(
            list(items), truncation=True, max_length=limit, stride=stride,
            return_overflowing_tokens=True, padding=False,
        )
        keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        windows = [{k: enc[k][j] for k in keep} for j in range(len(enc["input_ids"]))]
        return windows, np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)

    def window_inputs(self, windows, rows):
        """Rows ``rows`` of :meth:`chunk`'s windows → keyword inputs of the body, one batch
        padded to its longest window (as :meth:`module_inputs` for whole texts)."""
        batch = self.tokenizer.pad([windows[i] for i in rows], padding=True, return_tensors="pt")
        return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}

    def check_inputs(self, X):
        from .._inputs import check_texts

        return check_texts(X)

    def batch_order(self, items):
        """Longest texts first, as ``SentenceTransformer.encode`` batches: less padding."""
        import numpy as np

        return np.argsort([-len(t) for t in items], kind="stable")

    def example_inputs(self):
        return ["example"]

    def prompts_as_inputs(self, texts, purpose):
        return self.check_inputs(texts)

    def embed_prompts(self, texts, max_length=None, batch_size=64):
        texts = list(texts)
        order = self.batch_order(texts)
        out = torch.empty((len(texts), self.embedding_dim), dtype=torch.float32)
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            out[torch.as_tensor(idx)] = self.embed(self.module_inputs(texts, idx, max_length)).cpu()
        return out

    def export_spec(self, layer=None, max_length=None, image_size=None):
        """The body as an ONNX-exportable module: token inputs by name, dynamic batch and length."""
        from ._base import ExportSpec, PositionalBody

        if layer is not None:
            raise NotImplementedError(
                f"layer={layer} (an intermediate layer) is not exported: only the final embedding "
                "(layer=None) is"
            )
        batch = self.collate(["an example text to trace the body with", "short"], max_length=max_length)
        names = tuple(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch)
        axes = {k: {0: "batch", 1: "sequence"} for k in names}
        axes["embedding"] = {0: "batch"}
        return ExportSpec(
            module=PositionalBody(self.body, names).eval(),
            input_names=names,
            example=tuple(batch[k] for k in names),
            dynamic_axes=axes,
            graph_key={},
            int8="dynamic",
            nncf_model_type="TRANSFORMER",
        )

    def encode(self, items, max_length=None, image_size=None, warn_truncation=False):
        """Token ids and attention masks padded to ``max_length``, int64 (``warn_truncation``: at fit)."""
        import numpy as np

        limit = self.check_max_length(max_length)
        enc = self.tokenizer(list(items), padding="max_length", truncation=True, max_length=limit, return_tensors="np")
        if warn_truncation:
            self.warn_truncation(items, limit)
        return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}

    def warn_truncation(self, texts, max_length=None):
        """Warn, naming how many, when some of ``texts`` are longer than the limit (they will be truncated).

        Every estimator that trains calls this once at ``fit``; the warning
        points at the user's call. Returns the number of long texts.
        """
        import warnings

        import numpy as np

        from .._utils import user_stacklevel

        limit = self.check_max_length(max_length)
        lengths = self.tokenizer(list(texts), truncation=False, return_length=True)["length"]
        n_long = int(np.sum(np.asarray(lengths) > limit))
        if n_long:
            warnings.warn(
                f"{n_long} of {len(texts)} texts are longer than the model's limit of {limit} tokens "
                "and were truncated (set max_length to change the limit).",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        return n_long

    def collate(self, items, max_length=None, image_size=None):
        enc = self.tokenizer(
            list(items),
            padding=True,
            truncation=True,
            max_length=self.check_max_length(max_length),
            return_tensors="pt",
        )
        keep = ("input_ids", "attention_mask", "token_type_ids")
        return {k: v for k, v in enc.items() if k in keep}

    def n_layers(self):
        return int(self.body.encoder.config.num_hidden_layers) + 1

    def layer_dim(self, layer):
        return self.embedding_dim if layer is None else int(self.body.encoder.config.hidden_size)

    def embed(self, batch, layer=None):
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            if layer is None:
                return self.body(**batch).float()
            out = self.body.encoder(**batch, output_hidden_states=True)
            return mean_pool(out.hidden_states[layer], batch["attention_mask"]).float()

    def block_groups(self):
        return encoder_block_groups(self.body, self.body.encoder)


def encoder_block_groups(root, encoder):
    """Embeddings, then each transformer layer, then anything above.

    The layers are the model's own ``ModuleList`` of ``num_hidden_layers``
    blocks (BERT's ``encoder.layer``, DistilBERT's ``transformer.layer``...),
    found from the config, not from per-model name lists.
    """
    n = int(encoder.config.num_hidden_layers)
    layers = None
    for _name, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            layers = module
            break
    if layers is None:
        raise ValueError("could not find the transformer layers of this encoder")
    owner = {}
    for i, block in enumerate(layers):
        for p in block.parameters():
            owner[id(p)] = i + 1
    first, last = [], []
    groups = [[] for _ in range(n)]
    seen_layer = False
    for name, p in root.named_parameters():
        g = owner.get(id(p))
        if g is None:
            (last if seen_layer else first).append(name)
        else:
            seen_layer = True
            groups[g - 1].append(name)
    return [g for g in [first, *groups, last] if g]


def _st_max_length(st):
    return int(st.max_seq_length or 512)


def load_sentence_transformer(model_id, name, local_dir=None):
    from sentence_transformers import SentenceTransformer

    def from_dir(path):
        return SentenceTransformer(str(path), device="cpu")

    if local_dir is not None:
        st, source, path = from_dir(local_dir), "path", str(local_dir)
    else:
        canonical = model_id if "/" in model_id else f"sentence-transformers/{model_id}"
        st, source, path = _offline.hub_first("sentence-transformers", model_id, canonical, from_dir)
    st.eval()
    body = _SentenceTransformerBody(st)
    tok = st[0].tokenizer
    bb = TextBackbone(name, body, st.get_embedding_dimension(), source, tok, _st_max_length(st), "model")
    bb.weights_path = path
    return bb


def load_hf_encoder(model_id, name, pooling="mean", local_dir=None):
    from transformers import AutoModel, AutoTokenizer

    def from_dir(path):
        return AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path))

    if local_dir is not None:
        (tok, model), source, path = from_dir(local_dir), "path", str(local_dir)
    else:
        (tok, model), source, path = _offline.hub_first("transformers", model_id, model_id, from_dir)
    model.eval()
    max_len = min(int(getattr(tok, "model_max_length", 512) or 512), int(getattr(model.config, "max_position_embeddings", 512)))
    body = _PooledEncoderBody(model, pooling)
    bb = TextBackbone(name, body, model.config.hidden_size, source, tok, max_len, pooling)
    bb.weights_path = path
    return bb


def wrap_text_module(module, name="module"):
    """An already-built ``SentenceTransformer``."""
    import copy

    st = copy.deepcopy(module).eval()
    body = _SentenceTransformerBody(st)
    bb = TextBackbone(name, body, st.get_embedding_dimension(), "module", st[0].tokenizer, _st_max_length(st), "model")
    bb.weights_path = None
    return bb
