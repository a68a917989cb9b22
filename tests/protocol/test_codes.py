"""One table of codes for every speaker: codes.py, the browser's protocol.js and docs/protocol.md.

The browser's tables are read by running the module itself under Node (not by pattern-matching its
text), so whatever the page would see is what is compared.
"""

from __future__ import annotations

import re

import pytest

from tests.protocol.conftest import markdown_table
from xes import errors
from xes.peer.signalling import close_reason
from xes.protocol.codes import CloseCode, ErrorCode


def test_browser_close_codes_are_exactly_the_servers(browser_tables: dict[str, object]) -> None:
    """Same names, same numbers: a code the server stopped sending (4008) cannot linger."""
    assert browser_tables["close"] == {code.name: code.value for code in CloseCode}


def test_browser_error_codes_are_exactly_the_servers(browser_tables: dict[str, object]) -> None:
    codes = browser_tables["errors"]
    assert isinstance(codes, list)
    assert len(codes) == len(set(codes))
    assert set(codes) == {code.value for code in ErrorCode}


def test_documented_close_codes_are_exactly_the_servers() -> None:
    documented = [int(row[0]) for row in markdown_table("## Close codes")]
    assert sorted(documented) == sorted(code.value for code in CloseCode)


def test_documented_error_codes_are_exactly_the_servers() -> None:
    documented = [re.fullmatch(r"`([a-z-]+)`", row[0]) for row in markdown_table("## Error codes")]
    assert all(documented), "every row of the error table names one code in backquotes"
    assert sorted(match.group(1) for match in documented if match) == sorted(ErrorCode)


def _concrete_errors(cls: type[errors.SignallingError]) -> list[type[errors.SignallingError]]:
    found = []
    for sub in cls.__subclasses__():
        if "code" in vars(sub):
            found.append(sub)
        found.extend(_concrete_errors(sub))
    return found


def test_every_error_code_has_exactly_one_exception_class() -> None:
    """errors.py is the server's tree of refusals: one class per wire code, none left over."""
    classes = _concrete_errors(errors.SignallingError)
    assert sorted(cls.code for cls in classes) == sorted(ErrorCode)
    assert all(type(cls.code) is ErrorCode for cls in classes)
    assert set(errors.__all__) >= {cls.__name__ for cls in classes}


@pytest.mark.parametrize("code", list(CloseCode))
def test_the_python_peer_explains_every_close_code(code: CloseCode) -> None:
    reason = close_reason(code)
    assert reason != close_reason(4999)  # not the fallback for a code it does not know
    assert f"close code {code.value}" in reason


def test_an_unknown_close_code_is_still_reported_with_its_number() -> None:
    assert "4999" in close_reason(4999)
    assert close_reason(None) == "the connection to the server broke"
