"""The one resolver of id prefixes (replicate.ids.resolve_prefix)."""

from __future__ import annotations

import pytest

from replicate.errors import AmbiguousID, DoesNotExist
from replicate.ids import normalize_prefix, random_id, resolve_prefix

A = "abc" + "0" * 61
B = "abd" + "1" * 61
C = "f00" + "2" * 61


def describe(id: str, value: str) -> str:
    return f"{value} {id[:12]}"


CANDIDATES = {A: "experiment", B: "checkpoint", C: "experiment"}


class TestResolvePrefix:
    def test_unique_prefix(self) -> None:
        """A prefix that starts one id returns that id and its value."""
        assert resolve_prefix("abc", CANDIDATES, describe) == (A, "experiment")
        assert resolve_prefix("f", CANDIDATES, describe) == (C, "experiment")

    def test_full_id_and_case_and_spaces(self) -> None:
        """A full id, upper case or surrounding spaces still match."""
        assert resolve_prefix(f"  {B.upper()} ", CANDIDATES, describe) == (B, "checkpoint")

    def test_ambiguous_lists_the_candidates(self) -> None:
        """Several matches: AmbiguousID naming each one, and what to do."""
        with pytest.raises(AmbiguousID) as caught:
            resolve_prefix("ab", CANDIDATES, describe)
        assert str(caught.value) == (
            f"'ab' is ambiguous, it matches experiment {A[:12]}, checkpoint {B[:12]}: "
            "use a longer prefix"
        )

    def test_ambiguous_lists_ten_and_counts_the_rest(self) -> None:
        """Past ten candidates the message counts the rest instead of listing them."""
        many = {"a" + random_id()[1:]: "x" for _ in range(15)}
        with pytest.raises(AmbiguousID, match=r"and 5 more: use a longer prefix$"):
            resolve_prefix("a", many, describe)

    def test_unknown(self) -> None:
        """No match: DoesNotExist naming the prefix, where, and how to see the ids."""
        with pytest.raises(DoesNotExist) as caught:
            resolve_prefix("123", CANDIDATES, describe, where="file:///r")
        assert str(caught.value) == (
            "no experiment or checkpoint matches '123' in file:///r: "
            "run `replicate ls` to see the ids"
        )

    @pytest.mark.parametrize("bad", ["", "   ", "xyz", "abc/", "a" * 65, "--help"])
    def test_not_an_id(self, bad: str) -> None:
        """Empty, non-hex or over-long input is refused before anything is read."""
        with pytest.raises(DoesNotExist):
            normalize_prefix(bad)
