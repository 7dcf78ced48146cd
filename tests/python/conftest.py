"""Test set-up for the Python client: which copy of reference_oracle, and which `reference` command.

The F# suite (tests/Reference.Tests/ClientTests.fs) installs the client with pip into a temporary folder, puts it on
PYTHONPATH and sets REFERENCE_ORACLE_EXPECTED_DIR to that folder; run by hand, the tests import src/python.
REFERENCE_CLI defaults to the built src/Reference.Cli/bin/Release/net10.0/Reference.Cli.dll.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if not os.environ.get("REFERENCE_ORACLE_EXPECTED_DIR"):
    sys.path.insert(0, str(ROOT / "src" / "python"))

if not os.environ.get("REFERENCE_CLI"):
    built = ROOT / "src" / "Reference.Cli" / "bin" / "Release" / "net10.0" / "Reference.Cli.dll"
    if built.is_file():
        os.environ["REFERENCE_CLI"] = str(built)
