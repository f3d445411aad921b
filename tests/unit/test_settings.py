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


def test_the_shutdown_grace_defaults_to_5_s_and_is_set_by_flag_or_variable() -> None:
    assert _parse([], {}).shutdown_grace_s == 5.0
    assert _parse(["--shutdown-grace", "20s"], {}).shutdown_grace_s == 20.0
    assert _parse([], {"HOOKLINE_SHUTDOWN_GRACE": "500ms"}).shutdown_grace_s == 0.5
    assert _parse([], {"HOOKLINE_SHUTDOWN_GRACE": "0"}).shutdown_grace_s == 0.0  # give everything back at once


def test_job_memory_limit_defaults_to_256_mib_and_is_set_by_flag_or_variable() -> None:
    assert _parse([], {}).job_memory_limit_mib == 256
    assert _parse(["--job-memory-limit", "512"], {}).job_memory_limit_mib == 512
    assert _parse([], {"HOOKLINE_JOB_MEMORY_LIMIT": "128"}).job_memory_limit_mib == 128
    with pytest.raises(ValueError, match=r"--job-memory-limit \(HOOKLINE_JOB_MEMORY_LIMIT\) must be at least 16"):
        _parse(["--job-memory-limit", "8"], {})


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("HOOKLINE_JOB_WORKERS", "abc", "'abc' is not a whole number"),
        ("HOOKLINE_MAX_STREAMS", "1.5", "'1.5' is not a whole number"),
        ("HOOKLINE_METRICS_PORT", "http", "'http' is not a whole number"),
        ("HOOKLINE_MAX_JSON_BYTES", "1MB", "'1MB' is not a whole number"),
        ("HOOKLINE_CONNECT_TIMEOUT", "5s", "'5s' is not a number"),
        ("HOOKLINE_JOB_LEASE", "soon", "'soon' is not a duration"),
        ("HOOKLINE_SHUTDOWN_GRACE", "-1s", "'-1s' is not a duration"),
        ("HOOKLINE_RETRY_SCHEDULE", "x", "entry 1 ('x')"),
        ("HOOKLINE_ALLOW_TARGET", "10.0.0.0/33", "'10.0.0.0/33' is not a CIDR"),
        ("HOOKLINE_ROLE", "solver", "must be api, worker or all, not 'solver'"),
        ("HOOKLINE_LISTEN", "localhost", "must be HOST:PORT"),
        ("HOOKLINE_JOB_WORKERS", "0", "must be at least 1, not 0"),
    ],
)
def test_a_bad_variable_is_refused_naming_the_variable_and_its_flag(variable: str, value: str, named: str) -> None:
    flag = "--" + variable.removeprefix("HOOKLINE_").lower().replace("_", "-")
    with pytest.raises(ValueError) as refused:
        _parse([], {variable: value})
    assert variable in str(refused.value) and flag in str(refused.value) and named in str(refused.value)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        # gRPC would take a bare host as port 443.
        (["--listen", "localhost"], "--listen (HOOKLINE_LISTEN) must be HOST:PORT"),
        (["--listen", "127.0.0.1"], "a port is needed"),
        (["--listen", "::1"], "[::1]:50051"),
        (["--listen", "127.0.0.1:"], "must be HOST:PORT"),
        (["--listen", ":50051"], "must be HOST:PORT"),
        (["--listen", "127.0.0.1:70000"], "a port from 0 to 65535, not 70000"),
        (["--metrics-port", "70000"], "--metrics-port (HOOKLINE_METRICS_PORT) must be a port from 0 to 65535"),
        (["--metrics-port", "-1"], "must be a port from 0 to 65535, not -1"),
        (["--metrics-host", " "], "--metrics-host (HOOKLINE_METRICS_HOST) must name a host"),
        (["--max-streams", "0"], "--max-streams (HOOKLINE_MAX_STREAMS) must be at least 1"),
        (["--job-workers", "-2"], "--job-workers (HOOKLINE_JOB_WORKERS) must be at least 1"),
        (["--delivery-concurrency", "0"], "--delivery-concurrency (HOOKLINE_DELIVERY_CONCURRENCY) must be at least 1"),
        (["--webhook-max-in-flight", "0"], "--webhook-max-in-flight (HOOKLINE_WEBHOOK_MAX_IN_FLIGHT) must be at"),
        (["--delivery-processes", "0"], "--delivery-processes (HOOKLINE_DELIVERY_PROCESSES) must be at least 1"),
        (["--connect-timeout", "0"], "--connect-timeout (HOOKLINE_CONNECT_TIMEOUT) must be a positive, finite"),
        (["--request-timeout", "nan"], "--request-timeout (HOOKLINE_REQUEST_TIMEOUT) must be a positive, finite"),
        (["--job-lease", "0s"], "--job-lease (HOOKLINE_JOB_LEASE) must be a positive"),
        (["--retention", "0"], "--retention (HOOKLINE_RETENTION) must be a positive"),
        (["--job-retention", "0d"], "--job-retention (HOOKLINE_JOB_RETENTION) must be a positive"),
        (["--auto-disable-after", "0"], "--auto-disable-after (HOOKLINE_AUTO_DISABLE_AFTER) must be a positive"),
        (["--delivery-stall-timeout", "0"], "--delivery-stall-timeout (HOOKLINE_DELIVERY_STALL_TIMEOUT) must be"),
        (["--shutdown-grace", "9" * 400], "--shutdown-grace (HOOKLINE_SHUTDOWN_GRACE) must be a finite duration"),
        (["--response-capture-bytes", "-1"], "--response-capture-bytes (HOOKLINE_RESPONSE_CAPTURE_BYTES) must not"),
        (["--delivery-lease", "10s"], "--delivery-lease (HOOKLINE_DELIVERY_LEASE) must be longer than"),
        (["--max-url-length", "0"], "--max-url-length (HOOKLINE_MAX_URL_LENGTH) must be positive"),
        (["--max-json-depth", "33"], "--max-json-depth (HOOKLINE_MAX_JSON_DEPTH) must be at most 32"),
        (["--tls-cert", "cert.pem"], "--tls-cert (HOOKLINE_TLS_CERT) and --tls-key (HOOKLINE_TLS_KEY) go together"),
        (["--database", "mysql://u:pw@db/x"], "--database (HOOKLINE_DATABASE) must be a postgresql:// URL"),
        (["--database", "db.internal"], "must be a postgresql:// URL"),
        (["--database", "postgresql://u@db:five/x"], "--database (HOOKLINE_DATABASE) has a bad port"),
        (["--database", "postgresql://db/x?colour=blue"], 'invalid URI query parameter: "colour"'),
    ],
)
def test_a_bad_value_is_refused_naming_the_flag(argv: list[str], named: str) -> None:
    with pytest.raises(ValueError) as refused:
        _parse(argv, {})
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://u:s3cret@db/x", "mysql://u:***@db/x"),
        ("postgresql://u:s3%zz@db/x", 'invalid percent-encoded token: "***"'),  # libpq quotes it back
        ("postgresql://u:s3cret@[db/x", "postgresql://u:***@[db/x"),
    ],
)
def test_a_bad_database_url_is_refused_without_its_password(url: str, shown: str) -> None:
    with pytest.raises(ValueError) as refused:
        _parse(["--database", url], {})
    assert shown in str(refused.value) and "s3" not in str(refused.value)


def test_listen_and_the_metrics_default_to_loopback() -> None:
    chosen = _parse([], {})
    assert (chosen.listen, chosen.metrics_host) == ("127.0.0.1:50051", "127.0.0.1")
    assert _parse(["--metrics-host", "0.0.0.0"], {}).metrics_host == "0.0.0.0"
    assert _parse([], {"HOOKLINE_METRICS_HOST": "::1"}).metrics_host == "::1"
    assert _parse(["--listen", "[::1]:0"], {}).listen == "[::1]:0"


def test_the_help_of_every_flag_names_its_variable() -> None:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    flags = [action for action in parser._actions if action.dest != "help"]
    assert len(flags) > 30
    for action in flags:
        variable = "HOOKLINE_" + action.option_strings[0].removeprefix("--").replace("-", "_").upper()
        assert f"[{variable}]" in action.help, action.option_strings


def test_a_flag_with_a_bad_value_is_refused_in_words_not_a_function_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["--job-lease", "soon"], {})
    assert "argument --job-lease: 'soon' is not a duration such as 500ms" in capsys.readouterr().err
