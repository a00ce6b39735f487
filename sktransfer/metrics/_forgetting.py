"""Measuring catastrophic forgetting: how much of the pretrained features survive."""

import numpy as np


def linear_cka(X, Y):
    """Linear centred kernel alignment between two feature matrices.

    1.0 means the representations are the same up to rotation and
    isotropic scaling; values near 0 mean they share little (Kornblith et
    al., 2019, "Similarity of neural network representations revisited").

    Parameters
    ----------
    X : array-like of shape (n_samples, d1)
    Y : array-like of shape (n_samples, d2)
        Features of the same samples from two models.

    Returns
    -------
    cka : float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.metrics import linear_cka
    >>> X = np.random.RandomState(0).randn(50, 8)
    >>> round(linear_cka(X, 3 * X), 6)
    1.0
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"X and Y must be 2-D feature matrices, got shapes {X.shape} and {Y.shape}.")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must describe the same samples: {X.shape[0]} rows vs {Y.shape[0]}.")
    if X.shape[0] < 2:
        raise ValueError("linear_cka needs at least 2 samples.")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("X and Y must not contain NaN or infinity.")
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    # ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), computed in the smaller space.
    cross = np.linalg.norm(Y.T @ X, "fro") ** 2
    norm = np.linalg.norm(X.T @ X, "fro") * np.linalg.norm(Y.T @ Y, "fro")
    return float(cross / norm) if norm > 0 else 0.0


def forgetting_report(model, X_ref, y_ref=None, *, cv=3, random_state=0):
    """How far a fine-tuned model drifted from its pretrained backbone (or from the model it started from).

    A model fitted from another fitted model (sequential tasks:
    ``FineTunedClassifier(backbone=clf_a)``, or ``backbone=<clf_a's save
    directory>``) is compared with that start: the "pretrained" features
    are then ``clf_a.transform(X_ref)``, so with task A's rows as
    ``X_ref, y_ref`` the report says how much of task A survived training
    on task B (a probe fitted on each model's features, A's own head aside).

    Parameters
    ----------
    model : FineTunedClassifier or FineTunedRegressor
        A fitted fine-tuning estimator.
    X_ref : inputs
        Reference data (e.g. from the task the backbone was good at).
    y_ref : array-like or None
        Labels of a reference task. When given, a cross-validated logistic
        regression on pretrained features and on fine-tuned features
        measures the accuracy retained.

    Returns
    -------
    report : dict
        ``cka`` (linear CKA of pretrained vs fine-tuned features), and with
        ``y_ref``: ``ref_accuracy_pretrained``, ``ref_accuracy_finetuned``
        and ``retained`` (their ratio). For a model fitted from a fitted
        start, "pretrained" means the start's features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .._feature_extractor import PretrainedFeatureExtractor

    from .._training import start_estimator

    start = start_estimator(model.backbone)
    if start is not None:  # sequential tasks: the weights this model was trained from are the start's
        F0 = start.transform(X_ref)
    else:
        pre = PretrainedFeatureExtractor(
            model.backbone, image_size=model.image_size, max_length=model.max_length, pooling=model.pooling,
            device=model.device,
        ).fit(X_ref)
        F0 = pre.transform(X_ref)
    F1 = model.transform(X_ref)
    report = {"cka": linear_cka(F0, F1)}
    if y_ref is not None:
        folds = StratifiedKFold(cv, shuffle=True, random_state=random_state)
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
        a0 = cross_val_score(probe, F0, y_ref, cv=folds).mean()
        a1 = cross_val_score(probe, F1, y_ref, cv=folds).mean()
        report.update(ref_accuracy_pretrained=float(a0), ref_accuracy_finetuned=float(a1), retained=float(a1 / a0))
    return report
