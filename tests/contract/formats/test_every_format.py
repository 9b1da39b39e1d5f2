"""Every registered format is held to the contract: a format without its factory
file, ``test_<format>.py`` with a ``CASE`` and the suite's tests, fails here."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from app.formats import available_formats
from tests.contract.formats import suite
from tests.contract.formats.case import ContractCase

HERE = Path(__file__).parent


def factory(name: str) -> ModuleType:
    module_name = f"{__package__}.test_{name}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        pytest.fail(f"format {name!r} has no contract case: add {HERE / f'test_{name}.py'}")


@pytest.mark.parametrize("name", sorted(available_formats()))
def test_every_format_has_a_contract_case(name: str) -> None:
    module = factory(name)
    case = getattr(module, "CASE", None)
    assert isinstance(case, ContractCase) and case.format == name, case
    assert any(repo["format"] == name for repo in case.repositories("http://upstream.invalid"))
    missing = [
        test for test in suite.__all__ if getattr(module, test, None) is not vars(suite)[test]
    ]
    assert not missing, f"test_{name}.py lacks the suite's {missing}: import them with *"


def test_every_case_is_a_registered_format() -> None:
    names = {path.stem.removeprefix("test_") for path in HERE.glob("test_*.py")}
    assert names - {"every_format"} <= set(available_formats())


def test_the_suite_exports_all_its_tests() -> None:
    assert sorted(suite.__all__) == sorted(name for name in vars(suite) if name.startswith("test_"))
