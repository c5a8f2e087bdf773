"""Fixtures of the evaluation tests: the configuration, Tessera's reference data, one fast run of all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tessera_daemon.config import Config, load_config
from tessera_daemon.evaluation import reference, run_matrix


@pytest.fixture(scope="session")
def cfg() -> Config:
    return load_config(None, {})


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    d = reference.reference_dir()
    if d is None:
        pytest.skip("Tessera reference data (../shared/data/tessera) not found; set TESSERA_REFERENCE_DIR")
    return d


@pytest.fixture(scope="session")
def fast_all(cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """``run_matrix("all", fast=True)`` once for the whole session: (summary, output directory)."""
    out = tmp_path_factory.mktemp("evaluation")
    return run_matrix("all", cfg, out, fast=True), out
