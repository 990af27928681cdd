"""A Terraform root module's variables, read from its files: which `var.` keys a command may set,
of what type, and whether they are sensitive or required.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.errors import OpsError

# ---- a root module's variables ---------------------------------------------------------------
#
# Terraform has no command that lists a module's variables without a plan (`validate -json` and
# `console` do not; `show -json` does, of a plan). We must refuse an undeclared `var.` before any
# plan, so the `variable` blocks are read from the files: a small scanner that knows HCL's
# comments, strings (with `${…}` templates) and heredocs finds the top-level blocks, then the
# block's own attributes (`type`, `sensitive`, `default`). `.tf.json` files are plain JSON.

_IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"
_BLOCK_HEAD = re.compile(rf'({_IDENT})((?:\s+(?:"(?:[^"\\]|\\.)*"|{_IDENT}))*)\s*\{{')
_LABEL = re.compile(rf'"((?:[^"\\]|\\.)*)"|({_IDENT})')
_ATTRIBUTE = re.compile(rf"({_IDENT})\s*=(?!=)\s*(.*)", re.S)
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_]*)[ \t]*\r?\n")


@dataclass(frozen=True)
class Variable:
    name: str
    type: str = "any"  # the type constraint as written, without spaces: "string", "map(bool)", …
    sensitive: bool = False
    required: bool = False  # no default: a value must be given

    def coerce(self, text: str) -> Any:
        """The value Terraform should get for `text` typed in Slack; ValueError says what to type."""
        if self.type == "string":
            return text
        if self.type == "number":
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"`var.{self.name}` is a number")
            return value
        if self.type == "bool":
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            raise ValueError(f"`var.{self.name}` is a bool: `true` or `false`")
        try:
            return json.loads(text)
        except ValueError:
            if self.type == "any":
                return text
            raise ValueError(f"`var.{self.name}` is a `{self.type}`: give it as JSON, "
                             'e.g. `["a","b"]` or `{"k":"v"}`') from None


def declared_variables(module: Path) -> dict[str, Variable]:
    """The variables a root module declares, by name (its `*.tf` and `*.tf.json` files)."""
    if not module.is_dir():
        raise OpsError(f"the Terraform root module `{module}` is not a folder; check `terraform.root`.")
    files = [p for p in module.iterdir() if p.is_file() and p.name.endswith((".tf", ".tf.json"))]
    # Override files (`override.tf`, `*_override.tf`) change attributes of blocks declared elsewhere.
    files.sort(key=lambda p: (_is_override(p), p.name))
    found: dict[str, dict[str, Any]] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OpsError(f"cannot read `{path}`: {exc}") from None
        blocks = _json_variables(text, path) if path.name.endswith(".json") else _hcl_variables(text)
        for name, attrs in blocks:
            if _is_override(path):
                found.setdefault(name, {}).update(attrs)
            else:
                found[name] = dict(attrs)
    out = {}
    for name, attrs in found.items():
        type_ = re.sub(r"\s+", "", str(attrs.get("type") or "any")).removeprefix("${").removesuffix("}")
        sensitive = attrs.get("sensitive") in (True, "true")
        out[name] = Variable(name, type_ or "any", sensitive, required="default" not in attrs)
    return dict(sorted(out.items()))


def declared_blocks(module: Path) -> set[tuple[str, str]]:
    """The module calls and managed resources a root module declares: ("module", "eks") for
    `module "eks"`, ("aws_vpc", "main") for `resource "aws_vpc" "main"` (what a `-target` may name)."""
    if not module.is_dir():
        raise OpsError(f"the Terraform root module `{module}` is not a folder; check `terraform.root`.")
    found: set[tuple[str, str]] = set()
    for path in sorted(p for p in module.iterdir() if p.is_file() and p.name.endswith((".tf", ".tf.json"))):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OpsError(f"cannot read `{path}`: {exc}") from None
        if path.name.endswith(".json"):
            try:
                doc = json.loads(text)
            except ValueError as exc:
                raise OpsError(f"`{path}` is not valid JSON: {exc}") from None
            doc = doc if isinstance(doc, dict) else {}
            found |= {("module", n) for n in (doc.get("module") or {})}
            found |= {(t, n) for t, named in (doc.get("resource") or {}).items() for n in (named or {})}
            continue
        for kind, labels, _ in _blocks(text):
            if kind == "module" and len(labels) == 1:
                found.add(("module", labels[0]))
            elif kind == "resource" and len(labels) == 2:
                found.add((labels[0], labels[1]))
    return found


def _is_override(path: Path) -> bool:
    stem = path.name.removesuffix(".json").removesuffix(".tf")
    return stem == "override" or stem.endswith("_override")


def _json_variables(text: str, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise OpsError(f"`{path}` is not valid JSON: {exc}") from None
    blocks = doc.get("variable") if isinstance(doc, dict) else None
    for block in blocks if isinstance(blocks, list) else [blocks or {}]:
        for name, attrs in (block or {}).items():
            yield name, attrs if isinstance(attrs, dict) else {}


def _blocks(text: str) -> Iterator[tuple[str, list[str], str]]:
    """(block type, labels, body) of every top-level block."""
    for statement in _statements(text):
        head = _BLOCK_HEAD.match(statement)
        if head is not None:
            labels = [quoted or bare for quoted, bare in _LABEL.findall(head.group(2))]
            yield head.group(1), labels, statement[head.end(): statement.rfind("}")]


def _hcl_variables(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    for kind, labels, body in _blocks(text):
        if kind != "variable" or len(labels) != 1:
            continue
        attrs = {}
        for inner in _statements(body):
            attribute = _ATTRIBUTE.fullmatch(inner)
            if attribute:
                attrs[attribute.group(1)] = attribute.group(2).strip()
        yield labels[0], attrs


def _statements(text: str) -> list[str]:
    """Split HCL body text into its top-level statements (attributes and blocks), comments removed."""
    out: list[str] = []
    buf: list[str] = []
    depth, i, n = 0, 0, len(text)

    def flush() -> None:
        statement = "".join(buf).strip()
        if statement:
            out.append(statement)
        buf.clear()

    while i < n:
        c = text[i]
        if c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            buf.append(" ")
            continue
        if c == '"':
            end = _skip_string(text, i)
            buf.append(text[i:end])
            i = end
            continue
        heredoc = _HEREDOC.match(text, i) if c == "<" else None
        if heredoc:
            end = _skip_heredoc(text, heredoc)
            buf.append(text[i:end])
            i = end
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif c == "\n" and depth == 0:
            flush()
            i += 1
            continue
        buf.append(c)
        i += 1
    flush()
    return out


def _skip_string(text: str, start: int) -> int:
    """Index just after the string literal opening at `start` (templates `${…}` may nest strings)."""
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        elif text.startswith(("${", "%{"), i):
            i = _skip_template(text, i + 2)
        else:
            i += 1
    return n


def _skip_template(text: str, i: int) -> int:
    depth, n = 1, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = _skip_string(text, i)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_heredoc(text: str, opening: re.Match[str]) -> int:
    marker, pos, n = opening.group(2), opening.end(), len(text)
    while pos < n:
        end = text.find("\n", pos)
        end = n if end < 0 else end
        if text[pos:end].strip() == marker:
            return end
        pos = end + 1
    return n
