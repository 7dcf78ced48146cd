"""Runs the `reference` command: finds it, writes inputs and candidates to .npz, reads its JSON report and outputs.

The contract it relies on is the command's (proofs/cli.md): the verbs and options, exit codes 0 (pass), 1 (mismatch)
and 2 (bad usage or bad input), the `--json` report of `check`, and `run` writing its outputs to an .npz file.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

#: The environment variable naming the command: an executable, or a Reference.Cli.dll run with `dotnet`.
ENV_VAR = "REFERENCE_CLI"

ArrayLike = Any
Arrays = Union[Mapping[str, ArrayLike], str, "os.PathLike[str]"]
Cli = Union[str, "os.PathLike[str]", Sequence[str], None]


class ReferenceError(Exception):
    """Base class of the errors this client raises."""


class ReferenceNotFoundError(ReferenceError, FileNotFoundError):
    """The `reference` command was not found (or the one named does not exist)."""


class ReferenceInputError(ReferenceError, ValueError):
    """The command rejected the call: bad usage or bad input (exit code 2). `message` is its one-line reason."""

    def __init__(self, message: str, command: Sequence[str] = (), stderr: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.command = list(command)
        self.stderr = stderr


class ReferenceToolError(ReferenceError, RuntimeError):
    """The command failed in a way its contract does not describe (a crash, an unexpected exit code or report)."""


class ReferenceWarning(UserWarning):
    """A warning the command printed on stderr, e.g. a reference that did not converge."""


# ---------------------------------------------------------------------------------------------------------------------
# Finding the command


def _command_for(path: Union[str, "os.PathLike[str]"], origin: str) -> List[str]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ReferenceNotFoundError(f"{origin} names {str(p)!r}, which does not exist")
    if p.suffix.lower() == ".dll":
        dotnet = shutil.which("dotnet")
        if dotnet is None:
            root = os.environ.get("DOTNET_ROOT")
            candidate = Path(root) / "dotnet" if root else None
            if candidate is None or not candidate.is_file():
                raise ReferenceNotFoundError(f"{origin} names {str(p)!r}, but `dotnet` is not on PATH to run it")
            dotnet = str(candidate)
        return [dotnet, str(p.resolve())]
    return [str(p.resolve())]


def find_reference(cli: Cli = None) -> List[str]:
    """The argument list that starts the `reference` command.

    In order: `cli` when given (a path, or a ready argument list); the environment variable REFERENCE_CLI (an
    executable, or a Reference.Cli.dll that is run with `dotnet`); `reference` on PATH; the .NET global tool
    (~/.dotnet/tools/reference, after `dotnet tool install --global Reference.Cli`).
    """
    if cli is not None:
        if isinstance(cli, (str, os.PathLike)):
            return _command_for(cli, "cli=")
        args = [str(a) for a in cli]
        if not args:
            raise ReferenceNotFoundError("cli= is an empty argument list")
        return args
    env = os.environ.get(ENV_VAR)
    if env:
        return _command_for(env, f"${ENV_VAR}")
    on_path = shutil.which("reference")
    if on_path:
        return [on_path]
    home = os.environ.get("DOTNET_CLI_HOME") or str(Path.home())
    tool = Path(home) / ".dotnet" / "tools" / "reference"
    if tool.is_file() and os.access(tool, os.X_OK):
        return [str(tool)]
    raise ReferenceNotFoundError(
        "the `reference` command was not found: set REFERENCE_CLI to the command or to Reference.Cli.dll, put "
        "`reference` on PATH, or install the .NET tool (dotnet pack src/Reference.Cli -c Release -o DIR; "
        "dotnet tool install --global --add-source DIR Reference.Cli)"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Arrays and parameters


def _to_numpy(name: str, value: ArrayLike) -> np.ndarray:
    """A numpy array for one input or candidate value: numpy arrays as they are, torch tensors detached and moved to the
    CPU (bfloat16, which numpy lacks, as float32: every bfloat16 value is a float32 value, and the command judges an
    array in the narrowest precision that holds its values), Python scalars and lists through numpy."""
    module = type(value).__module__ or ""
    if module.startswith("torch") and hasattr(value, "detach"):
        import torch  # present, since a tensor was given

        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        if not t.is_contiguous():
            t = t.contiguous()
        return t.numpy()
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception as e:  # ragged lists and the like
            raise ReferenceInputError(f"array {name!r}: cannot convert {type(value).__name__} to an array: {e}")
    if arr.dtype.kind not in "biuf":
        raise ReferenceInputError(
            f"array {name!r}: dtype {arr.dtype} is not supported (bool, integer or float arrays only)"
        )
    return arr


def _param_text(name: str, value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ReferenceInputError(f"parameter {name!r} = {value} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return value
    raise ReferenceInputError(
        f"parameter {name!r}: {type(value).__name__} is not a parameter value (int, float, bool or str)"
    )


def _param_args(params: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any]) -> List[str]:
    merged: Dict[str, Any] = dict(params or {})
    for k, v in kwargs.items():
        if k in merged:
            raise ReferenceInputError(f"parameter {k!r} is given twice (in params= and as a keyword)")
        merged[k] = v
    args: List[str] = []
    for k, v in merged.items():
        if v is None:
            continue  # absent: the command's default
        args += ["--param", f"{k}={_param_text(k, v)}"]
    return args


def _write_arrays(arrays: Arrays, directory: str, stem: str, what: str) -> str:
    """The file to pass: an existing tensor file as it is, or a mapping written to DIRECTORY/STEM.npz."""
    if isinstance(arrays, (str, os.PathLike)):
        p = Path(arrays)
        if not p.is_file():
            raise ReferenceInputError(f"{what} file {str(p)!r} does not exist")
        return str(p)
    if not isinstance(arrays, Mapping):
        raise ReferenceInputError(
            f"{what} must be a mapping of array names to arrays or tensors, or a path to an .npz, .npy or "
            f".safetensors file; got {type(arrays).__name__}"
        )
    if not arrays:
        raise ReferenceInputError(f"{what} holds no arrays")
    converted = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ReferenceInputError(f"{what}: array names must be non-empty strings, got {name!r}")
        converted[name] = _to_numpy(name, value)
    path = os.path.join(directory, stem + ".npz")
    np.savez(path, **converted)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Running the command


@dataclass(frozen=True)
class _Completed:
    command: List[str]
    exit_code: int
    stdout: str
    stderr: str


def _run(base: List[str], args: List[str], timeout: Optional[float]) -> _Completed:
    command = base + args
    try:
        p = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise ReferenceNotFoundError(f"cannot start {command[0]!r}: {e}") from e
    return _Completed(command, p.returncode, p.stdout, p.stderr)


def _stderr_reason(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.startswith("reference: ") and not l.startswith("reference: warning:")]
    return lines[-1][len("reference: "):] if lines else stderr.strip()


def _warn(stderr: str) -> List[str]:
    found = [l for l in stderr.splitlines() if l.startswith("reference: warning:")]
    for line in found:
        warnings.warn(line, ReferenceWarning, stacklevel=3)
    return found


def _unexpected(done: _Completed) -> ReferenceToolError:
    return ReferenceToolError(
        f"`{' '.join(done.command)}` exited {done.exit_code}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )


# ---------------------------------------------------------------------------------------------------------------------
# The result of check


_INDEX = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Mismatch:
    """One of an array's first mismatches: where, what the candidate holds, what the reference expects, and the
    error allowed there (None where the comparison has no per-element bound, e.g. exact outputs)."""

    index: Tuple[int, ...]
    flat_index: int
    got: Any
    expected: Any
    allowed: Optional[float]

    @staticmethod
    def _from_json(d: Mapping[str, Any]) -> "Mismatch":
        raw = d.get("index")
        index = tuple(int(s) for s in _INDEX.findall(raw)) if isinstance(raw, str) else tuple(raw or ())
        return Mismatch(index, int(d.get("flat_index", -1)), d.get("got"), d.get("expected"), d.get("allowed"))


@dataclass(frozen=True)
class ArrayReport:
    """The verdict on one candidate array, as the JSON report of `check` gives it (proofs/cli.md, Check).

    `policy` names the comparison and its bound (e.g. `allclose(atol=..., rtol=...)`, `exact`, a validator);
    `detail` the bound's inputs in words; `margin` is error / bound (below 1 passes) where the policy has a bound."""

    array: str
    policy: str
    passed: bool
    problem: Optional[str]
    count: int
    mismatches: int
    nan_mismatches: int
    inf_mismatches: int
    max_abs_error: Optional[float]
    max_rel_error: Optional[float]
    margin: Optional[float]
    first_mismatches: Tuple[Mismatch, ...]
    detail: Optional[str]

    @property
    def bound(self) -> str:
        """The bound the array was judged against: the policy, and the bound's inputs when the report gives them."""
        return f"{self.policy}; {self.detail}" if self.detail else self.policy

    @staticmethod
    def _from_json(d: Mapping[str, Any]) -> "ArrayReport":
        return ArrayReport(
            array=d["array"],
            policy=d.get("policy") or "",
            passed=bool(d["passed"]),
            problem=d.get("problem"),
            count=int(d.get("count") or 0),
            mismatches=int(d.get("mismatches") or 0),
            nan_mismatches=int(d.get("nan_mismatches") or 0),
            inf_mismatches=int(d.get("inf_mismatches") or 0),
            max_abs_error=d.get("max_abs_error"),
            max_rel_error=d.get("max_rel_error"),
            margin=d.get("margin"),
            first_mismatches=tuple(Mismatch._from_json(m) for m in d.get("first_mismatches") or ()),
            detail=d.get("detail"),
        )


@dataclass(frozen=True)
class CheckResult:
    """What `reference check` said: the verdict (`status` "pass" or "fail", `passed`), one `ArrayReport` per judged
    array, the parameters it used (given and defaulted), the console summary it printed (`summary`), its warnings,
    and the whole JSON report (`report`). True when it passed; `result["weights"]` is the report of one array."""

    algorithm: str
    status: str
    passed: bool
    parameters: Dict[str, str]
    outputs: Tuple[ArrayReport, ...]
    summary: str
    warnings: Tuple[str, ...]
    exit_code: int
    report: Dict[str, Any] = field(repr=False)

    @property
    def verdict(self) -> str:
        """"pass" or "fail"."""
        return self.status

    @property
    def failures(self) -> Tuple[ArrayReport, ...]:
        """The reports of the arrays that failed."""
        return tuple(o for o in self.outputs if not o.passed)

    def __bool__(self) -> bool:
        return self.passed

    def __getitem__(self, array: str) -> ArrayReport:
        for o in self.outputs:
            if o.array == array:
                return o
        raise KeyError(f"{array!r} was not judged; judged: {[o.array for o in self.outputs]}")

    def __str__(self) -> str:
        return self.summary


# ---------------------------------------------------------------------------------------------------------------------
# The verbs


def check(
    algorithm: str,
    inputs: Arrays,
    candidate: Arrays,
    *,
    params: Optional[Mapping[str, Any]] = None,
    cli: Cli = None,
    timeout: Optional[float] = None,
    **kwargs: Any,
) -> CheckResult:
    """Judges a candidate's outputs against the reference: `reference check ALGORITHM`.

    `inputs` and `candidate` map array names (as `reference list` shows them) to numpy arrays or torch tensors, or
    name an existing .npz/.npy/.safetensors file. Parameters are keywords (`k=2`, `score="sigmoid"`, `causal=True`) or
    `params={...}`; None leaves a parameter at its default. Returns a CheckResult whether the candidate passes or fails;
    raises ReferenceInputError on bad usage or bad input (exit 2) with the command's one-line reason.
    """
    base = find_reference(cli)
    param_args = _param_args(params, kwargs)
    with tempfile.TemporaryDirectory(prefix="reference-check-") as tmp:
        input_file = _write_arrays(inputs, tmp, "input", "inputs")
        candidate_file = _write_arrays(candidate, tmp, "candidate", "candidate")
        report_file = os.path.join(tmp, "report.json")
        args = ["check", algorithm, "--input", input_file, "--candidate", candidate_file, *param_args]
        done = _run(base, args + ["--json", report_file], timeout)
        report: Optional[Dict[str, Any]] = None
        if os.path.isfile(report_file):
            with open(report_file, encoding="utf-8") as f:
                report = json.load(f)
    if done.exit_code == 2:
        message = report.get("message") if report else None
        raise ReferenceInputError(message or _stderr_reason(done.stderr), done.command, done.stderr)
    if done.exit_code not in (0, 1) or report is None:
        raise _unexpected(done)
    status = report.get("status")
    if (done.exit_code == 0) != (status == "pass"):
        raise _unexpected(done)
    return CheckResult(
        algorithm=report.get("algorithm", algorithm),
        status=status,
        passed=status == "pass",
        parameters={str(k): str(v) for k, v in (report.get("parameters") or {}).items()},
        outputs=tuple(ArrayReport._from_json(o) for o in report.get("outputs") or ()),
        summary=done.stdout.rstrip("\n"),
        warnings=tuple(_warn(done.stderr)),
        exit_code=done.exit_code,
        report=report,
    )


def run(
    algorithm: str,
    inputs: Arrays,
    *,
    path: Optional[str] = None,
    device: Optional[str] = None,
    params: Optional[Mapping[str, Any]] = None,
    cli: Cli = None,
    timeout: Optional[float] = None,
    **kwargs: Any,
) -> Dict[str, np.ndarray]:
    """The reference's outputs for these inputs, by name, as numpy arrays: `reference run ALGORITHM`.

    Float outputs come back as float64, integer outputs as int32, boolean ones as bool, scalars as 0-d arrays.
    `path` runs an optimized path (`kernel`, `fast`, ...) or forces the readable reference (`reference`); None gives
    what `check` judges against; `device` ("cpu" or "cuda") where that path runs. Raises ReferenceInputError on bad
    usage or bad input (exit 2).
    """
    base = find_reference(cli)
    param_args = _param_args(params, kwargs)
    with tempfile.TemporaryDirectory(prefix="reference-run-") as tmp:
        input_file = _write_arrays(inputs, tmp, "input", "inputs")
        output_file = os.path.join(tmp, "output.npz")
        args = ["run", algorithm, "--input", input_file, "--output", output_file, *param_args]
        if path is not None:
            args += ["--path", path]
        if device is not None:
            args += ["--device", device]
        done = _run(base, args, timeout)
        if done.exit_code == 2:
            raise ReferenceInputError(_stderr_reason(done.stderr), done.command, done.stderr)
        if done.exit_code != 0 or not os.path.isfile(output_file):
            raise _unexpected(done)
        _warn(done.stderr)
        with np.load(output_file, allow_pickle=False) as z:
            return {name: np.array(z[name]) for name in z.files}


def list_algorithms(*, cli: Cli = None, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
    """`reference list --json`: every algorithm with its inputs, parameters (with defaults), outputs and paths."""
    done = _run(find_reference(cli), ["list", "--json"], timeout)
    if done.exit_code != 0:
        raise _unexpected(done)
    return json.loads(done.stdout)
