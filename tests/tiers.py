"""Two sizes for a pure-CPU test: a fast one for `make test-fast`, a thorough one marked slow for `make test`.

@examples(50, 300)
def test_something(examples: int) -> None:
    @settings(max_examples=examples, deadline=None)
    @given(...)
    def check(...) -> None: ...

    check()
"""

from __future__ import annotations

import pytest


def examples(fast: int, thorough: int) -> pytest.MarkDecorator:
    """Parametrize the test's `examples` argument: `fast` in the unit tier, `thorough` under `slow`."""
    return pytest.mark.parametrize(
        "examples",
        [
            pytest.param(fast, id=f"{fast}-examples"),
            pytest.param(thorough, id=f"{thorough}-examples", marks=pytest.mark.slow),
        ],
    )
