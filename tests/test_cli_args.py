"""The command line's values and usage errors: parsed in full or refused with status 125.

Pure parsing, plus ``tether.__main__``-level behaviour called in-process (``main()``
returns the status; argparse's own exits are ``SystemExit`` with 125 or 0).
"""

from __future__ import annotations

import math
import resource
import signal

import pytest

from tether import Limits
from tether._cli import main
from tether._cli._args import parse_duration, parse_limit, parse_signal


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1", 1.0),
        ("1.5", 1.5),
        (".5s", 0.5),
        ("100ms", 0.1),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("0", 0.0),
        ("inf", math.inf),
        ("Infinity", math.inf),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", " ", "-1", "1x", "nan", "1e3", "1 s", "s", "1.2.3", "1mm"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "number"),
    [("TERM", signal.SIGTERM), ("SIGKILL", signal.SIGKILL), ("usr1", signal.SIGUSR1), ("9", 9)],
)
def test_signals(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "65", "FOO", "SIG", "", "-9"])
def test_bad_signals_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="signal"):
        parse_signal(text)


def test_limits_in_prlimit_spelling() -> None:
    assert parse_limit("as", "1G") == Limits(address_space=1 << 30), "1024-based, never 1 byte"
    assert parse_limit("as", "512M:1G") == Limits(address_space=(512 << 20, 1 << 30))
    assert parse_limit("core", "0") == Limits(core=0)
    assert parse_limit("cpu", "1") == Limits(cpu=1)
    assert parse_limit("cpu", "1m") == Limits(cpu=60)
    assert parse_limit("nofile", "unlimited") == Limits(nofile="unlimited")
    assert parse_limit("fsize", "1KiB") == Limits(fsize=1024)
    assert parse_limit("fsize", "1.5K") == Limits(fsize=1536)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert parse_limit("nofile", "64:") == Limits(nofile=(64, hard)), "SOFT: keeps the hard"
    assert parse_limit("nofile", f":{hard}") == Limits(nofile=(soft, hard)), ":HARD keeps the soft"


@pytest.mark.parametrize(
    ("option", "text", "reason"),
    [
        ("as", "1KB", "unknown unit"),  # 1000 or 1024? refused rather than guessed
        ("as", "abc", "cannot parse"),
        ("as", "-1", "cannot parse|negative"),
        ("as", "1.5", "whole number"),
        ("nofile", "1G", "size unit"),
        ("nofile", ":", "soft or a hard"),
        ("nofile", "", "empty|cannot parse"),
        ("nofile", "10:5", "above hard"),
        ("cpu", "1M", "size unit"),
    ],
)
def test_malformed_limits_are_refused(option: str, text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_limit(option, text)
    assert str(info.value).startswith(f"--{option}")


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--as=1KB", "--", "true"], "tether run: error: argument --as: --as=1KB"),
        (["run", "--timeout", "soon", "--", "true"], "invalid duration 'soon'"),
        (["run", "-s", "NOPE", "--", "true"], "unknown signal 'NOPE'"),
        (["run", "--kill", "all", "--", "true"], "invalid choice"),
        (["run", "--bogus", "--", "true"], "unrecognized arguments"),
        (["init", "-e", "256", "--", "true"], "invalid exit status '256'"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
        (["run", "sleep", "1", "--", "true"], "unexpected arguments before '--'"),
    ],
)
def test_usage_errors_are_one_line_and_status_125(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 125
    assert message in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "tether run: no command given"),
        (["init", "--"], "tether init: no command given"),
        (["daemon"], "tether daemon: no command given"),
        (["run", "--env", "NOEQUALS", "--", "true"], "--env expects KEY=VALUE"),
        (["run", "--nofile=1:99999999999", "--", "true"], "Limits.nofile: hard limit"),
    ],
)
def test_command_errors_are_one_line_and_status_125(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 125
    assert message in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", ["run", "init", "daemon"])
def test_every_command_has_a_help_page(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    page = capsys.readouterr().out
    assert page.startswith(f"usage: tether {command} [options] -- CMD [ARG ...]")
    assert "exit status" in page or command == "init"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert command in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import tether

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"tether {tether.__version__}"
