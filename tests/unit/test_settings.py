"""Settings from flags and HOOKLINE_* variables (a flag wins over its variable)."""

from __future__ import annotations

import argparse

import pytest

from hookline.server import settings


def _parse(argv: list[str], environ: dict[str, str]) -> settings.Settings:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.from_sources(parser.parse_args(argv), environ)


def test_single_process_is_off_by_default_and_set_by_flag_or_variable() -> None:
    assert _parse([], {}).single_process is False
    assert _parse(["--single-process"], {}).single_process is True
    assert _parse([], {"HOOKLINE_SINGLE_PROCESS": "true"}).single_process is True
    assert _parse([], {"HOOKLINE_SINGLE_PROCESS": "0"}).single_process is False


def test_a_switch_variable_that_is_neither_true_nor_false_is_refused() -> None:
    with pytest.raises(ValueError, match="HOOKLINE_SINGLE_PROCESS must be true or false"):
        _parse([], {"HOOKLINE_SINGLE_PROCESS": "maybe"})


def test_flags_win_over_variables() -> None:
    chosen = _parse(["--job-workers", "2"], {"HOOKLINE_JOB_WORKERS": "9", "HOOKLINE_DELIVERY_CONCURRENCY": "7"})
    assert (chosen.job_workers, chosen.delivery_concurrency) == (2, 7)


def test_delivery_processes_default_to_one_and_need_the_split() -> None:
    assert _parse([], {}).delivery_processes == 1
    assert _parse([], {"HOOKLINE_DELIVERY_PROCESSES": "3"}).delivery_processes == 3
    with pytest.raises(ValueError, match="at least 1"):
        _parse(["--delivery-processes", "0"], {})
    with pytest.raises(ValueError, match="--single-process runs no delivery process"):
        _parse(["--single-process", "--delivery-processes", "2"], {})


def test_job_memory_limit_defaults_to_256_mib_and_is_set_by_flag_or_variable() -> None:
    assert _parse([], {}).job_memory_limit_mib == 256
    assert _parse(["--job-memory-limit", "512"], {}).job_memory_limit_mib == 512
    assert _parse([], {"HOOKLINE_JOB_MEMORY_LIMIT": "128"}).job_memory_limit_mib == 128
    with pytest.raises(ValueError, match="--job-memory-limit must be at least 16"):
        _parse(["--job-memory-limit", "8"], {})
