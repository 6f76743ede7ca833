"""docs/porting.md: every name in the "ours" column resolves, and every public name of the API is in the table."""

from __future__ import annotations

import dataclasses
import importlib
import re

import pytest

from tests.conftest import REPO

DOC = REPO / "docs" / "porting.md"


def table_rows() -> list[tuple[str, str, str]]:
    """``(cloud, ours, notes)`` of the first table of docs/porting.md (header and rule left out)."""
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            if rows:
                break  # the first table only
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in ("cloud name", "---"):
            continue
        assert len(cells) == 3, line
        rows.append((cells[0], cells[1], cells[2]))
    return rows


def ours_names() -> list[str]:
    return [name for _, ours, _ in table_rows() for name in re.findall(r"`([^`]+)`", ours)]


def resolves(name: str) -> bool:
    """A dotted ``jupyter_avml...`` object, or a setting of an experiment (``limits.x`` for sections) or a run."""
    from jupyter_avml.config.params import ALIASES, PARAMS
    from jupyter_avml.sweep.config import LIMITS_KEYS, SWEEP_KEYS, SWEEP_SECTION_KEYS

    if name.startswith("jupyter_avml"):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for attr in parts[cut:]:
                if dataclasses.is_dataclass(obj) and attr in {f.name for f in dataclasses.fields(obj)}:
                    return True  # a dataclass field (no class attribute when it has a default factory)
                obj = getattr(obj, attr)  # AttributeError: the name does not resolve
            return True
        return False
    section, _, key = name.partition(".")
    if key:
        return {"limits": LIMITS_KEYS, "sweep": SWEEP_SECTION_KEYS}.get(section, {}).get(key) is not None
    return name in PARAMS or name in ALIASES or name in SWEEP_KEYS


def test_the_table_has_rows_and_each_names_something_of_ours():
    rows = table_rows()
    assert len(rows) > 50
    for cloud, ours, _ in rows:
        assert cloud and re.search(r"`[^`]+`", ours), (cloud, ours)


@pytest.mark.parametrize("name", sorted(set(ours_names())))
def test_every_name_of_ours_resolves(name):
    assert resolves(name), f"docs/porting.md names {name!r}, which does not resolve"


def test_the_resolver_can_fail():
    with pytest.raises(AttributeError):
        resolves("jupyter_avml.automl.NoSuchThing")
    assert not resolves("no_such_setting") and not resolves("limits.no_such_key")


def test_every_public_name_of_the_api_is_in_the_table():
    import jupyter_avml.automl as automl

    documented = {name.rsplit(".", 1)[-1] for name in ours_names() if name.startswith("jupyter_avml.automl.")} | \
        {name.split(".")[2] for name in ours_names() if name.startswith("jupyter_avml.automl.") and
         name.count(".") >= 3}
    missing = sorted(set(automl.__all__) - documented)
    assert not missing, f"public names of jupyter_avml.automl missing from docs/porting.md: {missing}"
