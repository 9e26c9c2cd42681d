from flows.cli import run_module

run_module("experiment")
