"""``lerowds.checks``: each check names the argument, shows the bad value, and refuses bools as numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lerowds.checks import check_bool, check_choice, check_float, check_int, check_size
from lerowds.errors import ConfigError, ResumeMismatchError


@pytest.mark.parametrize("good", [0, 7, np.int64(7), np.uint8(3)])
def test_check_int_accepts_integers_and_returns_a_python_int(good: object) -> None:
    value = check_int("n", good)
    assert value == int(good) and type(value) is int  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "bad, shown",
    [
        (True, "True (a bool)"),
        (np.True_, "(a bool"),
        (10.7, "10.7 (a float)"),
        (10.0, "10.0 (a float)"),
        ("8", "'8' (a str)"),
        (None, "None"),
        (-1, "-1"),
    ],
)
def test_check_int_refuses_non_integers_naming_argument_and_value(bad: object, shown: str) -> None:
    with pytest.raises(ConfigError, match=r"^batch_size must be an integer >= 0, got ") as e:
        check_int("batch_size", bad)
    assert shown in str(e.value)


def test_check_int_bounds_and_error_type() -> None:
    with pytest.raises(ConfigError, match=r"n must be an integer >= 1, got 0"):
        check_int("n", 0, 1)
    with pytest.raises(ConfigError, match=r"n must be an integer in \[0, 3\], got 4"):
        check_int("n", 4, 0, 3)
    with pytest.raises(ResumeMismatchError, match="resume state: epoch"):
        check_int("resume state: epoch", -1, error=ResumeMismatchError)


def test_check_float() -> None:
    assert check_float("t", 1) == 1.0 and check_float("t", np.float32(0.5)) == 0.5
    for bad in (True, "0.1", math.nan, math.inf, None):
        with pytest.raises(ConfigError, match=r"^t must be a finite number"):
            check_float("t", bad)
    with pytest.raises(ConfigError, match=r"t must be a finite number and >= 0, got -1"):
        check_float("t", -1, 0)
    with pytest.raises(ConfigError, match=r"t must be a finite number and > 0, got 0"):
        check_float("t", 0, above=0)


def test_check_bool() -> None:
    assert check_bool("shuffle", np.bool_(False)) is False
    for bad in (1, 0, "no", None):
        with pytest.raises(ConfigError, match=rf"shuffle must be True or False, got {bad!r}"):
            check_bool("shuffle", bad)


def test_check_choice() -> None:
    assert check_choice("remainder", "drop", ("drop", "repeat")) == "drop"
    with pytest.raises(ConfigError, match=r"remainder must be 'drop' or 'repeat', got 'pad'"):
        check_choice("remainder", "pad", ("drop", "repeat"))
    with pytest.raises(ConfigError, match=r"flag must be 0 or 1, got True"):
        check_choice("flag", True, (0, 1))


@pytest.mark.parametrize(("text", "value"), [("512MB", 512 * 10**6), ("64KiB", 65536), (1000, 1000)])
def test_check_size(text: object, value: int) -> None:
    assert check_size("budget", text) == value


@pytest.mark.parametrize("bad", [True, 1.5, None, "lots", "0", 0, -1])
def test_check_size_refuses(bad: object) -> None:
    with pytest.raises(ConfigError, match="budget"):
        check_size("budget", bad)
