"""The accelerator kinds a flow can run on: the one list every config and flag checks against.

    cpu      the default everywhere; fractional CPUs per Ray worker on small machines
    gpu      NVIDIA GPUs through CUDA (Ray's `GPU` resource)
    neuron   AWS Trainium / Inferentia NeuronCores (Ray's `neuron_cores` resource), reached
             through torch-neuronx (training) or vLLM's Neuron plugin (the LLM)
"""

from __future__ import annotations

ACCELERATORS: tuple[str, ...] = ("cpu", "gpu", "neuron")


def check_accelerator(name: str) -> str:
    """`name`, or a ValueError that lists the kinds there are."""
    if name not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {name!r}; choose one of {', '.join(ACCELERATORS)}")
    return name
