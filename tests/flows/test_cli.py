"""The command line fails early, with an error that says what to do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.cli import main
from tests.helpers import REPO


def test_train_without_data_says_to_generate(tmp_path: Path, capsys) -> None:
    assert main(["train", "--data", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "item table not found" in err and "warmstart generate" in err


def test_evaluate_and_serve_without_a_version_say_to_train(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--artifacts", str(tmp_path)]) == 2
    assert "run `warmstart train` first" in capsys.readouterr().err
    assert main(["serve", "--artifacts", str(tmp_path)]) == 2
    assert "run `warmstart train` first" in capsys.readouterr().err


def test_item_table_missing_columns_is_named(tmp_path: Path, capsys) -> None:
    pd.DataFrame({"item_id": ["a"], "price": [1.0]}).to_parquet(tmp_path / "items.parquet")
    assert main(["train", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "items.parquet lacks columns ['category', 'style']" in err


def test_unknown_scale_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--scale", "huge"])


def test_generate_will_not_overwrite_a_dataset_unasked(tmp_path: Path, capsys) -> None:
    (tmp_path / "interactions").mkdir()
    (tmp_path / "interactions" / "mine.parquet").write_bytes(b"keep me")
    assert main(["generate", "--out", str(tmp_path)]) == 2
    assert "already holds interactions; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "interactions" / "mine.parquet").read_bytes() == b"keep me"


def test_generate_names_the_bad_product_before_starting_ray(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "products.yaml"
    bad.write_text("- id: a1\n  name: Chair\n  category: spaceships\n  style: x\n  price: 1\n")
    assert main(["generate", "--out", str(tmp_path / "out"), "--catalog", str(bad)]) == 2
    assert "product #0 has unknown category 'spaceships'" in capsys.readouterr().err


def test_expand_and_experiment_fail_before_ray_starts(tmp_path: Path, capsys) -> None:
    assert main(["expand", "--data", str(tmp_path / "nothing")]) == 2
    assert "item table not found" in capsys.readouterr().err
    assert main(["expand", "--data", str(tmp_path), "--llm-model", "llama-3.1-8b"]) == 2
    assert "copy meta-llama/Llama-3.1-8B-Instruct to a folder" in capsys.readouterr().err
    assert main(["expand", "--data", str(tmp_path), "--encoder", "t5"]) == 2
    assert "needs a model folder" in capsys.readouterr().err
    grid = tmp_path / "grid.yaml"
    grid.write_text("llms: [{name: a, hardware: moon}]\n")
    assert main(["experiment", "--data", str(tmp_path), "--grid", str(grid)]) == 2
    assert "no price per hour for hardware ['moon']" in capsys.readouterr().err


# ----- one definition per flow ---------------------------------------------------------------

def test_every_flow_runs_as_a_module_with_the_clis_flags() -> None:
    """`python -m flows.<name> --help` for every flow, in one interpreter through runpy (what
    `python -m` does), and its flags are exactly those of `warmstart <name>`."""
    import subprocess
    import sys

    from flows.cli import COMMANDS, build_parser

    script = ("import runpy, sys\n"
              "for name in sys.argv[1:]:\n"
              "    sys.argv = [name, '--help']\n"
              "    try:\n"
              "        runpy.run_module(f'flows.{name}', run_name='__main__', alter_sys=True)\n"
              "    except SystemExit as e:\n"
              "        assert e.code == 0, (name, e.code)\n"
              "    print('=====', name, flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script, *COMMANDS], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    helps = dict(zip(COMMANDS, done.stdout.split("=====")[:-1], strict=True))
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    for name, text in helps.items():
        assert f"usage: python -m flows.{name}" in text, text
        flags = {o for a in sub[name]._actions for o in a.option_strings} - {"-h", "--help"}
        assert {f for f in flags if f in text} == flags, (name, flags)


def test_python_m_runs_the_flow_not_just_its_help(tmp_path: Path) -> None:
    """A real `python -m flows.finetune` reaches the flow: here its first check, which needs a
    published version, and exits 2 with the CLI's message."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "flows.finetune", "--artifacts",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 2
    assert "warmstart finetune: error:" in done.stderr and "run `warmstart train`" in done.stderr


@pytest.mark.parametrize(("name", "argv", "default"), [
    ("generate", [], lambda m: m.GenerateConfig()),
    ("load", ["movielens", "--src", "."], lambda m: m.LoadConfig(src=Path("."))),
    ("train", [], lambda m: m.TrainConfig()),
    ("finetune", [], lambda m: m.FinetuneConfig()),
    ("evaluate", [], lambda m: m.EvalConfig()),
    ("expand", [], lambda m: m.ExpandConfig()),
    ("experiment", [], lambda m: m.ExperimentConfig()),
    ("demo", [], lambda m: m.DemoConfig()),
    ("serve", [], lambda m: m.ServeFlowConfig()),
])
def test_flags_left_out_give_the_configs_defaults(name: str, argv: list[str],
                                                  default: Callable[[Any], Any]) -> None:
    """Every flag's default comes from its flow's config dataclass: parsing no flags builds
    exactly the default config."""
    from flows.cli import flow, module_parser

    module = flow(name)
    assert module.config(module_parser(name).parse_args(argv)) == default(module)
