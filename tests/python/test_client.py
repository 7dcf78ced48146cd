"""The Python client against the real `reference` command, with real torch candidates.

Expected values come from torch (an independent computation), never from the client or the command itself.
"""

import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

import reference_oracle as ro
from reference_oracle.testing import assert_matches_reference


def test_the_installed_copy_is_the_one_under_test():
    expected = os.environ.get("REFERENCE_ORACLE_EXPECTED_DIR")
    if not expected:
        pytest.skip("run by hand: importing src/python (the F# suite installs it with pip first)")
    assert Path(ro.__file__).resolve().is_relative_to(Path(expected).resolve()), ro.__file__


# --- topk with torch ---------------------------------------------------------------------------------------------------


def topk_torch(logits, k, normalize=True):
    """A kernel as MoE codebases write it (HF Mixtral): softmax, torch.topk, renormalize."""
    p = torch.softmax(logits, dim=-1)
    w, e = torch.topk(p, k, dim=-1)
    if normalize:
        w = w / w.sum(dim=-1, keepdim=True)
    return e, w


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(17)
    return torch.randn(96, 8, generator=g)


def test_a_correct_torch_topk_passes(logits):
    e, w = topk_torch(logits, 2)
    result = ro.check("topk", {"logits": logits}, {"experts": e.int(), "weights": w}, k=2)
    assert result.passed and bool(result) and result.verdict == "pass" and result.exit_code == 0
    assert [o.array for o in result.outputs] == ["experts", "weights"]
    assert result.parameters == {"k": "2", "score": "softmax", "normalize": "true"}
    weights = result["weights"]
    assert weights.passed and weights.mismatches == 0 and weights.count == 96 * 2
    assert weights.margin is not None and 0 <= weights.margin < 1
    assert weights.max_abs_error is not None and weights.max_abs_error <= 1e-6
    assert weights.policy in weights.bound
    assert result.failures == ()
    assert result.summary.splitlines()[0].startswith("PASS experts")
    assert_matches_reference("topk", {"logits": logits}, {"experts": e.int(), "weights": w}, k=2)


def test_a_bfloat16_torch_candidate_is_accepted(logits):
    e, w = topk_torch(logits, 2)
    result = ro.check("topk", {"logits": logits}, {"experts": e, "weights": w.to(torch.bfloat16)}, k=2)
    assert result.passed, result.summary


def test_a_topk_that_forgets_to_renormalize_fails_with_the_console_summary(logits):
    e, w = topk_torch(logits, 2, normalize=False)  # the bug: normalize=true asked for, raw probabilities given
    inputs, candidate = {"logits": logits}, {"experts": e.int(), "weights": w}
    result = ro.check("topk", inputs, candidate, k=2, normalize=True)
    assert not result.passed and result.verdict == "fail" and result.exit_code == 1
    assert [o.array for o in result.failures] == ["weights"]
    assert result["experts"].passed
    weights = result["weights"]
    assert weights.mismatches == 96 * 2 and weights.margin > 1
    _, right = topk_torch(logits.double(), 2)
    assert 1 <= len(weights.first_mismatches) <= 5
    for m in weights.first_mismatches:
        assert len(m.index) == 2 and m.flat_index == m.index[0] * 2 + m.index[1]
        assert m.got == pytest.approx(float(w[m.index]), abs=1e-7)
        assert m.expected == pytest.approx(float(right[m.index]), abs=1e-6)
        assert abs(m.got - m.expected) > m.allowed
    with pytest.raises(AssertionError) as caught:
        assert_matches_reference("topk", inputs, candidate, k=2, normalize=True)
    message = str(caught.value)
    assert message == result.summary
    assert "FAIL weights" in message and "at (0, 0): got" in message


def test_run_returns_the_references_outputs_as_numpy(logits):
    out = ro.run("topk", {"logits": logits.numpy()}, k=3)
    assert set(out) == {"experts", "weights"}
    assert all(isinstance(a, np.ndarray) for a in out.values())
    assert out["experts"].dtype == np.int32 and out["weights"].dtype == np.float64
    e, w = topk_torch(logits.double(), 3)
    np.testing.assert_array_equal(out["experts"], e.numpy())
    np.testing.assert_allclose(out["weights"], w.numpy(), rtol=0, atol=1e-12)
    kernel = ro.run("topk", {"logits": logits}, k=3, path="kernel", device="cpu")
    np.testing.assert_array_equal(kernel["experts"], e.numpy())
    with pytest.raises(ro.ReferenceInputError, match="cuda"):
        ro.run("topk", {"logits": logits}, k=3, path="kernel", device="cuda")  # kernel runs on the cpu only


def test_inputs_and_candidates_may_be_files(tmp_path, logits):
    e, w = topk_torch(logits, 2)
    np.savez(tmp_path / "in.npz", logits=logits.numpy())
    np.savez(tmp_path / "cand.npz", experts=e.int().numpy(), weights=w.numpy())
    assert ro.check("topk", tmp_path / "in.npz", str(tmp_path / "cand.npz"), params={"k": 2}).passed


# --- attention with torch's SDPA ---------------------------------------------------------------------------------------


def attention_inputs():
    g = torch.Generator().manual_seed(5)
    q = torch.randn(1, 4, 32, 16, generator=g)
    k = torch.randn(1, 2, 32, 16, generator=g)
    v = torch.randn(1, 2, 32, 16, generator=g)
    return q, k, v


def sdpa(q, k, v, scale):
    rep = q.shape[1] // k.shape[1]  # GQA: query head h reads kv head h // rep
    kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    s = (q @ kk.transpose(-1, -2)) * scale
    n = s.shape[-1]
    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ vv


def test_torch_causal_gqa_attention_passes_and_a_scale_off_by_1e_3_fails():
    q, k, v = attention_inputs()
    inputs = {"q": q, "k": k, "v": v}
    scale = 1 / math.sqrt(q.shape[-1])
    good = assert_matches_reference("attention", inputs, {"out": sdpa(q, k, v, scale)}, causal=True)
    assert good["out"].margin < 1
    bad = ro.check("attention", inputs, {"out": sdpa(q, k, v, scale * 1.001)}, causal=True)
    assert not bad.passed and bad["out"].mismatches > 0 and len(bad["out"].first_mismatches[0].index) == 4


# --- bad input ---------------------------------------------------------------------------------------------------------


def test_nan_in_the_input_raises_a_clear_exception(logits):
    x = logits.clone()
    x[3, 1] = float("nan")
    e, w = topk_torch(logits, 2)
    with pytest.raises(ro.ReferenceInputError) as caught:
        ro.check("topk", {"logits": x}, {"experts": e, "weights": w}, k=2)
    assert "logits" in caught.value.message and "NaN" in caught.value.message
    assert isinstance(caught.value, ValueError)


def test_k_out_of_range_unknown_names_and_empty_candidates_raise(logits):
    e, w = topk_torch(logits, 2)
    with pytest.raises(ro.ReferenceInputError, match=r"k = 20 is outside 1\.\.8"):
        ro.check("topk", {"logits": logits}, {"experts": e, "weights": w}, k=20)
    with pytest.raises(ro.ReferenceInputError, match="no-such-algorithm"):
        ro.run("no-such-algorithm", {"logits": logits})
    with pytest.raises(ro.ReferenceInputError, match="no_such_param"):
        ro.run("topk", {"logits": logits}, no_such_param=1)
    with pytest.raises(ro.ReferenceInputError):
        ro.check("topk", {"logits": logits}, {"gates": w}, k=2)  # none of topk's outputs


def test_values_numpy_cannot_hold_are_refused_before_the_command_runs(logits):
    with pytest.raises(ro.ReferenceInputError, match="'logits'"):
        ro.run("topk", {"logits": np.array(["a", "b"])})
    with pytest.raises(ro.ReferenceInputError, match="'k'"):
        ro.run("topk", {"logits": logits}, k=[1, 2])
    with pytest.raises(ro.ReferenceInputError, match="mapping"):
        ro.run("topk", [logits])


# --- finding the command -----------------------------------------------------------------------------------------------


def test_a_missing_command_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(ro.ENV_VAR, str(tmp_path / "nowhere" / "reference"))
    with pytest.raises(ro.ReferenceNotFoundError, match="REFERENCE_CLI"):
        ro.list_algorithms()
    monkeypatch.delenv(ro.ENV_VAR)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOTNET_CLI_HOME", raising=False)
    with pytest.raises(ro.ReferenceNotFoundError, match="dotnet tool install"):
        ro.find_reference()


def test_the_command_is_found_on_path(monkeypatch, tmp_path):
    real = ro.find_reference()  # REFERENCE_CLI, set by conftest or the suite
    script = tmp_path / "reference"
    script.write_text("#!/bin/sh\nexec " + " ".join(f"'{a}'" for a in real) + ' "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.delenv(ro.ENV_VAR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert ro.find_reference() == [str(script)]
    names = [a["name"] for a in ro.list_algorithms()]
    assert "topk" in names and "attention" in names
