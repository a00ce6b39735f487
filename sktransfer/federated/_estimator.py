"""`FederatedTransferClassifier`: transfer learning across clients that keep their rows, on Flower."""

import contextlib
import logging
import os
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._inputs import as_rows
from .._seeding import fit_seed
from .._utils import trained_model_tags, user_stacklevel
from .._validation import check_params, encode_known_labels, encode_labels

STRATEGIES = ("lora", "linear_probe", "partial")

# The local estimators' parameters this estimator passes on (same names, same meaning).
_LOCAL_COMMON = ("backbone", "head", "lr", "weight_decay", "grad_clip", "batch_size", "max_length", "image_size", "pooling",
                 "device")


class FederatedOneClassWarning(UserWarning):
    """A client holds rows of a single class (expected with strongly non-IID data)."""


class FederatedTransferClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tune a pretrained backbone across clients that never share their rows (Flower).

    Each client trains the global model on its own rows for
    ``local_epochs`` with the project's trainer (``LoRAClassifier`` for
    ``strategy="lora"``, ``FineTunedClassifier`` for ``"linear_probe"`` and
    ``"partial"``); only the weights that train (adapters + head, or head +
    top blocks) travel to the server, which averages them with Flower's
    ``FedAvg`` or ``FedProx``, for ``rounds`` rounds. ``fit`` runs the
    Flower apps in Flower's simulation runtime (one process, Ray actors for
    the clients); the same apps run on Flower's deployment engine (see
    ``docs/federated.md``). ``predict`` uses the global model.

    Parameters
    ----------
    backbone : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Any name :func:`sktransfer.load_backbone` accepts.
    strategy : {"lora", "linear_probe", "partial"}, default="lora"
        What trains at each client and travels: LoRA adapters + head
        (``r``, ``lora_alpha``), the head alone, or the head + the top
        ``unfreeze_last`` block groups.
    rounds : int, default=10
        Federated rounds (local training, then aggregation).
    clients_per_round : int or None, default=None
        Clients sampled (uniformly, by Flower) each round; None: all.
    local_epochs : int, default=1
        Epochs each sampled client trains per round.
    aggregation : {"fedavg", "fedprox"}, default="fedavg"
        Flower's strategy. Both average the clients' weights by their
        number of rows; ``"fedprox"`` also pulls local training towards the
        global weights with ``proximal_mu / 2 * ||w - w_global||²``.
    proximal_mu : float, default=0.01
        FedProx's proximal strength (ignored with ``"fedavg"``).
    dp_clipping_norm : float or None, default=None
        Differential privacy (Flower's ``DifferentialPrivacyClientSideFixedClipping``
        with its ``fixedclipping_mod``): each client's update (new weights
        minus global weights) is clipped to this L2 norm on the client,
        before it leaves. None: no clipping, no noise.
    dp_noise_multiplier : float or None, default=None
        With ``dp_clipping_norm``: Gaussian noise of standard deviation
        ``dp_noise_multiplier * dp_clipping_norm / clients_per_round`` added
        by the server to the averaged weights each round (central DP).
        None: clipping only. No privacy budget (epsilon) is computed here.
    personalize : bool, default=False
        After the last round, each client fine-tunes the global model's
        head on its rows for ``local_epochs``: ``client_models_``.
    federated_evaluation : bool, default=True
        After each round the sampled clients evaluate the new global model
        on their own rows (Flower's federated evaluation: ``loss`` and
        ``accuracy`` in ``history_``). False skips it (one forward pass per
        client and round less; NaN in ``history_``); ``eval_set`` in ``fit``
        evaluates on the server instead.
    r : int, default=8
        LoRA rank (``strategy="lora"``).
    lora_alpha : float, default=16
    unfreeze_last : int, default=2
        Block groups that train with ``strategy="partial"``.
    head : {"linear", "mlp"}, default="linear"
    lr : float, default=1e-3
        Learning rate of the local training (peak of each round's
        warm-up + cosine schedule).
    backbone_lr_ratio : float, default=0.1
        With ``strategy="partial"``: the trained block groups learn at
        ``lr * backbone_lr_ratio``, the head at ``lr`` (as
        :class:`~sktransfer.FineTunedClassifier`). Ignored otherwise.
    weight_decay : float, default=0.01
    grad_clip : float or None, default=1.0
        Gradient-norm clipping of local training (not DP clipping).
    batch_size : int, default=16
    max_length : int or None, default=None
        Token limit for text (None: the model's).
    image_size : int or None, default=None
        Input size of image backbones in pixels, at every client and on
        the server (None: the model's pretrained size; small images such as
        28 px Fashion-MNIST train much faster at e.g. 64).
    pooling : {"mean", "cls"}, default="mean"
    device : str, default="auto"
    n_jobs : int or None, default=None
        Clients trained at once (Ray actors, one CPU each); None means 1.
    random_state : int, RandomState or None, default=None
        Seeds the initial head, each client's training in each round and
        Flower's noise; client sampling is Flower's own (not seeded).
    verbose : int, default=0
        1 shows Flower's log (rounds, replies, failures).

    Attributes
    ----------
    classes_ : ndarray
        All classes seen at any client.
    clients_ : ndarray
        The client ids (distinct values of ``groups``), sorted.
    estimator_ : LoRAClassifier or FineTunedClassifier
        The global model (what ``predict`` runs).
    client_models_ : dict or None
        ``personalize=True``: client id -> fitted estimator (the global
        model with the client's own head; a client whose personalisation
        failed is missing). None otherwise. Each holds its own copy of the
        model (about ``full_model_nbytes_`` in memory).
    history_ : list of dict
        One entry per round: ``round``, ``clients`` (that replied),
        ``failures`` (their errors), ``train_loss`` (rows-weighted mean of
        the clients' last local epoch), ``update_norm_median`` and
        ``update_norm_max`` (L2 norms of the clients' updates, new minus
        global trainable weights, before DP clipping: a run without DP
        tells what ``dp_clipping_norm`` would clip), ``loss`` and ``accuracy`` (the new
        global model on the sampled clients' own rows, rows-weighted),
        ``bytes_sent`` (clients to server, measured on the messages),
        ``bytes_received`` (server to clients); with ``eval_set``,
        ``eval_loss`` and ``eval_accuracy`` (the global model on it).
    initial_eval_accuracy_ : float or None
        With ``eval_set``: the initial global model's accuracy on it.
    bytes_per_client_round_ : int
        Bytes one client sends per round: the ``ArrayRecord`` of its reply
        (the trainable weights, plus Flower's few bytes per array), measured
        on the messages.
    full_model_nbytes_ : int
        Bytes of the whole model (body + head), for comparison.
    n_features_in_ : int
        Not set: inputs are texts or images.

    See Also
    --------
    sktransfer.LoRAClassifier : the local training of ``strategy="lora"``.
    sktransfer.FineTunedClassifier : the local training of the other strategies.

    Notes
    -----
    Clients are the distinct values of ``groups``, so every client has at
    least one row. A client whose rows hold one class only trains anyway
    (the usual case of strongly non-IID data), with a
    :class:`FederatedOneClassWarning` naming it. A client that fails during
    a round (an exception in its ClientApp) is left out of that round by
    Flower and the round finishes without it (``history_[i]["failures"]``);
    with ``dp_clipping_norm`` set, Flower's DP wrapper skips that round's
    aggregation instead. If every client fails every round, ``fit`` raises.
    In the simulation all rows are in one process; the privacy boundary is
    the Flower messages, which carry the weights and scalar metrics only.

    Examples
    --------
    >>> from sktransfer.federated import FederatedTransferClassifier
    >>> texts = ["the match ended in a draw", "shares fell sharply",
    ...          "the striker scored twice", "the bank raised rates"] * 3
    >>> y = ["sport", "business", "sport", "business"] * 3
    >>> hospital = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    >>> clf = FederatedTransferClassifier(strategy="linear_probe", rounds=2, lr=1e-2,
    ...                                   random_state=0).fit(texts, y, groups=hospital)
    >>> len(clf.history_)
    2
    >>> clf.predict(["a late goal won the cup"]).shape
    (1,)
    """

    _parameter_constraints: dict = {
        "backbone": [str],
        "strategy": [StrOptions(set(STRATEGIES))],
        "rounds": [Interval(Integral, 1, None, closed="left")],
        "clients_per_round": [Interval(Integral, 1, None, closed="left"), None],
        "local_epochs": [Interval(Integral, 1, None, closed="left")],
        "aggregation": [StrOptions({"fedavg", "fedprox"})],
        "proximal_mu": [Interval(Real, 0, None, closed="left")],
        "dp_clipping_norm": [Interval(Real, 0, None, closed="neither"), None],
        "dp_noise_multiplier": [Interval(Real, 0, None, closed="left"), None],
        "personalize": ["boolean"],
        "federated_evaluation": ["boolean"],
        "r": [Interval(Integral, 1, None, closed="left")],
        "lora_alpha": [Interval(Real, 0, None, closed="neither")],
        "unfreeze_last": [Interval(Integral, 1, None, closed="left")],
        "head": [StrOptions({"linear", "mlp"})],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "backbone_lr_ratio": [Interval(Real, 0, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "grad_clip": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_length": [Interval(Integral, 1, None, closed="left"), None],
        "image_size": [Interval(Integral, 1, None, closed="left"), None],
        "pooling": [StrOptions({"mean", "cls"})],
        "device": [str, None],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # Extra Flower client mods, outermost first (a private seam: the tests
    # add one that makes a client fail mid-round). Not a parameter.
    _client_mods = ()

    def __init__(
        self,
        backbone="sentence-transformers/all-MiniLM-L6-v2",
        *,
        strategy="lora",
        rounds=10,
        clients_per_round=None,
        local_epochs=1,
        aggregation="fedavg",
        proximal_mu=0.01,
        dp_clipping_norm=None,
        dp_noise_multiplier=None,
        personalize=False,
        federated_evaluation=True,
        r=8,
        lora_alpha=16,
        unfreeze_last=2,
        head="linear",
        lr=1e-3,
        backbone_lr_ratio=0.1,
        weight_decay=0.01,
        grad_clip=1.0,
        batch_size=16,
        max_length=None,
        image_size=None,
        pooling="mean",
        device="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.strategy = strategy
        self.rounds = rounds
        self.clients_per_round = clients_per_round
        self.local_epochs = local_epochs
        self.aggregation = aggregation
        self.proximal_mu = proximal_mu
        self.dp_clipping_norm = dp_clipping_norm
        self.dp_noise_multiplier = dp_noise_multiplier
        self.personalize = personalize
        self.federated_evaluation = federated_evaluation
        self.r = r
        self.lora_alpha = lora_alpha
        self.unfreeze_last = unfreeze_last
        self.head = head
        self.lr = lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.batch_size = batch_size
        self.max_length = max_length
        self.image_size = image_size
        self.pooling = pooling
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -------------------------------------------------------- validation
    def _check_params(self):
        check_params(self)
        if self.dp_noise_multiplier is not None and self.dp_clipping_norm is None:
            raise ValueError(
                f"dp_noise_multiplier={self.dp_noise_multiplier!r} needs dp_clipping_norm: the noise is scaled "
                "by the clipping norm (Flower's fixed-clipping DP). Set dp_clipping_norm, e.g. 1.0."
            )

    def _check_groups(self, groups, n_rows, y_enc):
        """The client of each row: (sorted client ids, index of each row's client). Errors name the row."""
        if groups is None:
            raise ValueError(
                "fit needs groups: one client id per row of X (which client holds it), e.g. "
                "fit(X, y, groups=hospital_ids)."
            )
        g = np.asarray(as_rows(groups, "groups") if not isinstance(groups, np.ndarray) else groups, dtype=object)
        if g.ndim != 1:
            raise ValueError(f"groups must be 1-D (one client id per row of X), got shape {g.shape}.")
        if len(g) != n_rows:
            raise ValueError(f"groups has {len(g)} entries but X has {n_rows} rows: give one client id per row.")
        for i, v in enumerate(g):
            if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
                raise ValueError(f"Row {i} of groups is missing (None/NaN): every row needs the id of its client.")
        try:
            clients, index = np.unique(g, return_inverse=True)
        except TypeError as exc:
            raise ValueError(f"groups mixes id types that cannot be ordered ({exc}); use one type, e.g. str.") from exc
        if len(clients) < 2:
            raise ValueError(
                f"groups names a single client ({clients[0]!r}); federated training needs at least 2. "
                "With all rows in one place, use LoRAClassifier or FineTunedClassifier."
            )
        one_class = [c for i, c in enumerate(clients) if len(np.unique(y_enc[index == i])) < 2]
        if one_class:
            warnings.warn(
                f"{len(one_class)} client(s) hold rows of a single class: {[_item(c) for c in one_class[:10]]}. "
                "They train anyway (expected with non-IID data); their updates only ever see that class.",
                FederatedOneClassWarning,
                stacklevel=user_stacklevel(),
            )
        k = self.clients_per_round
        if k is not None and k > len(clients):
            raise ValueError(
                f"clients_per_round={k} is more than the {len(clients)} clients in groups; use at most "
                f"{len(clients)} (or None: all)."
            )
        return clients, index

    def _local_params(self):
        params = {name: getattr(self, name) for name in _LOCAL_COMMON}
        params.update(head_init="random", warmup=0.1, validation_fraction=0.0, num_workers=0, verbose=0)
        if self.strategy == "lora":
            params.update(r=self.r, lora_alpha=self.lora_alpha)
        else:
            params.update(unfreeze_last=self.unfreeze_last, backbone_lr_ratio=self.backbone_lr_ratio)
        return params

    # --------------------------------------------------------------- fit
    def fit(self, X, y, groups=None, eval_set=None):
        """Train across the clients named by ``groups``; only weights leave a client.

        Parameters
        ----------
        X : list, array, Series or one-column DataFrame
            Texts or images, all clients' rows together (simulation).
        y : array-like of shape (n_samples,)
            Class labels.
        groups : array-like of shape (n_samples,)
            The client that holds each row (any hashable ids, no missing value).
        eval_set : (X_eval, y_eval) or None, default=None
            Held-out rows the server evaluates the global model on before
            the first round and after each round (Flower's centralised
            evaluation, ``evaluate_fn``): ``eval_loss`` and
            ``eval_accuracy`` in ``history_``, ``initial_eval_accuracy_``.
            They are not training rows of any client.

        Returns
        -------
        self
        """
        from . import _apps

        self._check_params()
        rows = as_rows(X)
        y, classes, y_enc = encode_labels(y, n_rows=len(rows))
        clients, index = self._check_groups(groups, len(rows), y_enc)
        seed = fit_seed(self.random_state)
        n_clients = len(clients)
        spec = _apps.FederationSpec(
            strategy=self.strategy, local_params=self._local_params(), n_classes=len(classes),
            n_clients=n_clients, clients_per_round=int(self.clients_per_round or n_clients), rounds=int(self.rounds),
            local_epochs=int(self.local_epochs), aggregation=self.aggregation, proximal_mu=float(self.proximal_mu),
            dp_clipping_norm=self.dp_clipping_norm, dp_noise_multiplier=self.dp_noise_multiplier,
            personalize=bool(self.personalize), evaluate=bool(self.federated_evaluation), seed=seed,
        )
        evaluate_fn = None
        if eval_set is not None:
            if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
                raise ValueError("eval_set must be a pair (X_eval, y_eval).")
            eval_rows = as_rows(eval_set[0], "eval_set[0]")
            _, eval_y = encode_known_labels(eval_set[1], classes, name="eval_set[1]")
            if len(eval_y) != len(eval_rows):
                raise ValueError(f"eval_set has {len(eval_rows)} rows but {len(eval_y)} labels.")
            evaluate_fn = _apps.centralised_evaluate_fn(spec, eval_rows, eval_y)
        partitions = {
            i: ([rows[j] for j in np.flatnonzero(index == i)], y_enc[index == i]) for i in range(n_clients)
        }
        out = run_federation(spec, partitions, n_jobs=self.n_jobs, verbose=self.verbose,
                             client_mods=self._client_mods, evaluate_fn=evaluate_fn)
        self.classes_ = classes
        self.clients_ = clients
        self._set_results(spec, out, clients)
        return self

    def _set_results(self, spec, out, clients):
        train_log = [e for e in out["grid_log"] if e["message_type"] == "train"]
        if not any(e["replies"] for e in train_log):
            reasons = [err for e in train_log for err in e["errors"]]
            raise RuntimeError(
                f"every client failed in every round ({len(reasons)} failures); the first: "
                f"{reasons[0] if reasons else 'no reply'}"
            )
        evaluate_log = {e["round"]: e for e in out["grid_log"] if e["message_type"] == "evaluate"}
        history = []
        for e in train_log:
            rnd = e["round"]
            tm, em = out["train"].get(rnd, {}), out["evaluate"].get(rnd, {})
            history.append({
                "round": rnd,
                "clients": e["replies"],
                "failures": list(e["errors"]),
                "train_loss": float(tm.get("train-loss", np.nan)),
                "update_norm_median": float(tm.get("update-norm-median", np.nan)),
                "update_norm_max": float(tm.get("update-norm-max", np.nan)),
                "loss": float(em.get("loss", np.nan)),
                "accuracy": float(em.get("accuracy", np.nan)),
                "bytes_sent": int(e["bytes_from_clients"]),
                "bytes_received": int(e["bytes_to_clients"] + evaluate_log.get(rnd, {}).get("bytes_to_clients", 0)),
            })
            if out["server_evaluate"]:
                sm = out["server_evaluate"].get(rnd, {})
                history[-1].update(eval_loss=float(sm.get("loss", np.nan)), eval_accuracy=float(sm.get("accuracy", np.nan)))
            if e["errors"] and self.verbose:
                print(f"round {rnd}: {len(e['errors'])} client(s) failed; the round finished without them")
        self.history_ = history
        self.initial_eval_accuracy_ = (
            float(out["server_evaluate"][0]["accuracy"]) if 0 in out["server_evaluate"] else None
        )
        state = {k: _torch(v) for k, v in out["arrays"].items()}
        # Measured on the messages: the ArrayRecord of one reply (the tensors, plus Flower's few bytes per array).
        first = next(e for e in train_log if e["replies"])
        self.bytes_per_client_round_ = int(first["bytes_from_clients"] // first["replies"])
        self.estimator_ = self._global_estimator(spec, state)
        self.full_model_nbytes_ = int(sum(p.numel() * p.element_size() for p in self.estimator_.net_.module_.parameters()))
        self.client_models_ = None
        if spec.personalize:
            self.client_models_ = {}
            for pid, head in sorted(out["personal"].items()):
                personal = dict(state, **{k: _torch(v) for k, v in head.items()})
                self.client_models_[_item(clients[int(pid)])] = self._global_estimator(spec, personal)

    def _global_estimator(self, spec, state):
        """A fitted LoRAClassifier / FineTunedClassifier holding ``state``: what predicts."""
        from . import _apps
        from .._fine_tuning import FineTunedClassifier
        from .._lora import LoRAClassifier

        local, module = _apps.build_module(spec, state)
        cls = LoRAClassifier if spec.strategy == "lora" else FineTunedClassifier
        est = cls(**local.get_params(deep=False))
        for attr in ("method_", "target_modules_"):
            if hasattr(local, attr):
                setattr(est, attr, getattr(local, attr))
        est.classes_ = self.classes_
        est.lr_ = float(self.lr)
        est._attach_net(module)
        if spec.strategy == "lora":
            from .._seeding import isolated_torch_rng
            from ..backbones import load_backbone

            with isolated_torch_rng():
                est.base_fingerprint_ = load_backbone(est.backbone, device="cpu", pooling=est.pooling).fingerprint()
        return est

    # --------------------------------------------------------- inference
    def predict_proba(self, X):
        """Class probabilities of the global model, columns in ``classes_`` order."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X)

    def decision_function(self, X):
        """Logits of the global model, shape (n_samples, n_classes)."""
        check_is_fitted(self, "estimator_")
        return self.estimator_.decision_function(X)

    def predict(self, X):
        """Class labels predicted by the global model."""
        check_is_fitted(self, "estimator_")
        return self.classes_[np.argmax(self.estimator_.decision_function(X), axis=1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy of the global model. Labels never seen in ``fit`` raise an error."""
        check_is_fitted(self, "classes_")
        y, _ = encode_known_labels(y, self.classes_)
        return super().score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        return trained_model_tags(super().__sklearn_tags__(), self.random_state)


def _torch(v):
    import torch

    return torch.from_numpy(np.array(v, copy=True))


def _item(v):
    return v.item() if isinstance(v, np.generic) else v


def run_federation(spec, partitions, *, n_jobs=None, verbose=0, client_mods=(), evaluate_fn=None):
    """Run the Flower apps in Flower's simulation runtime (Ray); the ServerApp's results.

    One SuperNode per client; ``partitions[partition-id]`` holds its rows.
    Ray gets ``n_jobs`` CPUs (one per client actor, no GPU) and is shut
    down afterwards, whatever happened.
    """
    from . import _apps
    from flwr.simulation import run_simulation

    sink = {}
    client_app = _apps.make_client_app(
        lambda ctx: spec, lambda ctx: partitions[int(ctx.node_config["partition-id"])], mods=client_mods,
    )
    server_app = _apps.make_server_app(lambda ctx: spec, lambda out, ctx: sink.update(out), evaluate_fn)
    n_cpus = int(n_jobs or 1)
    backend_config = {
        "init_args": {
            "num_cpus": n_cpus, "num_gpus": 0, "include_dashboard": False, "object_store_memory": 2**28,
            "log_to_driver": bool(verbose), "logging_level": logging.INFO if verbose else logging.ERROR,
        },
        "client_resources": {"num_cpus": 1, "num_gpus": 0},
    }
    with _quiet_flower(verbose), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*run_simulation.*deprecated", category=Warning)
        # Ray's note that it will stop hiding GPUs from num_gpus=0 actors: they are hidden now, as wanted.
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
        try:
            _start_ray(backend_config["init_args"])
            run_simulation(server_app=server_app, client_app=client_app, num_supernodes=spec.n_clients,
                           backend_config=backend_config)
        finally:
            import ray

            if ray.is_initialized():  # Flower shuts it down on the normal path; not always on errors
                ray.shutdown()
    if not sink:
        raise RuntimeError("the Flower ServerApp ended without a result (see Flower's log with verbose=1).")
    return sink


def _start_ray(init_args, attempts=3):
    """Start Ray as Flower's backend would (same arguments), retrying its startup timeout.

    Flower's Ray backend starts Ray only when it is not running; Ray gives
    its raylet a fixed 30 s to register, which a saturated machine can miss
    ("The current node timed out during startup"): measured at load 40 on
    2 cores. Starting it here lets that one error be retried.
    """
    import sys
    import time

    import ray

    pythonpath = os.pathsep.join(p for p in [*sys.path, os.environ.get("PYTHONPATH", "")] if p)
    for attempt in range(attempts):
        try:
            # As Flower does: the actors import what this process can (sys.path of the driver).
            ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **init_args)
            return
        except Exception as exc:  # Ray raises a bare Exception for this timeout
            if "timed out during startup" not in str(exc) or attempt == attempts - 1:
                raise
            ray.shutdown()
            time.sleep(5)


@contextlib.contextmanager
def _quiet_flower(verbose):
    logger = logging.getLogger("flwr")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.ERROR)  # Flower logs each round at INFO, its deprecation notes at WARNING
    try:
        yield
    finally:
        logger.setLevel(level)
