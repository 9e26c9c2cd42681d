"""Shared fixtures: one local Ray, tiny generated data and one trained tiny version per run."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

# The tiny T5's vocabulary: every other word is <unk>.
WORDS = tuple("running shoes for jogging lightweight sneakers runners cast iron frying pan "
              "a the red blue green wool coat".split())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    from flows.runtime import RayConfig, start_ray

    with start_ray(RayConfig(num_cpus=4)):
        yield


@pytest.fixture(scope="session")
def tiny_data(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flows.generate import GenerateConfig, generate

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate(GenerateConfig(out=out, scale="tiny", seed=7))
    return out


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from flows.training import TrainConfig, train

    cfg = TrainConfig(data=tiny_data, artifacts=tmp_path_factory.mktemp("artifacts"))
    cfg = replace(cfg, two_tower_loop=replace(cfg.two_tower_loop, epochs=3),
                  dlrm_loop=replace(cfg.dlrm_loop, epochs=2))
    return train(cfg)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    folder = tmp_path_factory.mktemp("t5")
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    cfg = T5Config(vocab_size=len(vocab), d_model=16, d_kv=8, d_ff=32, num_layers=2,
                   num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    T5EncoderModel(cfg).save_pretrained(folder)
    return folder
