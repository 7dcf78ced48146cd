#!/usr/bin/python3
"""The bug zoo: realistic correct and buggy implementations, each judged by the real `reference check`.

  /usr/bin/python3 tests/peers/zoo/zoo.py --cli PATH/Reference.Cli.dll [--family NAME]... [--keep DIR]
                                          [--verbose] [--jobs N] [--timeout S]

Every module family_<name>.py next to this file defines FAMILY and cases() (see zoo_common.case for the keys).
For each case the driver writes the inputs and the candidate (np.savez, or .safetensors when an array is bfloat16),
runs `dotnet CLI check ALG --input IN --candidate CAND --param name=value ... --json report.json` and compares the
exit code with the case's kind: correct -> 0, bug -> 1, malformed -> 2. Anything else is a zoo failure.

Exit status: 0 when every verdict is right and every family has at least 5 bugs and 3 correct cases, each kind with a
float32 case and a float16 or bfloat16 case; 1 otherwise; 2 on bad usage (no CLI, unknown family).
"""

import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import zoo_common  # noqa: E402  (puts tests/peers on the path for peer_args)
from peer_args import fail, param_text  # noqa: E402

EXPECTED = {"correct": 0, "bug": 1, "malformed": 2}
MIN_BUGS, MIN_CORRECT = 5, 3


def discover(selected):
    """Imports family_*.py in this folder; returns [(family, module path, cases)] and a list of load errors."""
    found, errors = [], []
    for file in sorted(os.listdir(HERE)):
        if not (file.startswith("family_") and file.endswith(".py")):
            continue
        path = os.path.join(HERE, file)
        try:
            spec = importlib.util.spec_from_file_location(file[:-3], path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            family = module.FAMILY
            if selected and family not in selected:
                continue
            found.append((family, file, module.cases()))
        except Exception:  # a broken module is a zoo failure, reported with its traceback
            errors.append((file, traceback.format_exc()))
    return found, errors


def check_case(case):
    problems = [k for k in zoo_common.CASE_KEYS if k not in case]
    if problems:
        return f"missing keys {problems}"
    if case["kind"] not in EXPECTED:
        return f"unknown kind {case['kind']}"
    if case["dtype"] not in zoo_common.DTYPES:
        return f"unknown dtype {case['dtype']}"
    return None


def safe_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run_case(cli, case, workdir, timeout):
    """Runs one case; returns a result dict (exit code or None, stdout, stderr, seconds)."""
    os.makedirs(workdir, exist_ok=True)
    start = time.monotonic()
    inp = zoo_common.write_tensors(os.path.join(workdir, "in"), case["inputs"])
    cand = zoo_common.write_tensors(os.path.join(workdir, "cand"), case["candidate"])
    report = os.path.join(workdir, "report.json")
    args = ["dotnet", cli, "check", case["algorithm"], "--input", inp, "--candidate", cand]
    for name, value in case["params"].items():
        args += ["--param", f"{name}={param_text(value)}"]
    args += ["--json", report]
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        code, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        code, out, err = None, e.stdout or "", (e.stderr or "") + f"\n(timeout after {timeout} s)"
        out = out if isinstance(out, str) else out.decode(errors="replace")
        err = err if isinstance(err, str) else err.decode(errors="replace")
    seconds = time.monotonic() - start
    with open(os.path.join(workdir, "stdout.txt"), "w") as f:
        f.write(out)
    with open(os.path.join(workdir, "stderr.txt"), "w") as f:
        f.write(err)
    with open(os.path.join(workdir, "command.txt"), "w") as f:
        f.write(" ".join(args) + "\n")
    return {"code": code, "stdout": out, "stderr": err, "seconds": seconds, "command": args}


def reason_line(result):
    """The CLI's most telling line: the first failing array line, else the first stderr line, else stdout's first."""
    lines = [l for l in result["stdout"].splitlines() if l.strip()]
    for l in lines:
        if re.search(r"\bFAIL|\bfail|mismatch", l):
            return l.strip()
    errs = [l for l in result["stderr"].splitlines() if l.strip()]
    if errs:
        return errs[0].strip()
    return lines[0].strip() if lines else "(no output)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", required=True, help="path to Reference.Cli.dll")
    ap.add_argument("--family", action="append", default=[], help="run only this family (repeatable)")
    ap.add_argument("--keep", help="keep every case's files under this directory")
    ap.add_argument("--verbose", action="store_true", help="print the CLI's output for every case")
    ap.add_argument("--jobs", type=int, default=1, help="cases run in parallel (default 1)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per CLI call (default 120)")
    ap.add_argument("--summary-json", help="write every case's verdict to this JSON file")
    a = ap.parse_args()
    if not os.path.isfile(a.cli):
        fail("zoo", f"no CLI at {a.cli}")

    t0 = time.monotonic()
    families, load_errors = discover(set(a.family))
    if a.family:
        unknown = set(a.family) - {f for f, _, _ in families}
        if unknown and not load_errors:
            fail("zoo", f"unknown family {sorted(unknown)}")

    failures = []
    for file, tb in load_errors:
        print(f"LOAD-ERROR {file}\n{tb}")
        failures.append(f"{file} failed to load")

    cases, seen = [], set()
    for family, file, fcases in families:
        for c in fcases:
            problem = check_case(c)
            if problem is None and c["name"] in seen:
                problem = "duplicate name"
            if problem:
                failures.append(f"{family}: case {c.get('name')}: {problem}")
                print(f"BAD-CASE {c.get('name')} ({file}): {problem}")
                continue
            seen.add(c["name"])
            cases.append((family, c))

    root = a.keep or tempfile.mkdtemp(prefix="zoo-")
    if a.keep:
        os.makedirs(root, exist_ok=True)

    def job(item):
        family, c = item
        return run_case(a.cli, c, os.path.join(root, safe_name(c["name"])), a.timeout)

    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        submitted = [(item, pool.submit(job, item)) for item in cases]
        for item, fut in submitted:
            family, c = item
            r = fut.result()
            results[c["name"]] = r
            want = EXPECTED[c["kind"]]
            ok = r["code"] == want
            verdict = "ok  " if ok else "WRONG"
            print(f"{verdict} {c['name']:<58} exit {r['code']} (want {want}) {r['seconds']:.2f}s", flush=True)
            if a.verbose or not ok:
                if not ok:
                    print(f"      kind: {c['kind']}  dtype: {c['dtype']}  style: {c['style']}")
                    print(f"      why: {c['why']}")
                    print(f"      params: {c['params']}")
                for l in r["stdout"].rstrip().splitlines():
                    print(f"      | {l}")
                for l in r["stderr"].rstrip().splitlines():
                    print(f"      ! {l}")
            if not ok:
                failures.append(f"{c['name']}: exit {r['code']}, expected {want}")

    def count(kind, right=None, family=None):
        n = 0
        for fam, c in cases:
            if c["kind"] != kind or (family is not None and fam != family):
                continue
            if right is None or (results[c["name"]]["code"] == EXPECTED[kind]) == right:
                n += 1
        return n

    print(f"zoo: caught {count('bug', True)}/{count('bug')} bugs, passed {count('correct', True)}/{count('correct')} correct")
    if count("malformed"):
        print(f"zoo: rejected {count('malformed', True)}/{count('malformed')} malformed files with exit 2")
    for family, file, _ in families:
        line = (f"zoo: {family:<22} bugs caught {count('bug', True, family)}/{count('bug', None, family)}, "
                f"correct passed {count('correct', True, family)}/{count('correct', None, family)}")
        if count("malformed", None, family):
            line += f", malformed rejected {count('malformed', True, family)}/{count('malformed', None, family)}"
        print(line)
        for kind, least in (("bug", MIN_BUGS), ("correct", MIN_CORRECT)):
            mine = [c for fam, c in cases if fam == family and c["kind"] == kind]
            if len(mine) < least:
                failures.append(f"{family}: {len(mine)} {kind} cases, at least {least} required")
            if not any(c["dtype"] == "f32" for c in mine):
                failures.append(f"{family}: no float32 {kind} case")
            if not any(c["dtype"] in ("f16", "bf16") for c in mine):
                failures.append(f"{family}: no float16/bfloat16 {kind} case")
    if a.summary_json:
        with open(a.summary_json, "w") as f:
            json.dump([{"family": fam, "name": c["name"], "kind": c["kind"], "dtype": c["dtype"], "why": c["why"],
                        "expected": EXPECTED[c["kind"]], "actual": results[c["name"]]["code"],
                        "reason": reason_line(results[c["name"]]), "seconds": results[c["name"]]["seconds"]}
                       for fam, c in cases], f, indent=1)
    print(f"zoo: {len(cases)} cases in {time.monotonic() - t0:.1f} s")
    if not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    if failures:
        print(f"zoo: {len(failures)} failure(s):")
        for f in failures:
            print(f"  {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
