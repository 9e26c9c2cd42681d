"""The command line fails early, with an error that says what to do."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flows.cli import main


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
