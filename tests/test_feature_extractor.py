"""PretrainedFeatureExtractor on real pretrained backbones and real data."""

import pickle
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktransfer import BackboneNotFoundError, PretrainedFeatureExtractor, config_context
from conftest import IMAGE, TEXT, TV_IMAGE


# ----------------------------------------------------------------- text
def test_text_pipeline_grid_search_learns_topics(bbc_small, cache_dir):
    texts, y = bbc_small
    pipe = make_pipeline(PretrainedFeatureExtractor(TEXT, cache=cache_dir), LogisticRegression(max_iter=1000))
    gs = GridSearchCV(pipe, {"logisticregression__C": [0.1, 10]}, cv=3).fit(texts, y)
    # Five balanced topics: chance is 0.2. Frozen MiniLM separates them well.
    assert gs.best_score_ > 0.85
    assert set(gs.predict(texts[:10])) <= set(y)


def test_text_matches_sentence_transformers_encode(bbc_small):
    from sentence_transformers import SentenceTransformer

    from sktransfer.backbones._offline import known_local_path

    texts = bbc_small[0][:12]
    st = SentenceTransformer(str(known_local_path(TEXT)), device="cpu")
    expected = st.encode(texts, batch_size=4)
    got = PretrainedFeatureExtractor(TEXT, batch_size=4, device="cpu").fit(texts).transform(texts)
    assert got.dtype == np.float32 and got.shape == (12, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_text_input_containers_agree(bbc_small):
    texts = bbc_small[0][:5]
    ext = PretrainedFeatureExtractor(TEXT).fit(texts)
    ref = ext.transform(texts)
    for X in (np.array(texts, dtype=object), pd.Series(texts), pd.DataFrame({"t": texts}), np.array(texts)[:, None]):
        np.testing.assert_allclose(ext.transform(X), ref, atol=1e-6)


def test_hf_encoder_family_mean_pooling_matches_sentence_transformer(bbc_small):
    # all-MiniLM-L6-v2 = BERT + mean pooling + L2 normalisation.
    texts = bbc_small[0][:6]
    st = PretrainedFeatureExtractor(TEXT).fit(texts).transform(texts)
    hf = PretrainedFeatureExtractor("hf/" + TEXT, normalize=True).fit(texts).transform(texts)
    np.testing.assert_allclose(hf, st, atol=1e-5)


def test_intermediate_text_layer_differs_and_is_validated(bbc_small):
    texts = bbc_small[0][:4]
    ext = PretrainedFeatureExtractor(TEXT, layer=3).fit(texts)
    assert ext.layer_ == 3 and ext.transform(texts).shape == (4, 384)
    final = PretrainedFeatureExtractor(TEXT).fit(texts).transform(texts)
    assert not np.allclose(ext.transform(texts), final)
    with pytest.raises(ValueError, match="layer=12 is out of range.*7 layers"):
        PretrainedFeatureExtractor(TEXT, layer=12).fit(texts)


def test_normalize_gives_unit_rows(bbc_small):
    Z = PretrainedFeatureExtractor("hf/" + TEXT, normalize=True).fit_transform(bbc_small[0][:5])
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)


def test_column_transformer_text_column_plus_numeric(bbc_small):
    texts, y = bbc_small
    df = pd.DataFrame({"body": texts, "n_chars": [len(t) for t in texts], "n_words": [len(t.split()) for t in texts]})
    ct = ColumnTransformer(
        [("emb", PretrainedFeatureExtractor(TEXT), "body"), ("num", StandardScaler(), ["n_chars", "n_words"])]
    )
    pipe = make_pipeline(ct, LogisticRegression(C=10, max_iter=1000))
    scores = cross_val_score(pipe, df, y, cv=3)
    assert scores.mean() > 0.8
    Z = ct.fit_transform(df)
    assert Z.shape == (len(df), 384 + 2)
    names = ct.get_feature_names_out()
    assert names[0] == "emb__pretrainedfeatureextractor0" and names[-1] == "num__n_words"


def test_set_output_pandas(bbc_small):
    texts = bbc_small[0][:3]
    ext = PretrainedFeatureExtractor(TEXT).set_output(transform="pandas").fit(texts)
    df = ext.transform(pd.Series(texts, index=[10, 11, 12]))
    assert isinstance(df, pd.DataFrame) and df.shape == (3, 384)
    assert list(df.columns[:2]) == ["pretrainedfeatureextractor0", "pretrainedfeatureextractor1"]


# ---------------------------------------------------------------- images
def test_image_pipeline_with_xgboost_head(fashion_small):
    xgb = pytest.importorskip("xgboost")
    X, y = fashion_small
    y = np.searchsorted(np.unique(y), y)
    pipe = make_pipeline(
        PretrainedFeatureExtractor(IMAGE, image_size=96),
        xgb.XGBClassifier(n_estimators=60, max_depth=3, learning_rate=0.2, n_jobs=1),
    )
    scores = cross_val_score(pipe, list(X), y, cv=3)
    assert scores.mean() > 0.8  # 4 classes, chance 0.25


def test_image_grid_search_logistic(fashion_small):
    X, y = fashion_small
    pipe = make_pipeline(PretrainedFeatureExtractor(IMAGE, image_size=96), LogisticRegression(max_iter=2000))
    gs = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0]}, cv=3).fit(X, y)
    assert gs.best_score_ > 0.85


def test_torchvision_backbone_embeds(fashion_small):
    X, y = fashion_small
    Z = PretrainedFeatureExtractor(TV_IMAGE, image_size=96).fit(X[:8]).transform(X[:8])
    assert Z.shape == (8, 1280) and np.isfinite(Z).all() and Z.std() > 0


def test_pretrained_weights_recognise_a_photo():
    # ImageNet class 698 is "palace": the sample photo china.jpg shows one.
    from sklearn.datasets import load_sample_image

    from sktransfer.backbones import load_backbone

    bb = load_backbone(IMAGE)
    import timm
    import torch

    from sktransfer.backbones._offline import known_local_path, remap_efficientnet_lite

    model = timm.create_model("tf_efficientnet_lite0")
    model.load_state_dict(remap_efficientnet_lite(torch.load(known_local_path(IMAGE), weights_only=True)))
    model.eval()
    x = bb.normalize(bb.collate([Image.fromarray(load_sample_image("china.jpg"))]))
    assert model(x).argmax().item() == 698


def test_image_formats_agree(tmp_path, fashion_small):
    gray = fashion_small[0][0]  # 28×28 uint8
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full_like(gray[:, :, None], 255)], axis=2)
    path = tmp_path / "img.png"
    Image.fromarray(gray).save(path)
    ext = PretrainedFeatureExtractor(IMAGE, image_size=64).fit([gray])
    ref = ext.transform([gray])
    variants = {
        "HxWx1": [gray[:, :, None]],
        "HxWx3": [rgb],
        "HxWx4": [rgba],
        "float01": [gray.astype(np.float32) / 255.0],
        "PIL L": [Image.fromarray(gray)],
        "PIL RGB": [Image.fromarray(rgb)],
        "path": [str(path)],
        "Path": [path],
        "stack NxHxW": gray[None],
        "stack NxHxWxC": rgb[None],
        "Series of paths": pd.Series([str(path)]),
    }
    for name, X in variants.items():
        np.testing.assert_allclose(ext.transform(X), ref, atol=1e-4, err_msg=name)


def test_intermediate_image_layer():
    X = [np.random.RandomState(0).randint(0, 255, (40, 40, 3), dtype=np.uint8)]
    ext = PretrainedFeatureExtractor(IMAGE, layer=2, image_size=64).fit(X)
    Z = ext.transform(X)
    assert Z.shape == (1, ext.embedding_dim_) and ext.embedding_dim_ < 1280
    names = ext.get_feature_names_out()
    assert len(names) == ext.embedding_dim_


# ----------------------------------------------------------- persistence
def test_pickle_is_small_and_reloads(bbc_small):
    texts = bbc_small[0][:3]
    ext = PretrainedFeatureExtractor(TEXT).fit(texts)
    blob = pickle.dumps(ext)
    assert len(blob) < 10_000  # weights are not embedded
    again = pickle.loads(blob)
    np.testing.assert_allclose(again.transform(texts), ext.transform(texts), atol=1e-6)


def test_clone_is_cheap_and_unfitted():
    t0 = time.perf_counter()
    c = clone(PretrainedFeatureExtractor(IMAGE, image_size=64))
    assert time.perf_counter() - t0 < 0.1
    assert not hasattr(c, "embedding_dim_")
    assert c.get_params()["image_size"] == 64


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "X, match",
    [
        ([], "X is empty"),
        (["ok", None, "fine"], "Row 1 of X is missing"),
        (["ok", float("nan")], "Row 1 of X is missing"),
        (["ok", 3], "Row 1 of X is a int"),
        (["ok", np.zeros((8, 8), np.uint8)], "Row 1 of X is an image.*mixes text and images"),
        (np.zeros((4, 3)), "Expected text, got a numeric array"),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), "DataFrame with 2 columns"),
        ("just one string", "single str"),
    ],
)
def test_bad_text_input(X, match):
    ext = PretrainedFeatureExtractor(TEXT).fit(["fine"])
    with pytest.raises(ValueError, match=match):
        ext.transform(X)


def test_bad_image_input(tmp_path):
    ok = np.zeros((32, 32, 3), np.uint8)
    ext = PretrainedFeatureExtractor(IMAGE, image_size=32).fit([ok])
    missing = str(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError, match=r"Row 1 of X: image file not found: .*nope\.jpg"):
        ext.transform([ok, missing])
    corrupt = tmp_path / "broken.png"
    Image.fromarray(ok).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match=r"Row 0 of X: cannot read image file .*broken\.png"):
        ext.transform([str(corrupt)])
    with pytest.raises(ValueError, match="Row 0 of X: uint16 image with values in \\[0, 4095\\]"):
        ext.transform([(np.arange(64, dtype=np.uint16) * 65).reshape(8, 8)])
    with pytest.raises(ValueError, match=r"float image values must lie in \[0, 1\], got range \[0, 255\]"):
        ext.transform([np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8)])
    with pytest.raises(ValueError, match="must be N×H×W or N×H×W×C, got shape"):
        ext.transform(np.zeros((2, 3, 4, 5, 6), np.uint8))
    with pytest.raises(ValueError, match="Row 0 of X is an array of shape \\(8,\\)"):
        ext.transform([np.zeros(8, np.uint8)])
    with pytest.raises(ValueError, match="5 channels"):
        ext.transform([np.zeros((8, 8, 5), np.uint8)])
    with pytest.raises(ValueError, match="Row 1 of X is text .*mixes text and images"):
        ext.transform([ok, "a sentence about cats"])
    with pytest.raises(ValueError, match="X is empty"):
        ext.transform([])


def test_transform_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PretrainedFeatureExtractor(TEXT).transform(["hello"])


def test_unknown_model_names_fail_fast_and_clearly():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="Unknown timm model 'tf_efficientnet_lite9'.*Did you mean"):
        PretrainedFeatureExtractor("timm/tf_efficientnet_lite9").fit(["x"])
    with pytest.raises(ValueError, match="Unknown torchvision model"):
        PretrainedFeatureExtractor("torchvision/mobilenet_v9").fit(["x"])
    with pytest.raises(ValueError, match="use a family prefix"):
        PretrainedFeatureExtractor("resnet50").fit(["x"])
    with config_context(offline=True):
        with pytest.raises(BackboneNotFoundError, match="sentence-transformers/no-such-model.*offline.*Looked in"):
            PretrainedFeatureExtractor("sentence-transformers/no-such-model").fit(["x"])
        with pytest.raises(BackboneNotFoundError, match="timm/resnet18.*Looked in"):
            PretrainedFeatureExtractor("timm/resnet18").fit(["x"])
    assert time.perf_counter() - t0 < 30  # no network hang


@pytest.mark.parametrize(
    "params, match",
    [
        ({"batch_size": 0}, r"'batch_size' parameter of PretrainedFeatureExtractor must be an int in the range \[1, inf\) or None\. Got 0"),
        ({"max_length": "long"}, r"'max_length' parameter of PretrainedFeatureExtractor must be an int .* or None\. Got 'long'"),
        ({"verbose": "yes"}, r"'verbose' parameter of PretrainedFeatureExtractor must be .* Got 'yes'"),
        ({"progress": "yes"}, r"'progress' parameter of PretrainedFeatureExtractor must be .* Got 'yes'"),
        ({"pooling": "max"}, r"'pooling' parameter of PretrainedFeatureExtractor must be a str among \{.*'mean'.*\}\. Got 'max'"),
        ({"layer": "last"}, r"'layer' parameter of PretrainedFeatureExtractor must be an int .* or None\. Got 'last'"),
        ({"device": "cuda:7"} , "CUDA is not available"),
    ],
)
def test_bad_parameters_are_named(params, match):
    import torch

    if "device" in params and torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match=match):
        PretrainedFeatureExtractor(TEXT, **params).fit(["hello"])


def test_progress_is_the_deprecated_name_of_verbose(capsys):
    texts = ["a short text", "another one"]
    ext = PretrainedFeatureExtractor(TEXT, progress=True)
    with pytest.warns(FutureWarning, match=r"progress=\.\.\.\) was renamed verbose=\.\.\."):
        Z_old = ext.fit_transform(texts)
    assert "Embedding 2 texts" in capsys.readouterr().err  # the old name still works
    Z = PretrainedFeatureExtractor(TEXT, verbose=True).fit_transform(texts)
    assert "Embedding 2 texts" in capsys.readouterr().err
    np.testing.assert_allclose(Z, Z_old, atol=1e-6)
    PretrainedFeatureExtractor(TEXT, verbose=False).fit_transform(texts)
    assert "Embedding" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="Give verbose= only: progress= is its deprecated old name"):
        PretrainedFeatureExtractor(TEXT, verbose=True, progress=False).fit(texts)


def test_max_length_is_bounded_by_the_model(bbc_small):
    with pytest.raises(ValueError, match=r"max_length=1000 .*all-MiniLM-L6-v2.*limit of 512 tokens"):
        PretrainedFeatureExtractor(TEXT, max_length=1000).fit(["hello"])
    # 512 is MiniLM's real positional limit (sentence-transformers' 256 is only its default).
    long_text = " ".join(bbc_small[0])[:6000]
    ext = PretrainedFeatureExtractor(TEXT, max_length=512).fit([long_text])
    Z = ext.transform([long_text])
    assert np.isfinite(Z).all()
    assert not np.allclose(Z, PretrainedFeatureExtractor(TEXT).fit([long_text]).transform([long_text]), atol=1e-3)
