"""Argument handling shared by the Python peers in tests/peers/ and the bug zoo in tests/peers/zoo/.

A peer is run as `/usr/bin/python3 tests/peers/NAME.py COMMAND ARG...` (or, for the golden input writers,
`NAME.py DIR`). What they have in common lives here, so that each peer only says what is its own.

Command line
  dispatch(argv, doc, commands, fallback=None)
      commands maps a command word to (function, kinds), one kind per argument after the word: str, int, or a tuple
      of the words allowed there. `argv[1]` names the command; with the right number of arguments, each converted,
      the process exits with function(*arguments). Otherwise fallback(argv) runs when given (attention_peer's
      IN OUT [PARAMS] mode), else the usage text: doc on stderr, exit 2. An int argument that is not an integer
      fails with exit 2.
  positional(argv, doc, *kinds)   the converted arguments argv[1:] when there are len(kinds) of them, else usage
  usage(doc)                      doc on stderr, exit 2
  fail(prog, message)             "prog: message" on stderr, exit 2 (bad usage or bad input)

Files
  case_names(root)                sorted names of the directories directly under root (one case each)
  read_arrays(path)               every array of an .npz file, as a dict name -> numpy array (raises if unreadable)
  read_params(case_dir)           CASE/params.json as a dict, {} when the case has none
  read_case(case_dir)             (input arrays, params, expected arrays) of CASE/{input.npz, params.json, expected.npz}
  write_arrays(path, arrays)      np.savez(path, **arrays)
  write_case(case_dir, arrays, params, golden=False)
                                  CASE/input.npz and CASE/params.json (golden: indent 1, sorted keys, final newline,
                                  the form of data/golden; otherwise json.dump's one line)

Parameters (the CLI's --param name=value text, and params.json values, which may be JSON values or that text)
  param_value(value)              "true"/"false" -> bool, integer text -> int, other number text -> float, any other
                                  text unchanged; a value that is not a string unchanged
  param_flag(value)               a boolean parameter: a JSON boolean, or true exactly when its text is "true"
  param_args(args, prog, words=())
                                  PARAMS.json files and name=value arguments -> dict (later ones override); a value
                                  is read by param_value and must be true, false or a number unless its name is in
                                  words; anything else fails with exit 2
  param_text(value)               a value as --param text: true/false for booleans, repr for floats, str otherwise
  text_bools(params)              a copy of params with its boolean values written "true"/"false"
"""

import json
import os
import sys

import numpy as np


# ---- command line ------------------------------------------------------------------------------------------------

def usage(doc):
    """The peer's usage text on stderr; exit 2."""
    print(doc, file=sys.stderr)
    sys.exit(2)


def fail(prog, message):
    """A bad-usage or bad-input message on stderr, prefixed by the peer's name; exit 2."""
    print(f"{prog}: {message}", file=sys.stderr)
    sys.exit(2)


def _prog(argv):
    return os.path.splitext(os.path.basename(argv[0]))[0] if argv else "peer"


def _convert(argv, args, kinds):
    """The arguments converted by their kinds, or None when a word is not among the allowed ones."""
    values = []
    for position, (text, kind) in enumerate(zip(args, kinds), start=1):
        if isinstance(kind, tuple):
            if text not in kind:
                return None
            values.append(text)
        elif kind is int:
            try:
                values.append(int(text))
            except ValueError:
                fail(_prog(argv), f"argument {position} ({text!r}) is not an integer")
        else:
            values.append(kind(text))
    return values


def positional(argv, doc, *kinds):
    """argv[1:] converted by kinds (str, int or a tuple of allowed words); the usage text unless they fit."""
    args = argv[1:]
    values = _convert(argv, args, kinds) if len(args) == len(kinds) else None
    if values is None:
        usage(doc)
    return values


def dispatch(argv, doc, commands, fallback=None):
    """Runs the command argv[1] names and exits with its return value; see the module docstring."""
    if len(argv) >= 2 and argv[1] in commands:
        function, kinds = commands[argv[1]]
        args = argv[2:]
        values = _convert(argv, args, kinds) if len(args) == len(kinds) else None
        if values is not None:
            sys.exit(function(*values))
    if fallback is not None:
        sys.exit(fallback(argv))
    usage(doc)


# ---- files -------------------------------------------------------------------------------------------------------

def case_names(root):
    """Sorted names of the case directories directly under root."""
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


def read_arrays(path):
    """Every array of the .npz file at path, as a dict name -> numpy array."""
    data = np.load(path)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz file")
    with data:
        return {name: data[name] for name in data.files}


def read_params(case_dir):
    """CASE/params.json as a dict; {} when the case has none."""
    path = os.path.join(case_dir, "params.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def read_case(case_dir):
    """(input arrays, params, expected arrays) of CASE/{input.npz, params.json, expected.npz}."""
    return (read_arrays(os.path.join(case_dir, "input.npz")), read_params(case_dir),
            read_arrays(os.path.join(case_dir, "expected.npz")))


def write_arrays(path, arrays):
    """Writes arrays (a dict name -> array) to the .npz file at path."""
    np.savez(path, **arrays)


def write_case(case_dir, arrays, params, golden=False):
    """Writes CASE/input.npz and CASE/params.json, creating the directory."""
    os.makedirs(case_dir, exist_ok=True)
    write_arrays(os.path.join(case_dir, "input.npz"), arrays)
    with open(os.path.join(case_dir, "params.json"), "w") as f:
        if golden:
            json.dump(params, f, indent=1, sort_keys=True)
            f.write("\n")
        else:
            json.dump(params, f)


# ---- parameters --------------------------------------------------------------------------------------------------

def param_value(value):
    """A parameter's text as a JSON-like value: booleans, integers and numbers typed, other text unchanged."""
    if not isinstance(value, str):
        return value
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def param_flag(value):
    """A boolean parameter given as a JSON boolean or as its text."""
    return value if isinstance(value, bool) else str(value) == "true"


def param_args(args, prog, words=()):
    """PARAMS.json files and name=value arguments, in order, as one dict; a value not true, false or a number (unless
    its name is in words) or an argument of neither form fails with exit 2."""
    params = {}
    for arg in args:
        if arg.endswith(".json"):
            with open(arg) as f:
                params.update(json.load(f))
        elif "=" in arg:
            name, text = arg.split("=", 1)
            params[name] = param_value(text)
            if name not in words and isinstance(params[name], str):
                fail(prog, f"parameter value {text!r} is not true, false or a number")
        else:
            fail(prog, f"unexpected argument {arg!r} (want PARAMS.json or name=value)")
    return params


def param_text(value):
    """A parameter value as the CLI's --param text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def text_bools(params):
    """A copy of params with its boolean values written "true"/"false", as the CLI's text has them."""
    return {name: (param_text(value) if isinstance(value, bool) else value) for name, value in params.items()}
