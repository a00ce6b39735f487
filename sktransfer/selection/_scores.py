"""Transferability scores: how well will a pretrained model do on a task?

Each score reads what a frozen model produces on the *target* data
(features, or the source classifier's probabilities) and the target labels,
and returns one number: higher means the model is expected to transfer
better. No model is trained, so a score costs a fraction of a linear probe
and a tiny fraction of fine-tuning.

- :func:`logme_score` (You et al., 2021): the log marginal evidence of a
  Bayesian linear model on the features, maximised over its two
  hyper-parameters.
- :func:`h_score` (Bao et al., 2019) and :func:`regularized_h_score`
  (Ibrahim et al., 2022): how much of the features' variance is explained
  by the class means.
- :func:`leep_score` (Nguyen et al., 2020) and :func:`nce_score` (Tran et
  al., 2019): from the source classifier's outputs (its ImageNet head), see
  :class:`SourceProbabilityExtractor`.

All arithmetic is float64. Feature scores go through one spectral
decomposition of the features (of the smaller of the two Gram matrices, or
an SVD), so they stay exact when there are far more features than samples
(d >> n) and cost one pass over the data when there are far more samples
(n >> d).
"""

import copy
import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from .._validation import check_targets, encode_labels

_TINY = np.finfo(np.float64).tiny


# ---------------------------------------------------------------- validation
def _check_matrix(a, name):
    """2-D finite float64 array; errors name the first bad row."""
    try:
        import pandas as pd

        if isinstance(a, (pd.DataFrame, pd.Series)):
            a = a.to_numpy()
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric 2-D array (n_samples, n_features): {exc}") from None
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), got shape {a.shape}.")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 rows and 1 column, got shape {a.shape}.")
    bad = ~np.isfinite(a)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"Row {row} of {name} contains NaN or infinity (column {col}); "
            "drop or impute those rows before scoring."
        )
    return a


def _check_length(y, n, name, unit):
    """``y`` must have one entry (``unit``: labels, rows) per row of features."""
    length = len(y) if hasattr(y, "__len__") and not isinstance(y, (str, bytes)) else None
    if length is not None and length != n:
        raise ValueError(f"{name} has {length} {unit} but there are {n} rows of features.")


def _check_labels(y, n, name="y"):
    """1-D class labels of length ``n`` with >= 2 classes → (codes, classes).

    Read through the package's one label validator
    (:func:`~sktransfer._validation.encode_labels`), which inspects the
    labels as given (numpy would turn ``["a", 1]`` into two strings and a
    missing label into the class ``"nan"``).
    """
    _check_length(y, n, name, "labels")
    _, classes, codes = encode_labels(
        y,
        name=name,
        task="a transferability score, which compares classes,",
        advice="For continuous targets use logme_score(features, y, task='regression').",
    )
    return codes.astype(np.intp), classes


def _check_targets(y, n, name="y"):
    """Continuous targets → float64 (n, k), through the package's :func:`~sktransfer._validation.check_targets`."""
    _check_length(y, n, name, "rows")
    return check_targets(y, name=name, n_rows=n, task="a transferability score")


def _spectrum(F):
    """``U, sigma``: left singular vectors and eigenvalues of ``F^T F`` (non-negligible).

    From the eigendecomposition of the smaller Gram matrix (``F F^T`` when
    n <= d, else ``F^T F``), in float64: faster than an SVD on a CPU (see
    ``docs/selection_and_adaptation.md``, "Numerics").
    Squaring loses the directions with ``sigma < n * eps * sigma_max``;
    LogME and the shrinkage H-score weigh a direction by ``sigma`` (against
    ``alpha`` or the shrinkage target), so those contribute ~0 and are
    dropped. The plain H-score weighs every direction alike and uses
    :func:`_thin_svd` instead.
    """
    from scipy import linalg

    n, d = F.shape
    G = F @ F.T if n <= d else F.T @ F
    w, V = linalg.eigh(G, check_finite=False)
    w, V = w[::-1], V[:, ::-1]
    if w.size == 0 or w[0] <= 0.0:
        return F[:, :0], w[:0]
    keep = w > w[0] * max(n, d) * np.finfo(np.float64).eps
    w, V = w[keep], V[:, keep]
    U = V if n <= d else (F @ V) / np.sqrt(w)
    return U, w


def _thin_svd(F):
    """``U, s`` of ``F`` keeping the non-negligible singular values."""
    from scipy import linalg

    try:
        U, s, _ = linalg.svd(F, full_matrices=False, lapack_driver="gesdd", check_finite=False)
    except linalg.LinAlgError:  # gesdd can fail to converge; gesvd is slower but robust
        U, s, _ = linalg.svd(F, full_matrices=False, lapack_driver="gesvd", check_finite=False)
    if s.size == 0 or s[0] == 0.0:
        return U[:, :0], s[:0]
    keep = s > s[0] * max(F.shape) * np.finfo(np.float64).eps
    return U[:, keep], s[keep]


# --------------------------------------------------------------------- LogME
def _logme_evidences(X, res_perp, sigma, n, tol, max_iter):
    """Maximum log evidence / n of each target, given spectral coordinates.

    ``X[:, k] = U^T y_k`` (coordinates of target k in the column space of
    the features), ``res_perp[k] = ||y_k||^2 - ||X[:, k]||^2`` (the part no
    linear model can fit), ``sigma`` the non-zero eigenvalues of ``F^T F``.

    With ``t = alpha / beta`` fixed, the evidence is maximised by
    ``beta = n / E(t)``, ``E(t) = ||F m - y||^2 + t m^T m``, which leaves a
    smooth function of ``t`` alone. It can have two local maxima when
    ``d >= n`` (one that interpolates y, one near ``alpha -> inf``), and the
    fixed point of You et al. started at ``alpha = beta = 1`` may stop at
    either. So: a coarse grid over ``log t`` (all targets at once) finds the
    best basin, the paper's fixed-point iteration refines it, and the
    ``alpha -> inf`` limit (weights forced to 0) is compared too.
    """
    X2 = X * X
    r, K = X2.shape
    yy = X2.sum(axis=0) + res_perp
    if (yy <= 0).any():
        raise ValueError("a target vector is all zeros: LogME is undefined for it.")
    const = -0.5 * n - 0.5 * n * np.log(2.0 * np.pi)
    best = 0.5 * n * np.log(n / yy) + const  # the alpha -> inf limit, per target
    if r == 0:
        return best / n

    def profile(t, x2, rp):
        # The D - r directions with a zero eigenvalue add log(alpha) to both
        # D/2 log(alpha) and 1/2 log|A|: they cancel exactly, so only the r
        # non-zero eigenvalues appear (exact also for d >> n).
        q = 1.0 / (sigma + t)
        m2 = float(np.sum(sigma * x2 * q * q))
        res2 = float(np.sum(x2 * (t * q) ** 2)) + rp
        E = res2 + t * m2
        ev = -0.5 * float(np.sum(np.log1p(sigma / t))) + 0.5 * n * np.log(n / E) + const if E > 0 else -np.inf
        return ev, m2, res2

    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        grid = np.exp(np.linspace(np.log(sigma.min()) - 12.0, np.log(sigma.max()) + 12.0, 121))
        Q = 1.0 / (sigma[None, :] + grid[:, None])  # (grid, r)
        E = (Q * Q * grid[:, None] ** 2) @ X2 + res_perp + grid[:, None] * ((Q * Q * sigma) @ X2)
        G = -0.5 * np.log1p(sigma[None, :] / grid[:, None]).sum(axis=1)[:, None] + 0.5 * n * np.log(n / E) + const
        G[~np.isfinite(G)] = -np.inf
        for k in range(K):
            x2, rp = X2[:, k], float(res_perp[k])
            t0 = float(grid[int(np.argmax(G[:, k]))])
            t = t0
            _, m2, res2 = profile(t, x2, rp)
            for _ in range(max_iter):  # You et al.'s fixed point, from the best basin
                gamma = float(np.sum(sigma / (sigma + t)))
                alpha = gamma / max(m2, _TINY)
                beta = max(n - gamma, _TINY) / max(res2, _TINY)
                t_new = alpha / beta
                if not (np.isfinite(t_new) and t_new > 0):
                    break
                converged = abs(t_new - t) <= tol * t
                t = t_new
                _, m2, res2 = profile(t, x2, rp)
                if converged:
                    break
            for cand in (t, t0):
                ev = profile(cand, x2, rp)[0]
                if np.isfinite(ev) and ev > best[k]:
                    best[k] = ev
    return best / n


def logme_score(features, y, *, task="auto", tol=1e-6, max_iter=200):
    """LogME: log of the maximum evidence of a linear model on the features.

    For each target vector ``y`` (one-hot column per class for
    classification, each column for regression), the Bayesian linear model
    ``y ~ N(F w, 1/beta)``, ``w ~ N(0, I/alpha)`` has marginal likelihood
    (evidence)

    .. math::

        L(\\alpha, \\beta) = \\tfrac{D}{2}\\log\\alpha + \\tfrac{n}{2}\\log\\beta
        - \\tfrac{n}{2}\\log 2\\pi - \\tfrac{\\beta}{2}\\lVert Fm - y\\rVert^2
        - \\tfrac{\\alpha}{2} m^\\top m - \\tfrac12\\log|A|,

    with ``A = alpha I + beta F^T F`` and ``m = beta A^{-1} F^T y``. It is
    maximised by the fixed-point iteration of You et al. (2021)
    (``gamma = sum beta s_i / (alpha + beta s_i)``,
    ``alpha = gamma / m^T m``, ``beta = (n - gamma) / ||F m - y||^2``)
    computed on the SVD of ``F``, and ``L / n`` is averaged over the target
    vectors. Higher is better; values are comparable between models on the
    same data, not across data sets.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Embeddings of the target data (e.g. from
        :class:`~sktransfer.PretrainedFeatureExtractor`).
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Class labels, or continuous targets.
    task : {"auto", "classification", "regression"}, default="auto"
        ``"auto"`` treats float targets that are not whole numbers (and 2-D
        targets) as regression, anything else as classes.
    tol : float, default=1e-6
        Relative change of ``alpha / beta`` that stops the iteration.
    max_iter : int, default=200
        Most fixed-point iterations per target (2 to 10 are typical).

    Returns
    -------
    score : float
        Mean maximum log evidence per sample.

    See Also
    --------
    h_score, regularized_h_score, leep_score, nce_score
    BackboneSelector : rank candidate backbones with any of these.

    Notes
    -----
    Two details keep the value equal to the paper's *maximum* evidence for
    every shape. The official implementation adds ``D/2 log(alpha)`` but
    only ``min(n, D)`` terms of ``log|A|``, which differs from the formula
    above when ``D > n``; here the zero eigenvalues are handled exactly
    (they cancel). And the evidence can have two local maxima when
    ``D >= n`` (one interpolating the labels, one with the weights near 0),
    where the fixed point started at ``alpha = beta = 1`` may stop at the
    lower one: the iteration here starts from the best point of a coarse
    grid over ``alpha / beta`` (with ``beta`` at its optimum for each
    ratio), and the limit ``alpha -> inf`` is compared too.

    References
    ----------
    K. You, Y. Liu, J. Wang, M. Long. "LogME: Practical Assessment of
    Pre-trained Models for Transfer Learning", ICML 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.selection import logme_score
    >>> rng = np.random.RandomState(0)
    >>> y = np.repeat([0, 1], 50)
    >>> good = rng.randn(100, 8) + 2.0 * y[:, None]   # classes separate
    >>> bad = rng.randn(100, 8)                       # pure noise
    >>> bool(logme_score(good, y) > logme_score(bad, y))
    True
    """
    F = _check_matrix(features, "features")
    n = F.shape[0]
    if task not in ("auto", "classification", "regression"):
        raise ValueError(f"task must be 'auto', 'classification' or 'regression', got {task!r}.")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol > 0:
        raise ValueError(f"tol must be a number > 0, got {tol!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}.")
    if task == "auto":
        y_arr = np.asarray(y)
        if y_arr.ndim == 2 and y_arr.shape[1] > 1:
            task = "regression"
        else:
            kind = type_of_target(y_arr.ravel()) if y_arr.size else "unknown"
            task = "regression" if kind == "continuous" else "classification"
    if task == "classification":
        codes, classes = _check_labels(y, n)
        targets = [(codes == k).astype(np.float64) for k in range(len(classes))]
    else:
        Y = _check_targets(y, n)
        targets = [Y[:, j] for j in range(Y.shape[1])]
    U, sigma = _spectrum(F)
    Y = np.column_stack(targets)
    X = U.T @ Y
    res_perp = np.maximum((Y * Y).sum(axis=0) - (X * X).sum(axis=0), 0.0)
    return float(np.mean(_logme_evidences(X, res_perp, sigma, n, float(tol), int(max_iter))))


# ------------------------------------------------------------------- H-score
def _centered_class_projection(U, codes, n_classes):
    """``P U`` summed per class: rows of U averaged within each class."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, U.shape[1]))
    np.add.at(sums, codes, U)
    return sums, counts


def h_score(features, y):
    """H-score: ``tr(cov(f)^+ cov(E[f | y]))`` (Bao et al., 2019).

    The share of the features' variance explained by the class means, in
    the metric of the feature covariance. Both covariances use the same
    ``1/n`` normalisation (it cancels). Ranges from 0 to
    ``min(n_classes - 1, rank)``; higher is better.

    With as many features as samples (``d >= n - 1``) the features can
    always separate the classes linearly and the score saturates at
    ``n_classes - 1`` whatever the model: use
    :func:`regularized_h_score` there.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Class labels.

    Returns
    -------
    score : float

    References
    ----------
    Y. Bao, Y. Li, S.-L. Huang, L. Zhang, L. Zheng, A. Zamir, L. Guibas.
    "An Information-Theoretic Approach to Transferability in Task Transfer
    Learning", ICIP 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.selection import h_score
    >>> y = np.repeat([0, 1, 2], 20)
    >>> F = np.random.RandomState(0).randn(60, 5) + y[:, None]
    >>> 0 < h_score(F, y) <= 2
    True
    """
    F = _check_matrix(features, "features")
    codes, classes = _check_labels(y, F.shape[0])
    F = F - F.mean(axis=0)
    # F = U S V^T: cov(f)^+ = V diag(n / s^2) V^T and the class-mean matrix
    # G = P F (P averages rows within a class), so the trace is ||P U||_F^2.
    U, _ = _thin_svd(F)
    sums, counts = _centered_class_projection(U, codes, len(classes))
    return float(np.sum(sums * sums / counts[:, None]))


def regularized_h_score(features, y, *, shrinkage="ledoit-wolf"):
    """Shrinkage H-score ``tr(cov_a(f)^-1 (1 - a) cov(E[f | y]))`` (Ibrahim et al., 2022).

    The feature covariance is replaced by the shrinkage estimate
    ``cov_a(f) = (1 - a) cov(f) + a mu I`` (``mu`` the mean variance), with
    the Ledoit-Wolf coefficient ``a`` by default, and the between-class
    covariance is shrunk by the same ``1 - a``. This keeps the score
    informative when features outnumber samples, where the plain
    :func:`h_score` saturates.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Class labels.
    shrinkage : "ledoit-wolf" or float in [0, 1), default="ledoit-wolf"
        The coefficient ``a`` (scikit-learn's
        :func:`~sklearn.covariance.ledoit_wolf_shrinkage` by default).

    Returns
    -------
    score : float

    References
    ----------
    S. Ibrahim, N. Ponomareva, R. Mazumder. "Newer is not always better:
    Rethinking transferability metrics, their peculiarities, stability and
    performance", ECML PKDD 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.selection import regularized_h_score
    >>> y = np.repeat([0, 1], 10)
    >>> F = np.random.RandomState(0).randn(20, 200) + y[:, None]   # d >> n
    >>> 0 < regularized_h_score(F, y) < 1
    True
    """
    F = _check_matrix(features, "features")
    n, d = F.shape
    codes, classes = _check_labels(y, n)
    F = F - F.mean(axis=0)
    if isinstance(shrinkage, str):
        if shrinkage != "ledoit-wolf":
            raise ValueError(f"shrinkage must be 'ledoit-wolf' or a float in [0, 1), got {shrinkage!r}.")
        from sklearn.covariance import ledoit_wolf_shrinkage

        a = float(ledoit_wolf_shrinkage(F, assume_centered=True))
    elif isinstance(shrinkage, bool) or not isinstance(shrinkage, numbers.Real) or not 0 <= shrinkage < 1:
        raise ValueError(f"shrinkage must be 'ledoit-wolf' or a float in [0, 1), got {shrinkage!r}.")
    else:
        a = float(shrinkage)
    if a > 0.0:
        U, sigma = _spectrum(F)
    else:  # no shrinkage: every direction counts alike, as in h_score
        U, s = _thin_svd(F)
        sigma = s * s
    mu = float(np.sum(F * F)) / (n * d)  # tr(cov(f)) / d
    # G V = P U S: only the column space of F meets cov(E[f|y]), and there
    # cov_a(f) has eigenvalues (1 - a) s^2 / n + a mu.
    sums, counts = _centered_class_projection(U, codes, len(classes))
    gv2 = np.sum(sums * sums / counts[:, None], axis=0) * sigma  # ||(G V)_{:, i}||^2
    denom = (1.0 - a) * sigma / n + a * mu
    if a == 0.0:
        denom = np.maximum(denom, _TINY)
    return float((1.0 - a) * np.sum(gv2 / n / denom))


# ------------------------------------------------------------ LEEP and NCE
def _check_proba(p, name="source_proba"):
    P = _check_matrix(p, name)
    if (P < 0).any():
        row = int(np.argwhere(P < 0)[0][0])
        raise ValueError(f"Row {row} of {name} has a negative probability; pass probabilities (softmax outputs), not logits.")
    sums = P.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-3)
    if bad.size:
        raise ValueError(
            f"Row {bad[0]} of {name} sums to {sums[bad[0]]:.4g}, not 1; pass probabilities "
            "(softmax of the source model's logits), not logits."
        )
    return P / sums[:, None]


def _joint_with_source(codes, n_classes, source):
    """The empirical joint ``P(y, z)`` of target class and source class, and ``P(z)``.

    ``source``: the source model's probabilities ``(n, n_source_classes)``
    (LEEP) or its hard labels, as codes ``(n,)`` (NCE).
    """
    if source.ndim == 2:
        joint = np.zeros((n_classes, source.shape[1]))
        np.add.at(joint, codes, source)
    else:
        joint = np.zeros((n_classes, int(source.max()) + 1))
        np.add.at(joint, (codes, source), 1.0)
    joint /= len(codes)
    return joint, joint.sum(axis=0)


def leep_score(source_proba, y):
    """LEEP: log expected empirical prediction of the source classifier (Nguyen et al., 2020).

    With ``theta(x)`` the source model's class probabilities (e.g. over the
    1000 ImageNet classes), the empirical joint of target label and source
    class is ``P(y, z) = 1/n sum_i theta(x_i)_z [y_i = y]``; the score is
    the average log-likelihood of the "expected empirical predictor"
    ``sum_z P(y_i | z) theta(x_i)_z``. It is <= 0; higher is better.

    Parameters
    ----------
    source_proba : array-like of shape (n_samples, n_source_classes)
        The source model's probabilities on the target inputs (rows sum to
        1), e.g. from :class:`SourceProbabilityExtractor`.
    y : array-like of shape (n_samples,)
        Target class labels.

    Returns
    -------
    score : float

    References
    ----------
    C. Nguyen, T. Hassner, M. Seeger, C. Archambeau. "LEEP: A New Measure
    to Evaluate Transferability of Learned Representations", ICML 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.selection import leep_score
    >>> P = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    >>> round(leep_score(P, ["cat", "cat", "dog", "dog"]), 4)
    -0.2955
    """
    P = _check_proba(source_proba)
    codes, classes = _check_labels(y, P.shape[0])
    joint, pz = _joint_with_source(codes, len(classes), P)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P(y | z)
    eep = np.einsum("nz,nz->n", P, cond[codes])
    return float(np.mean(np.log(np.maximum(eep, _TINY))))


def nce_score(source_labels, y):
    """NCE: negative conditional entropy ``-H(Y | Z)`` (Tran et al., 2019).

    ``Z`` are the source model's hard labels on the target inputs (the
    argmax of its probabilities), ``Y`` the target labels; ``P(y, z)`` is
    their empirical joint. 0 means ``Y`` is a function of ``Z``; more
    negative is worse.

    Parameters
    ----------
    source_labels : array-like of shape (n_samples,) or (n_samples, n_source_classes)
        Source-class labels, or source probabilities (their argmax is
        taken).
    y : array-like of shape (n_samples,)
        Target class labels.

    Returns
    -------
    score : float

    References
    ----------
    A. T. Tran, C. V. Nguyen, T. Hassner. "Transferability and Hardness of
    Supervised Classification Tasks", ICCV 2019.

    Examples
    --------
    >>> from sktransfer.selection import nce_score
    >>> nce_score([0, 0, 1, 1], ["a", "a", "b", "b"])   # Y determined by Z
    0.0
    """
    z = np.asarray(source_labels)
    if z.ndim == 2 and z.shape[1] > 1:
        z = _check_proba(z, "source_labels").argmax(axis=1)
    z_codes, _ = _check_source_labels(z)
    codes, classes = _check_labels(y, len(z_codes))
    joint, pz = _joint_with_source(codes, len(classes), z_codes)
    nz = joint > 0
    cond = np.divide(joint, pz[None, :], out=np.ones_like(joint), where=nz)
    return float(np.sum(joint[nz] * np.log(cond[nz])) + 0.0)


def _check_source_labels(z):
    z = np.asarray(z)
    if z.ndim == 2 and z.shape[1] == 1:
        z = z.ravel()
    if z.ndim != 1:
        raise ValueError(f"source_labels must be 1-D labels or 2-D probabilities, got shape {z.shape}.")
    if len(z) < 2:
        raise ValueError(f"source_labels needs at least 2 rows, got {len(z)}.")
    for i, v in enumerate(z):
        if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
            raise ValueError(f"Row {i} of source_labels is missing (None/NaN).")
    classes, codes = np.unique(z, return_inverse=True)
    return codes.astype(np.intp), classes


# ---------------------------------------------------------------- registry
FEATURE_SCORES = {
    "logme": logme_score,
    "hscore": h_score,
    "regularized_hscore": regularized_h_score,
}
PROBABILITY_SCORES = {
    "leep": leep_score,
    "nce": nce_score,
}
SCORES = {**FEATURE_SCORES, **PROBABILITY_SCORES}


def get_score_function(metric):
    """The score function for a name of :data:`SCORES`, or a callable as is."""
    if callable(metric):
        return metric
    if metric not in SCORES:
        raise ValueError(f"Unknown transferability metric {metric!r}; use one of {sorted(SCORES)} or a callable(features, y).")
    return SCORES[metric]


class _TransferabilityScorer:
    """``scorer(estimator, X, y)``: a score of ``estimator.transform(X)``."""

    def __init__(self, metric, kwargs):
        self.metric = metric
        self.kwargs = kwargs
        self._fn = get_score_function(metric)

    def __call__(self, estimator, X, y, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("Transferability scores do not support sample_weight.")
        try:
            check_is_fitted(estimator)
        except NotFittedError:
            # A frozen extractor learns nothing in fit: fitting it here only
            # loads the model (what cross_validate would do on a train fold).
            estimator = clone(estimator).fit(X, y)
        Z = estimator.transform(X)
        return float(self._fn(Z, y, **self.kwargs))

    def __repr__(self):
        name = self.metric if isinstance(self.metric, str) else getattr(self.metric, "__name__", repr(self.metric))
        extra = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"make_transferability_scorer({name!r}{extra})"


def make_transferability_scorer(metric="logme", **kwargs):
    """A scikit-learn scorer ``scorer(estimator, X, y)`` from a transferability score.

    The scorer runs ``estimator.transform(X)`` (a feature extractor, or a
    :class:`SourceProbabilityExtractor` for ``"leep"``/``"nce"``) and scores
    the output against ``y``, so it can be the ``scoring`` of
    :func:`~sklearn.model_selection.cross_validate` or
    :class:`~sklearn.model_selection.GridSearchCV`: e.g. choose the
    ``layer`` of a :class:`~sktransfer.PretrainedFeatureExtractor` without
    training anything. An unfitted estimator is fitted on ``X`` first
    (frozen extractors learn nothing in ``fit``).

    Parameters
    ----------
    metric : {"logme", "hscore", "regularized_hscore", "leep", "nce"} or callable, default="logme"
        A callable takes ``(transformed_X, y)`` and returns a float.
    **kwargs
        Passed to the score function (e.g. ``task="regression"``).

    Returns
    -------
    scorer : callable

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sktransfer.selection import make_transferability_scorer
    >>> scorer = make_transferability_scorer("logme")
    >>> X = np.random.RandomState(0).randn(60, 6)
    >>> y = (X[:, 0] > 0).astype(int)
    >>> bool(scorer(PCA(4).fit(X), X, y) < 0)
    True
    """
    get_score_function(metric)
    return _TransferabilityScorer(metric, kwargs)


# ------------------------------------------------------ source probabilities
def _image_family(backbone):
    from ..backbones import parse_spec

    family, model_id = parse_spec(backbone)
    if family not in ("timm", "torchvision"):
        raise ValueError(
            f"{backbone!r} is a {family} model: it has no source classifier to take "
            "probabilities from. LEEP and NCE need a timm or torchvision classifier "
            "(or an nn.Module that outputs logits); for text use logme_score or h_score."
        )
    return family, model_id


def _with_source_head(backbone):
    """(torch module with its classifier, ImageBackbone for preprocessing)."""
    from torch import nn

    from ..backbones import load_backbone
    from ..backbones._image import wrap_image_module

    if isinstance(backbone, nn.Module):
        model = copy.deepcopy(backbone).eval()
        return model, wrap_image_module(backbone, name=type(backbone).__name__)
    _image_family(backbone)  # a clear error for names that have no source classifier
    # The headless backbone resolves the weights (hub first, installed
    # packages offline) and carries the preprocessing; the classifier comes
    # from the same weights.
    bb = load_backbone(backbone, device="cpu")
    model = bb.source_classifier()
    return model.eval(), bb


class SourceProbabilityExtractor(TransformerMixin, BaseEstimator):
    """Class probabilities of a pretrained image classifier's own (source) head.

    :class:`~sktransfer.PretrainedFeatureExtractor` removes the classifier;
    this transformer keeps it and returns softmax probabilities over the
    source classes (the 1000 ImageNet classes for the timm and torchvision
    models), the input of :func:`leep_score` and :func:`nce_score`.
    Weights and preprocessing are resolved exactly as for the feature
    extractor (offline packages, hub cache), and the classifier comes from
    the same weights file.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="timm/tf_efficientnet_lite0"
        ``"timm/<arch>"``, ``"torchvision/<arch>"``, or a module that
        outputs logits (a timm model keeps its preprocessing config).
    image_size : int or None, default=None
        Square input size (None: the model's pretrained size).
    batch_size : int, default=32
    device : str, default="auto"

    Attributes
    ----------
    n_source_classes_ : int
        Number of source classes (columns of ``transform``'s output).
    device_ : str

    See Also
    --------
    leep_score, nce_score

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.selection import SourceProbabilityExtractor, leep_score
    >>> X = np.random.RandomState(0).randint(0, 255, (8, 28, 28), dtype=np.uint8)
    >>> P = SourceProbabilityExtractor("timm/tf_efficientnet_lite0", image_size=32).fit_transform(X)  # doctest: +SKIP
    >>> P.shape  # doctest: +SKIP
    (8, 1000)
    """

    def __init__(self, backbone="timm/tf_efficientnet_lite0", *, image_size=None, batch_size=32, device="auto"):
        self.backbone = backbone
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device

    def fit(self, X, y=None):
        """Load the classifier and check ``X``.

        Parameters
        ----------
        X : images (list, array, Series)
        y : ignored

        Returns
        -------
        self
        """
        from .._inputs import check_images, check_in_range_int
        from .._utils import resolve_device

        if self.image_size is not None:
            check_in_range_int(self.image_size, "image_size", 8)
        check_in_range_int(self.batch_size, "batch_size", 1)
        self.device_ = resolve_device(self.device)
        model, bb = _with_source_head(self.backbone)
        if bb.modality != "image":
            raise ValueError("SourceProbabilityExtractor reads images only.")
        self._load(model, bb)
        check_images(X)
        with _inference():
            import torch

            probe = torch.zeros((1, 3, 32, 32), dtype=torch.uint8)
            out = self._logits(probe)
        if out.ndim != 2 or out.shape[1] < 2:
            raise ValueError(f"The model of {self.backbone!r} does not output class logits (got shape {tuple(out.shape)}).")
        self.n_source_classes_ = int(out.shape[1])
        return self

    def _load(self, model, bb):
        self._model = model.to(self.device_)
        self._bb = bb  # collate only: the shared backbone stays where it is
        self._normalize = copy.deepcopy(bb.normalize).to(self.device_)

    def _logits(self, batch):
        x = self._normalize(batch.to(self.device_))
        return self._model(x).float().reshape(x.shape[0], -1).cpu()

    def transform(self, X):
        """Source-class probabilities, float64 of shape (n_samples, ``n_source_classes_``)."""
        import torch

        from .._inputs import check_images, to_rgb

        check_is_fitted(self, "n_source_classes_")
        if getattr(self, "_model", None) is None:  # unpickled: reload
            self._load(*_with_source_head(self.backbone))
        items = check_images(X)
        out = np.empty((len(items), self.n_source_classes_), dtype=np.float64)
        bs = int(self.batch_size)
        with _inference():
            for s in range(0, len(items), bs):
                idx = range(s, min(s + bs, len(items)))
                batch = self._bb.collate([to_rgb(items[i], i) for i in idx], image_size=self.image_size)
                out[s : s + len(idx)] = torch.softmax(self._logits(batch).double(), dim=1).numpy()
        return out

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_model", "_bb", "_normalize"):
            state.pop(key, None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True  # image paths
        tags.requires_fit = True
        return tags


class _inference:
    """``torch.inference_mode`` imported lazily."""

    def __enter__(self):
        import torch

        self._ctx = torch.inference_mode()
        return self._ctx.__enter__()

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
