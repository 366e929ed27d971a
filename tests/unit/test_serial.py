"""``serial``: one batch size or an Ansible-style list (canary first, the last size repeats)."""

from __future__ import annotations

from pathlib import Path

import pytest

from maintainer import runbook as rb
from maintainer.engine import make_batches
from maintainer.errors import ValidationFailed


def sizes(count: int, serial: object) -> list[int]:
    return [len(batch) for batch in make_batches(count, serial)]  # type: ignore[arg-type]


def test_one_size_and_none_as_before() -> None:
    assert sizes(5, None) == [5]
    assert sizes(5, 2) == [2, 2, 1]
    assert sizes(10, "25%") == [3, 3, 3, 1]
    assert sizes(0, 3) == []


def test_list_first_is_the_canary_and_the_last_repeats() -> None:
    assert sizes(20, [1, 5, "50%"]) == [1, 5, 10, 4]
    assert sizes(9, [1, "25%"]) == [1, 3, 3, 2]
    assert sizes(1, [1, "25%"]) == [1]
    assert sizes(3, [1, 5]) == [1, 2]
    # every site appears once, in order
    flat = [i for batch in make_batches(17, [2, "10%", 4]) for i in batch]
    assert flat == list(range(17))


def _runbook(tmp_path: Path, serial: str) -> Path:
    path = tmp_path / "runbooks" / "demo" / "1.0.0.yml"
    path.parent.mkdir(parents=True)
    path.write_text(
        f"name: demo\nversion: 1.0.0\nserial: {serial}\nsteps:\n  - id: one\n    uses: debug\n"
        "    with: {msg: hi}\n"
    )
    return path


def test_runbook_accepts_a_list(tmp_path: Path) -> None:
    loaded = rb.load(_runbook(tmp_path, '[1, "25%"]'))
    assert loaded.model.serial == [1, "25%"]


@pytest.mark.parametrize(
    ("serial", "words"),
    [("[]", "empty list"), ("[1, 0]", "batch 2 of the list"), ('[1, "x"]', "batch 2 of the list")],
)
def test_bad_lists_name_the_batch(tmp_path: Path, serial: str, words: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        rb.load(_runbook(tmp_path, serial))
    problem = exc.value.problems[0]
    assert words in problem.message
    assert problem.key is not None and problem.key.startswith("serial")
