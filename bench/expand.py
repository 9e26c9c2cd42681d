"""LLM interest expansion: throughput per backend, and Ray Data's overhead over a direct call.

    python -m bench.expand --scale small --users 64 [--backend vllm]

The same sparse-history profiles go through the LLM twice, at the same batch size:
  direct    load_backend + generate_batch over the batches, in this process
  ray data  `run_generate`: a Ray Data actor pool that loads the backend and runs the same
            batch function (actor start, model load, scheduling and serialization included)
Overhead is (ray data wall - direct wall) / direct wall, both including the model load. The
rest of the expand flow (validation, grounding, the JSON-valid rate, topic survival) is run
on the Ray Data outputs and reported beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from bench import report
from flows.expand import ExpandConfig, load_profiles
from flows.generate import GenerateConfig, generate
from flows.layout import ITEMS, RUNS
from flows.runtime import start_ray
from interests.backends import LLMConfig, load_backend
from interests.grounding import catalog_vocabulary
from interests.stages import generate_batch, run_generate, run_ground, summarize


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=["tiny", "small"], default="small")
    p.add_argument("--data", help="an existing data folder (default: generate into runs/)")
    p.add_argument("--users", type=int, default=64, help="sparse-history users to expand")
    p.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--save", action="store_true")
    args = p.parse_args(argv)

    with start_ray():
        data = Path(args.data) if args.data else RUNS / f"bench-{args.scale}" / "data"
        if not (data / ITEMS).exists():
            generate(GenerateConfig(out=data, scale=args.scale))
        llm = LLMConfig(backend=args.backend, batch_size=args.batch_size,
                        num_cpus=2.0 if args.backend == "vllm" else 1.0)
        cfg = ExpandConfig(data=data, llm=llm)
        items, profiles = load_profiles(cfg)
        profiles = profiles[profiles["n_history"] > 0].head(args.users).reset_index(drop=True)
        n = len(profiles)

        t0 = time.perf_counter()
        backend = load_backend(llm)
        load_s = time.perf_counter() - t0
        parts = [generate_batch(profiles.iloc[s:s + llm.batch_size], backend, llm)
                 for s in range(0, n, llm.batch_size)]
        direct_s = time.perf_counter() - t0
        direct = pd.concat(parts)
        del backend

        t0 = time.perf_counter()
        via_ray = run_generate(profiles, replace(llm), use_ray=True)
        ray_s = time.perf_counter() - t0

        vocab = catalog_vocabulary(items)
        grounded = run_ground(via_ray, cfg.encoder, vocab, cfg.grounding, use_ray=True)
        s = summarize(grounded)
        same = (direct["llm_text"].to_numpy() == via_ray["llm_text"].to_numpy()).mean()

    gen_direct = direct_s - load_s
    lines = [
        f"# bench.expand {dt.datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, "
        f"{args.backend}, batch {llm.batch_size}",
        f"# command: python -m bench.expand --scale {args.scale} --users {args.users} "
        f"--backend {args.backend} --batch-size {args.batch_size}",
        f"profiles: {n} users with 1-3 clicks from {data}",
        f"direct:   {direct_s:6.1f} s ({load_s:.1f} s model load + {gen_direct:.1f} s "
        f"generate) = {n / gen_direct:.2f} profiles/s generating",
        f"ray data: {ray_s:6.1f} s end to end (actor + model load + generate); in-actor "
        f"generate {s['generate_s']:.1f} s = {s['profiles_per_s']:.2f} profiles/s",
        f"ray data overhead over direct: {(ray_s - direct_s) / direct_s:+.1%} end to end "
        f"(wall, both with model load); {(s['generate_s'] - gen_direct) / gen_direct:+.1%} "
        "generating (in-actor generate vs direct generate)",
        f"same outputs direct vs ray data: {same:.0%} of profiles (greedy decoding)",
        f"JSON valid before grounding: {s['json_valid_rate']:.1%}; topics surviving "
        f"grounding: {s['topic_survival']:.1%} ({s['topics_kept']} of {s['topics_raw']})",
        f"statuses: {s['status']}",
        f"drops: { {k: v for k, v in s['drops'].items() if v} }",
        f"latency per profile (its batch's generate time): p50 {s['latency_p50_s']:.2f} s, "
        f"p99 {s['latency_p99_s']:.2f} s",
    ]
    report(lines, f"expand-{args.backend}-{args.scale}", args.save)


if __name__ == "__main__":
    main()
