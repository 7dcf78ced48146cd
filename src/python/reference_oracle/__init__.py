"""Python client of `reference`, the correctness oracle for MoE routing and sparse attention kernels.

    import reference_oracle as ro
    result = ro.check("topk", {"logits": logits}, {"experts": experts, "weights": weights}, k=2)
    result.passed, result["weights"].margin, result.summary
    outputs = ro.run("topk", {"logits": logits}, k=2)            # the reference's outputs as numpy arrays
    ro.assert_matches_reference("topk", inputs, candidate, k=2)  # in a pytest test

Arrays are numpy arrays or torch tensors (torch is optional). The command is found through REFERENCE_CLI, PATH or the
.NET tool (see `find_reference`).
"""

from ._client import (
    ENV_VAR,
    ArrayReport,
    CheckResult,
    Mismatch,
    ReferenceError,
    ReferenceInputError,
    ReferenceNotFoundError,
    ReferenceToolError,
    ReferenceWarning,
    check,
    find_reference,
    list_algorithms,
    run,
)
from .testing import assert_matches_reference

__version__ = "0.1.0"

__all__ = [
    "ENV_VAR",
    "ArrayReport",
    "CheckResult",
    "Mismatch",
    "ReferenceError",
    "ReferenceInputError",
    "ReferenceNotFoundError",
    "ReferenceToolError",
    "ReferenceWarning",
    "assert_matches_reference",
    "check",
    "find_reference",
    "list_algorithms",
    "run",
]
