"""The `warmstart` command line: one subcommand per flow, each a thin wrapper."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from flows import demo, evaluate, expand, experiment, finetune, generate, load, training


def _serve(args: argparse.Namespace) -> None:
    import time

    from flows.runtime import start_ray
    from serve.app import run_app
    from train.artifacts import resolve, verify

    verify(resolve(args.artifacts))  # a clear error before Ray starts, not after
    with start_ray():
        url = run_app(args.artifacts, host=args.host, port=args.port)
        print(f"serving {args.artifacts} at {url} (POST /recommend, GET /healthz, /docs); "
              "Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="warmstart", description="Recommendations that are good from the first request.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="synthetic retail data with ground truth")
    generate.add_args(p)
    p.set_defaults(func=generate.run)

    p = sub.add_parser("load", help="external files (generic CSV/parquet, MovieLens-100K, "
                       "Amazon Books, Retail Demo Store) into the data layout")
    load.add_args(p)
    p.set_defaults(func=load.run)

    p = sub.add_parser("train", help="train Two-Tower and DLRM on Ray Train, index, publish")
    training.add_args(p)
    p.set_defaults(func=training.run)

    p = sub.add_parser("finetune", help="the daily flow: new day(s) + replay, item tower "
                       "frozen, promoted only without a regression")
    finetune.add_args(p)
    p.set_defaults(func=finetune.run)

    p = sub.add_parser("evaluate", help="test-day quality beside popularity and the oracle")
    evaluate.add_args(p)
    p.set_defaults(func=evaluate.run)

    p = sub.add_parser("expand", help="LLM interest expansion for users with sparse "
                       "histories: topics, grounding, interest vectors")
    expand.add_args(p)
    p.set_defaults(func=expand.run)

    p = sub.add_parser("experiment", help="compare LLM x encoder pairs on cold users: "
                       "quality, spread, overlap, latency, cost; HTML report with charts")
    experiment.add_args(p)
    p.set_defaults(func=experiment.run)

    p = sub.add_parser("serve", help="run the Ray Serve app")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=_serve)

    p = sub.add_parser("demo", help="generate -> train -> evaluate -> serve -> a few requests")
    demo.add_args(p)
    p.set_defaults(func=demo.run)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"warmstart {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
