"""The pytest helper: assert that a candidate matches the reference."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ._client import Arrays, CheckResult, Cli, check


def assert_matches_reference(
    algorithm: str,
    inputs: Arrays,
    candidate: Arrays,
    *,
    params: Optional[Mapping[str, Any]] = None,
    cli: Cli = None,
    timeout: Optional[float] = None,
    **kwargs: Any,
) -> CheckResult:
    """Checks `candidate` against the reference (see `check`) and returns the result when every array passes.

    On a mismatch raises AssertionError whose message is the console summary `reference check` printed (one line per
    array, then the first mismatches of each failing one). Bad usage or bad input raises ReferenceInputError.
    """
    __tracebackhide__ = True  # pytest shows the caller's line
    result = check(algorithm, inputs, candidate, params=params, cli=cli, timeout=timeout, **kwargs)
    if not result.passed:
        raise AssertionError(result.summary)
    return result
