"""examples/dvc.yaml: every stage's command is a valid harmonizer invocation, with params.yaml substituted.

DVC itself is not needed: the two files are read with a small reader of the YAML they use
(mappings, lists, plain or quoted scalars, ``>-`` folded blocks, comments), the
``${...}`` references are filled from params.yaml as ``dvc repro`` would, and each
command line goes through Click's parser (``make_context``, the Click that Typer
uses), which checks every option and value without running any command.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from harmonizer_cli.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _scalar(text: str) -> object:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _strip_comment(line: str) -> str:
    quote = None
    for i, char in enumerate(line):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def read_yaml(text: str) -> object:
    """The value of a YAML document in the subset the example files use."""
    lines = [(len(raw) - len(raw.lstrip(" ")), raw.strip()) for raw in map(_strip_comment, text.splitlines())
             if raw.strip()]
    value, end = _block(lines, 0, lines[0][0])
    assert end == len(lines), f"unparsed YAML from line {end}: {lines[end]}"
    return value


def _block(lines: list, i: int, indent: int) -> tuple[object, int]:
    if lines[i][1].startswith("- "):
        items = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            rest = lines[i][1][2:]
            if re.match(r"^[^'\"]+:(\s|$)", rest):  # a mapping as the list item
                nested = [(indent + 2, rest)] + lines[i + 1:]
                value, used = _mapping(nested, 0, indent + 2)
                items.append(value)
                i += used
            else:
                items.append(_scalar(rest))
                i += 1
        return items, i
    value, used = _mapping(lines, i, indent)
    return value, used


def _mapping(lines: list, i: int, indent: int) -> tuple[dict, int]:
    mapping: dict = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
        key, _, rest = lines[i][1].partition(":")
        rest = rest.strip()
        i += 1
        if rest in (">-", ">", "|"):
            block = []
            while i < len(lines) and lines[i][0] > indent:
                block.append(lines[i][1])
                i += 1
            mapping[key.strip()] = " ".join(block) if rest != "|" else "\n".join(block)
        elif rest:
            mapping[key.strip()] = _scalar(rest)
        elif i < len(lines) and lines[i][0] > indent:
            mapping[key.strip()], i = _block(lines, i, lines[i][0])
        else:
            mapping[key.strip()] = None
    return mapping, i


def substitute(text: str, params: dict) -> str:
    """``${a.b}`` replaced by ``params["a"]["b"]`` (a missing key fails the test)."""
    def value(match: re.Match) -> str:
        node: object = params
        for part in match.group(1).split("."):
            assert isinstance(node, dict) and part in node, f"${{{match.group(1)}}} is not in params.yaml"
            node = node[part]
        return str(node)
    return re.sub(r"\$\{([^}]+)\}", value, text)


def parse_invocation(argv: list[str]) -> tuple[str, object]:
    """Parse a harmonizer command line with Click, without running it; the subcommand and its context."""
    group = typer.main.get_command(app)
    assert argv[0] == "harmonizer", argv
    parent = group.make_context("harmonizer", argv[1:], resilient_parsing=False)
    rest = [*getattr(parent, "_protected_args", []), *parent.args]  # Click 8.2+ keeps the subcommand there
    assert rest, f"no subcommand in {argv}"
    command = group.get_command(parent, rest[0])
    assert command is not None, f"unknown harmonizer command {rest[0]!r}"
    return rest[0], command.make_context(rest[0], rest[1:], parent=parent, resilient_parsing=False)


def _stages() -> tuple[dict, dict]:
    pipeline = read_yaml((EXAMPLES / "dvc.yaml").read_text())
    params = read_yaml((EXAMPLES / "params.yaml").read_text())
    return pipeline["stages"], params


def _argv(command_line: str) -> tuple[list[str], str | None]:
    """The command's words and the file its standard output is redirected to."""
    words = shlex.split(command_line)
    if ">" in words:
        at = words.index(">")
        return words[:at], words[at + 1]
    return words, None


def test_the_reader_reads_the_yaml_it_needs() -> None:
    document = read_yaml("a:\n  b: 1  # note\n  c: 'x # y'\nl:\n  - p\n  - q: false\nf: >-\n  one\n  two\n")
    assert document == {"a": {"b": 1, "c": "x # y"}, "l": ["p", {"q": False}], "f": "one two"}


def test_every_stage_is_a_valid_harmonizer_invocation() -> None:
    stages, params = _stages()
    commands = {}
    for name, stage in stages.items():
        words, redirect = _argv(substitute(stage["cmd"], params))
        command, context = parse_invocation(words)  # raises a usage error on a bad option or value
        commands[name] = (command, context.params, redirect)
        for param in stage.get("params", []):
            section = param.split(".")[0]
            assert section in params, f"{name}: param {param} is not in params.yaml"
        outs = [substitute(str(out), params) for out in stage.get("outs", [])]
        metrics = [next(iter(m)) if isinstance(m, dict) else m for m in stage.get("metrics", [])]
        for path in outs + metrics:
            assert path in substitute(stage["cmd"], params), f"{name}: {path} is not written by its command"
        if metrics:
            assert redirect in metrics
    assert [c for c, _, _ in commands.values()] == ["fetch-data", "fetch-data", "preprocess", "preprocess",
                                                    "train", "evaluate", "evaluate"]
    assert commands["preprocess-songs"][1]["test"] == 1.0  # never trained on: every song a test song
    assert commands["evaluate-songs"][1]["split"] == "all"
    objective = commands["train"][1]["objective"]  # (an Enum, or its value: typer before 0.29)
    assert getattr(objective, "value", objective) == params["train"]["objective"]


def test_each_stage_depends_on_what_the_previous_ones_write() -> None:
    stages, params = _stages()
    written: set[str] = set()
    for name, stage in stages.items():
        for dep in stage.get("deps", []):
            dep = substitute(str(dep), params)
            assert dep in written or (EXAMPLES / dep).is_file(), f"{name}: {dep} is neither an out nor a file"
            assert dep in substitute(stage["cmd"], params), f"{name}: {dep} is not read by its command"
        written |= {substitute(str(out), params) for out in stage.get("outs", [])}


def _usage_error() -> type:
    """Click's UsageError as the app's Click has it (Typer may carry its own copy of Click)."""
    return typer.BadParameter.__mro__[1]


def test_a_bad_option_would_be_caught() -> None:
    assert _usage_error().__name__ == "UsageError"
    with pytest.raises(_usage_error(), match="ranking"):
        parse_invocation(["harmonizer", "train", "--objective", "ranking"])
    with pytest.raises(_usage_error(), match="no-such-option"):
        parse_invocation(["harmonizer", "preprocess", "--no-such-option"])
    with pytest.raises(_usage_error(), match=r"less than or equal to 1|not in the range 0.0<=x<=1.0"):
        parse_invocation(["harmonizer", "preprocess", "--test", "1.5"])
