"""Helpers shared by test modules (imported as `tests.helpers`; conftest.py only holds
fixtures): free ports, the repository's paths, tiny random encoder folders, and a tiny
catalog whose right answers are known."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from flows.runtime import free_port  # noqa: F401 - the tests import it from here

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # beside the checkout, as in CI; absent under /tmp clones
DATASETS = SHARED / "datasets"

# The tiny T5's vocabulary: every other word is <unk>.
WORDS = tuple("running shoes for jogging lightweight sneakers runners cast iron frying pan "
              "a the red blue green wool coat".split())

# Six items in two categories, for interest expansion: boots and sneakers, kitchen things.
SHOES_AND_KITCHEN = pd.DataFrame({
    "item_id": ["b1", "b2", "b3", "k1", "k2", "k3"],
    "name": ["Trail Hiking Boot", "Leather Dress Boot", "Running Sneaker",
             "Cast Iron Pan", "Chef Knife", "Mixing Bowls"],
    "category": ["footwear"] * 3 + ["housewares"] * 3,
    "style": ["boot", "boot", "sneaker", "kitchen", "kitchen", "bowls"],
    "description": ["A sturdy boot for mountain trails.", "A polished boot for the office.",
                    "A light sneaker for running.", "A heavy pan for searing.",
                    "A sharp knife for the kitchen.", "Bowls for the kitchen."],
    "price": [120.0, 150.0, 90.0, 40.0, 60.0, 25.0],
})



def clicks(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """A clicks table (user_id, item_id, ts) from (user, item, ts) triples."""
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])


def write_tiny_t5(folder: Path) -> Path:
    """A 2-layer random T5 encoder with a word-level tokenizer saved beside it.

    The tokenizer is built with the `tokenizers` library (no sentencepiece model, no hub):
    a fixed vocabulary, lowercasing, whitespace splitting and T5's trailing `</s>`, saved as
    tokenizer.json so `AutoTokenizer` reads it back as a real T5 folder's would be read.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = {w: i for i, w in enumerate(("<pad>", "</s>", "<unk>") + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    cfg = T5Config(vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=2,
                   num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    T5EncoderModel(cfg).save_pretrained(folder)
    return folder


def write_tiny_clip(folder: Path) -> Path:
    """A 2-layer random CLIP vision tower (16-d projections, 30 x 30 images)."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=4, image_size=30, patch_size=6,
                           projection_dim=16)
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 30},
                       crop_size={"height": 30, "width": 30}).save_pretrained(folder)
    return folder
