"""Every test file lives in one tier folder, so `make test-fast` and `make test` select what they say."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "e2e")


def test_every_test_file_is_in_a_tier_folder() -> None:
    placed = (p.relative_to(TESTS) for p in TESTS.rglob("test_*.py"))
    stray = sorted(str(p) for p in placed if p.parts[0] not in TIERS)
    assert stray == [], f"test files outside tests/unit, tests/integration, tests/e2e: {stray}"


def test_no_two_test_files_share_a_name_across_tiers() -> None:
    names = Counter(p.name for tier in TIERS for p in (TESTS / tier).glob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
