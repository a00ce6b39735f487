"""What transfer learning buys as labels grow, on a text task and an image task.

``make demo`` runs this script. For each task it trains every method on 2,
8, 32 and 128 labelled examples per class (``--sizes``) and measures its
accuracy on a fixed test set:

Text, BBC News topics (``sktransfer.datasets.load_bbc_news``: 5 topics):

- **zero-shot**: ``ZeroShotClassifier`` on the topic names alone (0 labels);
- **few-shot**: ``FewShotClassifier(init_from_labels=True)`` (SetFit-style
  contrastive fine-tuning of the encoder, then a logistic regression), at
  the smallest sizes (``--fewshot-sizes``, default 2 and 8), where it is
  meant to help;
- **automatic**: ``AutoTransferClassifier`` with a 45 s budget (the probe,
  few-shot, LoRA and fine-tuning candidates and TF-IDF, searched by
  successive halving on the training rows), at ``--auto-sizes`` (default 8);
  on this budget it tries what fits and falls back to the tuned probe;
- **frozen probe**: ``PretrainedFeatureExtractor`` (all-MiniLM-L6-v2, the
  first 128 tokens of each article: ``--max-length``) +
  ``LogisticRegression``;
- **TF-IDF**: ``TfidfVectorizer`` + ``LogisticRegression``, no transfer.

Images, Fashion-MNIST (``sktransfer.datasets.load_fashion_mnist``: 10
clothing classes, 28 px grayscale):

- **frozen probe**: ``PretrainedFeatureExtractor`` (tf_efficientnet_lite0
  at ``--image-size`` px) + ``StandardScaler`` + ``LogisticRegression``;
- **fine-tuned**: ``FineTunedClassifier(strategy="full")`` at the smallest
  sizes (``--finetune-sizes``, default 8);
- **raw pixels**: the 784 pixel values + ``StandardScaler`` +
  ``LogisticRegression``, no transfer.

Protocol: one fixed, stratified test set per task (50 per class). The
training rows come from a pool of ``max(--sizes)`` examples per class (the
rest of the data); for each seed (``--seeds``, default 3) nested subsets
of 2, 8, 32 ... per class are drawn from the pool, so the largest size is
the whole pool for every seed (its spread is only the method's own). Each
input is embedded once: the extractors share a persistent embedding cache
(``--cache-dir``, default ``$SKTRANSFER_CACHE_DIR`` or
``~/.cache/sktransfer``), so a second run only trains the heads.

The script prints a table per task (mean ± std test accuracy over the
seeds) and writes ``examples/output/demo.png`` (accuracy against labels per
class, one line per method, one panel per task), ``demo_results.csv`` (every
score) and ``demo_results.md`` (the tables) beside it.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python examples/demo.py           # make demo
    HF_HUB_OFFLINE=1 .venv/bin/python examples/demo.py --quick   # smoke test: 1 seed, sizes 2 8
    HF_HUB_OFFLINE=1 .venv/bin/python examples/demo.py --sizes 1 2 4 8 16 32 64 128 --seeds 5
"""

import argparse
import csv
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from sktransfer import (
    AutoTransferClassifier,
    FewShotClassifier,
    FineTunedClassifier,
    PretrainedFeatureExtractor,
    ZeroShotClassifier,
    embedding_stats,
    get_config,
    reset_embedding_stats,
)
from sktransfer.datasets import load_bbc_news, load_fashion_mnist

TEXT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
IMAGE_BACKBONE = "timm/tf_efficientnet_lite0"
TEST_PER_CLASS = 50
OUTPUT_DIR = Path(__file__).resolve().parent / "output"

# method key -> (label, line style) per task; the order is the table's.
TEXT_METHODS = {
    "zeroshot": ("zero-shot (topic names, 0 labels)", dict(color="C4", marker="*", linestyle="none", markersize=12)),
    "fewshot": ("FewShotClassifier (init_from_labels)", dict(color="C1", marker="D")),
    "auto": ("AutoTransferClassifier (budget 45 s)", dict(color="C2", marker="s", linestyle="none", markersize=9)),
    "probe": ("MiniLM frozen probe", dict(color="C0", marker="o")),
    "tfidf": ("TF-IDF + LogisticRegression", dict(color="C3", marker="^", linestyle="--")),
}
IMAGE_METHODS = {
    "finetune": ("FineTunedClassifier (full)", dict(color="C1", marker="D")),
    "probe": ("EfficientNet-Lite0 frozen probe", dict(color="C0", marker="o")),
    "pixels": ("raw pixels + LogisticRegression", dict(color="C3", marker="^", linestyle="--")),
}


def split(y, per_class_test, per_class_pool, seed=0):
    """A fixed stratified test set and a training pool of ``per_class_pool`` rows per class."""
    rng = np.random.RandomState(seed)
    test, pool = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:per_class_test])
        pool.append(idx[per_class_test:per_class_test + per_class_pool])
    return np.concatenate(test), pool


def nested_subsets(pool, sizes, seed):
    """For one seed: ``{n: indices}`` with ``n`` rows per class, each subset inside the next."""
    rng = np.random.RandomState(1000 + seed)
    perms = [rng.permutation(p) for p in pool]
    return {n: np.concatenate([p[:n] for p in perms]) for n in sizes}


def text_model(method, seed, cache_dir, max_length):
    if method == "probe":
        # normalize=True: unit-norm rows, as TF-IDF's, so C=10 suits both.
        ext = PretrainedFeatureExtractor(TEXT_BACKBONE, normalize=True, max_length=max_length, cache=cache_dir,
                                         verbose=False)
        return make_pipeline(ext, LogisticRegression(C=10.0, max_iter=5000))
    if method == "tfidf":
        return make_pipeline(TfidfVectorizer(sublinear_tf=True, stop_words="english"),
                             LogisticRegression(C=10.0, max_iter=5000))
    if method == "fewshot":
        return FewShotClassifier(TEXT_BACKBONE, init_from_labels=True, template="This news article is about {}.",
                                 n_pairs=128, max_length=max_length, random_state=seed)
    if method == "auto":
        # The probe, few-shot, LoRA and fine-tuning candidates (and TF-IDF), searched by
        # successive halving within 45 s; the shared cache makes the probe candidates cheap.
        return AutoTransferClassifier(TEXT_BACKBONE, budget_s=45, max_length=max_length, cache=cache_dir,
                                      random_state=seed)
    raise ValueError(method)


def pixels_to_features(X):
    return np.asarray(X, dtype=np.float32).reshape(len(X), -1) / 255.0


def image_model(method, seed, cache_dir, image_size):
    if method == "probe":
        ext = PretrainedFeatureExtractor(IMAGE_BACKBONE, image_size=image_size, cache=cache_dir, verbose=False)
        return make_pipeline(ext, StandardScaler(), LogisticRegression(max_iter=3000))
    if method == "pixels":
        return make_pipeline(FunctionTransformer(pixels_to_features), StandardScaler(), LogisticRegression(max_iter=3000))
    if method == "finetune":
        # The recipe of benchmarks/bench_fine_tuning.py on this task (head rate 3e-3, backbone 0.3x).
        return FineTunedClassifier(IMAGE_BACKBONE, strategy="full", image_size=image_size, lr=3e-3,
                                   backbone_lr_ratio=0.3, max_epochs=5, batch_size=16, random_state=seed)
    raise ValueError(method)


def fmt(scores):
    if not scores:
        return "—"
    if len(scores) == 1:
        return f"{100 * scores[0]:.1f}"
    return f"{100 * np.mean(scores):.1f} ± {100 * np.std(scores):.1f}"


def markdown_table(results, methods, columns):
    header = ["method"] + [str(c) for c in columns]
    rows = [[label] + [fmt(results[m].get(c, [])) for c in columns] for m, (label, _) in methods.items()]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def run_task(name, X, y, methods, build, sizes, extra_sizes, seeds, rows, zero_shot=None, t0=0.0):
    """Fit and score every method; returns ``{method: {n: [accuracies]}}``."""
    test, pool = split(y, TEST_PER_CLASS, max(sizes))
    take = (lambda idx: [X[i] for i in idx]) if isinstance(X, list) else (lambda idx: X[idx])
    X_test, y_test = take(test), y[test]
    results = {m: {} for m in methods}

    def record(method, n, seed, acc, seconds):
        results[method].setdefault(n, []).append(acc)
        rows.append({"task": name, "method": method, "per_class": n, "seed": seed,
                     "accuracy": round(acc, 4), "seconds": round(seconds, 1)})

    if zero_shot is not None:
        start = time.perf_counter()
        record("zeroshot", 0, 0, zero_shot(X_test, y_test), time.perf_counter() - start)
        print(f"    zero-shot: {100 * results['zeroshot'][0][0]:5.1f}% ({time.perf_counter() - start:.0f} s)", flush=True)
    for seed in range(seeds):
        subsets = nested_subsets(pool, sizes, seed)
        for n in sizes:
            idx = subsets[n]
            for method in methods:
                if method == "zeroshot" or (method in extra_sizes and n not in extra_sizes[method]):
                    continue
                if method in extra_sizes and seed > 0:
                    continue  # the trained arms: one seed (minutes each on a CPU)
                start = time.perf_counter()
                model = build(method, seed)
                model.fit(take(idx), y[idx])
                acc = float(np.mean(model.predict(X_test) == y_test))
                record(method, n, seed, acc, time.perf_counter() - start)
                print(f"    seed {seed}, {n:>4} per class, {method:<8}: {100 * acc:5.1f}% "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
        print(f"  {name}: seed {seed + 1}/{seeds} done [{time.perf_counter() - t0:.0f} s]")
    return results, len(X_test)


def plot(panels, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), dpi=110)
    for ax, (title, results, methods, sizes, n_seeds) in zip(np.atleast_1d(axes), panels):
        for method, (label, style) in methods.items():
            cells = results[method]
            xs = sorted(cells)
            if not xs:
                continue
            if xs == [0]:  # zero-shot: a horizontal reference line
                acc = 100 * np.mean(cells[0])
                ax.axhline(acc, color=style["color"], linestyle=":", linewidth=1.5, label=f"{label}: {acc:.1f}%")
                continue
            mean = [100 * np.mean(cells[n]) for n in xs]
            std = [100 * np.std(cells[n]) for n in xs]
            kw = dict(style)
            kw.setdefault("linestyle", "-")
            kw.setdefault("markersize", 6)
            seeds_note = "" if len(cells[xs[0]]) == n_seeds else f" ({len(cells[xs[0]])} seed)"
            ax.errorbar(xs, mean, yerr=std, label=label + seeds_note, capsize=3, linewidth=2, **kw)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlim(min(sizes) / 1.4, max(sizes) * 1.4)
        ax.set_xlabel("labelled training examples per class (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 8, 32, 128], metavar="N",
                        help="labelled examples per class (default: 2 8 32 128)")
    parser.add_argument("--seeds", type=int, default=None, help="draws of the training rows (default 3; 1 with --quick)")
    parser.add_argument("--fewshot-sizes", type=int, nargs="*", default=[2, 8], metavar="N",
                        help="sizes at which FewShotClassifier trains, seed 0 only (default: 2 8; none: --fewshot-sizes)")
    parser.add_argument("--auto-sizes", type=int, nargs="*", default=[8], metavar="N",
                        help="sizes at which AutoTransferClassifier searches (text), seed 0 only (default: 8)")
    parser.add_argument("--finetune-sizes", type=int, nargs="*", default=[8], metavar="N",
                        help="sizes at which FineTunedClassifier trains, seed 0 only (default: 8)")
    parser.add_argument("--image-size", type=int, default=64, help="input size of the image backbone in px (default 64)")
    parser.add_argument("--max-length", type=int, default=128,
                        help="token window of the text backbone (default 128: the start of each article)")
    parser.add_argument("--cache-dir", default=None,
                        help="embedding cache directory (default $SKTRANSFER_CACHE_DIR or ~/.cache/sktransfer)")
    parser.add_argument("--quick", action="store_true", help="smoke test: sizes 2 8, 1 seed, few-shot at 2 only")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [2, 8]
        args.fewshot_sizes = [2]
        args.finetune_sizes = []
        args.auto_sizes = []
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if seeds < 1 or min(args.sizes) < 1:
        parser.error("--seeds and --sizes must be positive")
    sizes = sorted(set(args.sizes))
    cache_dir = args.cache_dir or get_config()["cache_dir"]
    t_start = time.perf_counter()
    rows, panels, tables = [], [], []
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", message=".*longer than the model's limit.*")

    # ---- text: BBC News
    bbc = load_bbc_news()
    texts, topics = list(bbc.data), np.asarray(bbc.target)
    names = np.asarray(bbc.target_names)
    print(f"Text: BBC News, {len(texts):,} articles, {len(names)} topics; test {TEST_PER_CLASS} per topic; "
          f"{seeds} seed(s); sizes {sizes}. Embedding cache: {cache_dir}")

    def zero_shot(X_test, y_test):
        zs = ZeroShotClassifier(TEXT_BACKBONE, template="This news article is about {}.",
                                max_length=args.max_length, cache=cache_dir, verbose=False).fit(None, list(names))
        return float(np.mean(zs.predict(X_test) == y_test))

    fewshot = {"fewshot": [n for n in args.fewshot_sizes if n in sizes], "auto": [n for n in args.auto_sizes if n in sizes]}
    text_methods = {k: v for k, v in TEXT_METHODS.items() if k not in fewshot or fewshot[k]}
    reset_embedding_stats()
    t0 = time.perf_counter()
    # FewShotClassifier's init_from_labels needs the label names as y: train every text method on names.
    text_y = names[topics]
    with threadpool_limits(1, user_api="blas"):
        text_results, n_test = run_task(
            "bbc_news", texts, text_y, text_methods,
            lambda m, seed: text_model(m, seed, cache_dir, args.max_length),
            sizes, fewshot, seeds, rows, zero_shot=zero_shot, t0=t0)
    stats = embedding_stats()
    text_seconds = time.perf_counter() - t0
    print(f"  text done in {text_seconds:.0f} s ({stats['computed']} inputs embedded, {stats['cache_hits']} from the cache)")
    title = (f"Text: BBC News topics ({len(names)} classes, {n_test} test articles)\n"
             f"all-MiniLM-L6-v2; mean ± std over {seeds} draw(s)")
    panels.append((title, text_results, text_methods, sizes, seeds))
    tables.append(("BBC News (text)", markdown_table(text_results, text_methods, [0] + sizes)))

    # ---- images: Fashion-MNIST
    # Test and training rows are both drawn from the training file (disjoint).
    fm_train = load_fashion_mnist(subset="train")
    X_img, y_img = fm_train.data, fm_train.target
    print(f"Images: Fashion-MNIST, drawn from the {len(y_img):,} training images, 10 classes; test {TEST_PER_CLASS} per class; "
          f"EfficientNet-Lite0 at {args.image_size} px")
    finetune = {"finetune": [n for n in args.finetune_sizes if n in sizes]}
    image_methods = {k: v for k, v in IMAGE_METHODS.items() if k != "finetune" or finetune["finetune"]}
    reset_embedding_stats()
    t0 = time.perf_counter()
    with threadpool_limits(1, user_api="blas"):
        image_results, n_test = run_task(
            "fashion_mnist", X_img, y_img, image_methods,
            lambda m, seed: image_model(m, seed, cache_dir, args.image_size),
            sizes, finetune, seeds, rows, t0=t0)
    stats = embedding_stats()
    image_seconds = time.perf_counter() - t0
    print(f"  images done in {image_seconds:.0f} s ({stats['computed']} inputs embedded, {stats['cache_hits']} from the cache)")
    title = (f"Images: Fashion-MNIST (10 classes, {n_test} test images)\n"
             f"tf_efficientnet_lite0 at {args.image_size} px; mean ± std over {seeds} draw(s)")
    panels.append((title, image_results, image_methods, sizes, seeds))
    tables.append(("Fashion-MNIST (images)", markdown_table(image_results, image_methods, sizes)))

    # ---- report
    print()
    text_out = []
    for task, table in tables:
        head = f"{task}: test accuracy (%), mean ± std over {seeds} draw(s); columns: labelled examples per class"
        print(head)
        print(table)
        print()
        text_out.append(f"{head}\n\n{table}\n")
    notes = ["Rows trained on one seed only (few-shot, fine-tuned) show a single figure.",
             f"The largest size ({max(sizes)} per class) is the whole training pool, so its spread comes from the method alone."]
    if args.quick:
        notes.append("--quick: one seed and two sizes; a smoke test, these numbers say little.")
    print("\n".join(notes))

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    png = OUTPUT_DIR / "demo.png"
    plot(panels, png)
    with open(OUTPUT_DIR / "demo_results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["task", "method", "per_class", "seed", "accuracy", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    (OUTPUT_DIR / "demo_results.md").write_text("\n".join(text_out) + "\n" + "\n".join(notes) + "\n")
    shown = png.relative_to(Path.cwd()) if png.is_relative_to(Path.cwd()) else png
    print(f"\nSaved {shown}, demo_results.csv and demo_results.md beside it.")
    print(f"Time: text {text_seconds:.0f} s, images {image_seconds:.0f} s, total {time.perf_counter() - t_start:.0f} s.")


if __name__ == "__main__":
    main()
