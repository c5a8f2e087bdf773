"""Fixtures of the evaluation tests: the configuration, Tessera's reference data, one fast run of all."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests
from tessera_daemon.config import Config, load_config
from tessera_daemon.evaluation import reference, run_matrix

VENDORED = Path(tests.__file__).resolve().parent / "fixtures" / "tessera"  # see its README.md (licence)


@pytest.fixture(scope="session", autouse=True)
def _reference_data() -> Iterator[None]:
    """Tessera's figures from the copy vendored in tests/ unless $TESSERA_REFERENCE_DIR names another."""
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get(reference.ENV):
            mp.setenv(reference.ENV, str(VENDORED))
        yield


@pytest.fixture(scope="session")
def cfg() -> Config:
    return load_config(None, {})


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    d = reference.reference_dir()
    assert d is not None, f"Tessera reference data not found: ${reference.ENV}={os.environ.get(reference.ENV)!r}"
    return d


@pytest.fixture(scope="session")
def fast_all(cfg: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """``run_matrix("all", fast=True)`` once for the whole session: (summary, output directory)."""
    out = tmp_path_factory.mktemp("evaluation")
    return run_matrix("all", cfg, out, fast=True), out
