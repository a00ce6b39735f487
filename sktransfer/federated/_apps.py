"""The Flower apps of federated transfer: one ``ClientApp``, one ``ServerApp``.

Both are Flower's own (Message API, ``flwr>=1.22``): the server runs one of
Flower's strategies (``FedAvg`` / ``FedProx``, optionally wrapped in
``DifferentialPrivacyClientSideFixedClipping``, with Flower's
``fixedclipping_mod`` on the client) through ``Strategy.start``; nothing
here re-implements a round, sampling, aggregation, clipping or noise. The
same apps run in Flower's simulation runtime (``run_simulation``, used by
:class:`~sktransfer.federated.FederatedTransferClassifier`) and on its
deployment engine (SuperLink + SuperNodes, see ``_deployment.py``): what
differs is only where a client finds its rows and the server its
settings, which both apps read through callables of the Flower ``Context``.

A client trains with the project's one trainer: a ``LoRAClassifier`` or
``FineTunedClassifier`` (``_ClientLoRA`` / ``_ClientFineTuned`` below)
whose ``_init_head`` hook starts the module from the global trainable
weights instead of a new head, and whose ``_method_callbacks`` add FedProx's
proximal term (the project's ``L2SP`` callback, whose gradient
``mu * (w - w_ref)`` is exactly FedProx's with the global weights as the
reference). Only the trainable weights (adapters + head, or head + top
blocks) travel, as an ``ArrayRecord``; the metrics are scalars.
"""

import os

# Flower and Ray report usage to their servers unless told not to; this
# package runs offline (the user's own setting wins).
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import dataclasses
import json
import math

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedProx
from skorch.callbacks import Callback

from .._fine_tuning import FineTunedClassifier
from .._lora import LoRAClassifier
from .._seeding import isolated_torch_rng, seed_torch
from ..backbones import load_backbone
from ..callbacks import FreezeSchedule, L2SP

#: The message type of the personalisation step (Flower routes
#: ``"train.personalize"`` to the ClientApp's ``@app.train("personalize")``).
PERSONALIZE = "train.personalize"
ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"


@dataclasses.dataclass
class FederationSpec:
    """What the server and every client need to know, besides the clients' rows (JSON-able).

    ``local_params`` are the parameters of the local estimator
    (``LoRAClassifier`` for ``strategy="lora"``, else ``FineTunedClassifier``).
    """

    strategy: str
    local_params: dict
    n_classes: int
    n_clients: int
    clients_per_round: int
    rounds: int
    local_epochs: int
    aggregation: str
    proximal_mu: float
    dp_clipping_norm: float = None
    dp_noise_multiplier: float = None
    personalize: bool = False
    evaluate: bool = True  # clients evaluate each new global model on their rows (loss, accuracy)
    seed: int = 0
    timeout: float = 3600.0

    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


# ------------------------------------------------------------ the trainer
class _FromGlobalWeights:
    """Mixin of the client estimators: start from the global weights, pulled towards them (FedProx).

    ``_global_state`` (trainable weights by parameter name) replaces the new
    head's initialisation (``_init_head``, the trainer's hook run after
    ``_build_module``); ``_proximal_mu > 0`` adds FedProx's proximal term as
    an :class:`~sktransfer.callbacks.L2SP` pull towards them;
    ``_head_only`` trains the head alone (personalisation).
    """

    _global_state = None
    _proximal_mu = 0.0
    _head_only = False

    def _init_head(self, module, data, y_enc, stratify, seed):
        if self._global_state is None:
            return super()._init_head(module, data, y_enc, stratify, seed)
        load_trainable(module, self._global_state)

    def _method_callbacks(self, module, shared):
        cbs = list(super()._method_callbacks(module, shared))
        if self._proximal_mu and self._global_state is not None:
            cbs.append(("fedprox", L2SP(float(self._proximal_mu), self._global_state)))
        if self._head_only:
            cbs.append(("head_only", _HeadOnly()))
        return cbs


class _HeadOnly(Callback):
    """Train the head alone (after the strategy's own freezing): personalised heads."""

    def on_epoch_begin(self, net, **kwargs):
        for name, p in net.module_.named_parameters():
            if "task_head." not in name:
                p.requires_grad_(False)


class _ClientLoRA(_FromGlobalWeights, LoRAClassifier):
    pass


class _ClientFineTuned(_FromGlobalWeights, FineTunedClassifier):
    pass


def local_estimator(spec, *, max_epochs=1, random_state=0):
    """The project's estimator that trains on one client (unfitted)."""
    cls = _ClientLoRA if spec.strategy == "lora" else _ClientFineTuned
    params = dict(spec.local_params, max_epochs=int(max_epochs), random_state=int(random_state))
    if spec.strategy != "lora":
        params["strategy"] = spec.strategy
    return cls(**params)


def trainable_names(module, spec):
    """Names of the parameters that train, and so travel: adapters + head, or head + top blocks."""
    if spec.strategy == "lora":
        return [n for n, p in module.named_parameters() if p.requires_grad]
    groups = module.block_groups
    k = FreezeSchedule(spec.strategy, spec.local_params.get("unfreeze_last", 2)).n_unfrozen(0, len(groups))
    body = {f"body.{n}" for g in groups[len(groups) - k :] for n in g} if k else set()
    return [n for n, _ in module.named_parameters() if not n.startswith("body.") or n in body]


def trainable_state(module, names):
    params = dict(module.named_parameters())
    return {n: params[n].detach().cpu().clone() for n in names}


def load_trainable(module, state):
    """Write ``state`` (a subset of the module's parameters, by name) into ``module``; every name must exist."""
    params = dict(module.named_parameters())
    unknown = [k for k in state if k not in params]
    if unknown:
        raise ValueError(f"the global weights name parameters this model lacks: {unknown[:5]}")
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(torch.as_tensor(v, dtype=params[k].dtype))


def build_module(spec, state=None, *, seed=None):
    """The local estimator's module (on the CPU), with ``state`` written into it; and the estimator."""
    est = local_estimator(spec, random_state=spec.seed if seed is None else seed)
    with isolated_torch_rng():
        shared = load_backbone(est.backbone, device="cpu", pooling=est.pooling)
        seed_torch(spec.seed if seed is None else seed)
        module = est._build_module(shared, spec.n_classes)
    if state is not None:
        load_trainable(module, state)
    return est, module


def initial_state(spec):
    """The global weights of round 0: a new head (and LoRA adapters at B=0), seeded by ``spec.seed``."""
    _, module = build_module(spec)
    return trainable_state(module, trainable_names(module, spec))


def full_model_nbytes(spec):
    _, module = build_module(spec)
    return int(sum(p.numel() * p.element_size() for p in module.parameters()))


def local_fit(spec, X, y_enc, state, *, epochs, seed, proximal_mu=0.0, head_only=False):
    """Train the global weights ``state`` on one client's rows with the trainer; the new weights and the loss."""
    est = local_estimator(spec, max_epochs=epochs, random_state=seed)
    est._global_state, est._proximal_mu, est._head_only = state, proximal_mu, head_only
    est._check_params()
    est.classes_ = np.arange(spec.n_classes)  # the global classes, whatever this client holds
    est._fit(X, np.asarray(y_enc, dtype=np.int64), spec.n_classes, True)
    module = est.net_.module_
    new = trainable_state(module, list(state))
    loss = float(est.history_[-1, "train_loss"])
    return new, loss


def centralised_evaluate_fn(spec, X, y_enc):
    """Flower's ``evaluate_fn`` (server side): log loss and accuracy of the global weights on held-out rows."""

    def evaluate(server_round, arrays):
        loss, acc = local_evaluate(spec, X, y_enc, _state_of(arrays))
        return MetricRecord({"loss": loss, "accuracy": acc})

    return evaluate


def local_evaluate(spec, X, y_enc, state):
    """Log loss and accuracy of the weights ``state`` on rows ``X`` (no training)."""
    est, module = build_module(spec, state)
    est.classes_ = np.arange(spec.n_classes)
    est._attach_net(module)
    proba = est.predict_proba(X)
    y = np.asarray(y_enc, dtype=np.int64)
    p = np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.log(p).mean()), float((proba.argmax(1) == y).mean())


# ------------------------------------------------------------- ClientApp
def _state_of(record):
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in zip(record.keys(), record.to_numpy_ndarrays())}


def to_record(state):
    """An ``ArrayRecord`` of named tensors or arrays, in their order."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v.numpy() if torch.is_tensor(v) else v)) for k, v in state.items()})


def _reply(msg, arrays, metrics):
    content = RecordDict({METRICS: MetricRecord(metrics)})
    if arrays is not None:
        content[ARRAYS] = to_record(arrays)
    return Message(content=content, reply_to=msg)


def make_client_app(get_spec, get_partition, mods=()):
    """A Flower ``ClientApp`` that trains the project's estimators on the rows of its SuperNode.

    Parameters
    ----------
    get_spec : callable(Context) -> FederationSpec
    get_partition : callable(Context) -> (rows, encoded labels)
        This node's rows (simulation: by ``partition-id``; deployment: a
        file named in the node's config).
    mods : sequence of Flower mods
        Extra client mods, outermost first (tests use one that fails).
        With ``dp_clipping_norm``, Flower's ``fixedclipping_mod`` is added
        last, so that it clips what leaves the client.

    Replies: ``train`` and ``train.personalize`` send the trainable weights
    (the same names as received) and a ``MetricRecord`` of scalars
    (``num-examples``, ``train-loss``, ``partition-id``; ``train`` also
    ``update-norm``, the L2 norm of the update before any DP clipping);
    ``evaluate`` sends
    scalars only (``num-examples``, ``loss``, ``accuracy``).
    """

    app = ClientApp(mods=list(mods))

    @app.train(mods=[_clipping_if_configured])
    def train(msg: Message, context: Context) -> Message:
        spec = get_spec(context)
        X, y = get_partition(context)
        cfg = msg.content[CONFIG]
        rnd = int(cfg.get("server-round", 1))
        pid = int(context.node_config.get("partition-id", 0))
        state = _state_of(msg.content[ARRAYS])
        new, loss = local_fit(
            spec, X, y, state, epochs=int(cfg.get("local-epochs", spec.local_epochs)),
            seed=client_seed(spec.seed, rnd, pid), proximal_mu=float(cfg.get("proximal-mu", 0.0)),
        )
        # The L2 norm of this client's update before any DP clipping (the
        # mod clips after this function): what dp_clipping_norm is chosen from.
        norm = math.sqrt(sum(float(((new[k].float() - state[k].float()) ** 2).sum()) for k in new))
        return _reply(msg, new, {"num-examples": len(y), "train-loss": loss, "partition-id": pid, "update-norm": norm})

    @app.train("personalize")
    def personalize(msg: Message, context: Context) -> Message:
        # After the last round: the global model's head fine-tuned on this
        # client's rows; only the head's weights are sent back.
        spec = get_spec(context)
        X, y = get_partition(context)
        pid = int(context.node_config.get("partition-id", 0))
        state = _state_of(msg.content[ARRAYS])
        new, loss = local_fit(
            spec, X, y, state, epochs=spec.local_epochs, seed=client_seed(spec.seed, spec.rounds + 1, pid),
            head_only=True,
        )
        head = {k: v for k, v in new.items() if "task_head." in k}
        return _reply(msg, head, {"num-examples": len(y), "train-loss": loss, "partition-id": pid})

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        spec = get_spec(context)
        X, y = get_partition(context)
        loss, acc = local_evaluate(spec, X, y, _state_of(msg.content[ARRAYS]))
        return _reply(msg, None, {"num-examples": len(y), "loss": loss, "accuracy": acc})

    return app


def _clipping_if_configured(msg, context, call_next):
    """Flower's ``fixedclipping_mod`` when the server's DP wrapper sent a clipping norm; else a pass-through."""
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    cfg = msg.content.config_records.get(CONFIG)
    if cfg is not None and KEY_CLIPPING_NORM in cfg:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


def client_seed(seed, server_round, partition_id):
    """Each client's seed in each round (shuffling, dropout): distinct, and repeatable from the fit's seed."""
    return int((int(seed) + 7919 * int(server_round) + 104729 * int(partition_id)) % (2**31 - 1))


# ------------------------------------------------------------- ServerApp
def _aggregate_train_metrics(contents, weighted_by_key):
    """Flower's ``train_metrics_aggr_fn``: the loss weighted by rows, the clients that replied, and the
    median and largest norm of their updates (before DP clipping)."""
    n = [float(c[METRICS]["num-examples"]) for c in contents]
    loss = [float(c[METRICS]["train-loss"]) for c in contents]
    norms = [float(c[METRICS]["update-norm"]) for c in contents if "update-norm" in c[METRICS]]
    total = sum(n)
    return MetricRecord({
        "train-loss": sum(a * b for a, b in zip(n, loss)) / total if total else math.nan,
        "num-examples": int(total),
        "clients": len(contents),
        "update-norm-median": float(np.median(norms)) if norms else math.nan,
        "update-norm-max": float(max(norms)) if norms else math.nan,
    })


def make_strategy(spec):
    """Flower's FedAvg or FedProx, wrapped in its client-side fixed-clipping DP strategy when asked."""
    kwargs = dict(
        fraction_train=spec.clients_per_round / spec.n_clients,
        fraction_evaluate=spec.clients_per_round / spec.n_clients if spec.evaluate else 0.0,
        min_train_nodes=spec.clients_per_round,
        min_evaluate_nodes=spec.clients_per_round if spec.evaluate else 0,
        min_available_nodes=spec.n_clients,
        train_metrics_aggr_fn=_aggregate_train_metrics,
    )
    if spec.aggregation == "fedprox":
        strategy = FedProx(proximal_mu=float(spec.proximal_mu), **kwargs)
    else:
        strategy = FedAvg(**kwargs)
    if spec.dp_clipping_norm is not None:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy,
            noise_multiplier=float(spec.dp_noise_multiplier or 0.0),
            clipping_norm=float(spec.dp_clipping_norm),
            num_sampled_clients=spec.clients_per_round,
        )
    return strategy


class RecordingGrid:
    """Flower's ``Grid``, with what went through it written down (bytes, failures), per message.

    The strategy talks to this object exactly as to the grid it wraps; each
    reply is counted (its ``ArrayRecord`` bytes, or its error) against the
    round and message type it answers. Why a proxy of our own: Flower's
    strategies log the error replies and return aggregates only, and
    ``history_`` reports each round's failures and the bytes measured on
    the messages themselves.
    """

    def __init__(self, grid):
        self._grid = grid
        self.log = []

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        sent = {}
        for m in messages:
            cfg = m.content.config_records.get(CONFIG)
            key = (m.metadata.message_type, int(cfg.get("server-round", 0)) if cfg is not None else 0)
            out = sum(r.count_bytes() for r in m.content.array_records.values())
            sent[key] = sent.get(key, 0) + out
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        entry = {
            "message_type": messages[0].metadata.message_type if messages else None,
            "round": next(iter(sent))[1] if sent else 0,
            "sampled": len(messages),
            "bytes_to_clients": sum(sent.values()),
            "bytes_from_clients": 0,
            "replies": 0,
            "errors": [],
        }
        for r in replies:
            if r.has_error():
                entry["errors"].append(f"node {r.metadata.src_node_id}: {r.error.reason}")
            else:
                entry["replies"] += 1
                entry["bytes_from_clients"] += sum(a.count_bytes() for a in r.content.array_records.values())
        self.log.append(entry)
        return replies


def make_server_app(get_spec, on_result, evaluate_fn=None):
    """A Flower ``ServerApp``: the strategy's rounds, then (``personalize``) one personalisation exchange.

    Parameters
    ----------
    get_spec : callable(Context) -> FederationSpec
    on_result : callable(dict, Context)
        Receives ``{"arrays": final global weights (name -> ndarray),
        "train": {round: metrics}, "evaluate": {round: metrics},
        "grid_log": [...], "personal": {partition-id: head weights}}``.
    evaluate_fn : callable(round, ArrayRecord) -> MetricRecord, optional
        Flower's centralised evaluation of the global weights after each
        round (``Strategy.start(evaluate_fn=...)``); its metrics come back
        under ``"server_evaluate"``.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        spec = get_spec(context)
        strategy = make_strategy(spec)
        recording = RecordingGrid(grid)
        start = to_record(initial_state(spec))
        result = strategy.start(
            grid=recording,
            initial_arrays=start,
            num_rounds=spec.rounds,
            timeout=spec.timeout,
            train_config=ConfigRecord({"local-epochs": spec.local_epochs}),
            evaluate_fn=evaluate_fn,
        )
        final = result.arrays if len(result.arrays) else start
        out = {
            "arrays": dict(zip(final.keys(), final.to_numpy_ndarrays())),
            "train": {r: dict(m) for r, m in result.train_metrics_clientapp.items()},
            "evaluate": {r: dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
            "server_evaluate": {r: dict(m) for r, m in result.evaluate_metrics_serverapp.items()},
            "personal": {},
        }
        if spec.personalize:
            # Not a strategy round: one message to every node with the final
            # weights, sent with Flower's Grid (no Flower strategy personalises).
            nodes = list(grid.get_node_ids())
            msgs = [
                Message(content=RecordDict({ARRAYS: final, CONFIG: ConfigRecord({"server-round": spec.rounds + 1})}),
                        message_type=PERSONALIZE, dst_node_id=n)
                for n in nodes
            ]
            for r in recording.send_and_receive(msgs, timeout=spec.timeout):
                if not r.has_error():
                    pid = int(r.content[METRICS]["partition-id"])
                    rec = r.content[ARRAYS]
                    out["personal"][pid] = dict(zip(rec.keys(), rec.to_numpy_ndarrays()))
        out["grid_log"] = recording.log
        on_result(out, context)

    return app
