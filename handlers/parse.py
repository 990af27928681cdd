"""The `/infer` slash grammar: command text in, a validated :class:`Command` out.

Handlers get their input only from :func:`parse`, so the grammar lives in one place (as Atlantis
keeps its own in ``comment_parser.go``) and no handler looks at raw text. The grammar is data,
:data:`VERBS` in handlers/grammar.py, read by one generic pass here; usage lines, error messages and
:attr:`Command.text` all come from that table, so they cannot drift apart. This module holds the
tokenizer, :class:`Command`, :func:`parse` and :class:`UsageError`; it re-exports the grammar's
public names, so handlers import everything from ``handlers.parse``.

Pure logic on purpose: no Slack, no I/O, standard library only. Whatever a user types ends in
either a ``Command`` or a :class:`UsageError` whose message is short and safe to post back.

Details of the grammar that ../shared/ARCHITECTURE.md leaves open:

* Verbs, option keys and fixed choices (``metric=CPU``, ``digest LIST``) are case-insensitive
  and come out lowercased; names are not (Kubernetes names are lowercase, so ``Qwen`` is refused
  rather than silently changed). Integers come out canonical (``007`` → ``7``).
* A ``digest subscribe`` cron is standard crontab (day-of-week 0 and 7 are Sunday), returned as
  five lowercase single-spaced fields.
* ``test <name> <prompt…>``: after the name, leading ``cluster=``/``namespace=`` tokens are
  options; the first other token starts the prompt, which is the rest of the text verbatim
  (quotes, ``=`` signs and apostrophes included). A ``--`` token ends the options explicitly,
  for a prompt that itself starts with ``cluster=`` or ``--``.
* ``provision``/``destroy``/``drift <cluster>``: the positional cluster also fills
  :attr:`Command.cluster`, so policy checks see the cluster the verb acts on; a different
  ``cluster=`` next to it is refused.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from handlers.grammar import (
    AUDIT_DEFAULT,
    AUDIT_MAX,
    COMMAND,
    PRESET_ID,
    VERBS,
    Arg,
    Invalid,
    Kind,
    Option,
    Role,
    Value,
    VerbSpec,
    ascii_lower,
    check_value,
    shown,
    unknown_verb,
)

__all__ = [
    "AUDIT_DEFAULT",
    "AUDIT_MAX",
    "COMMAND",
    "DEFAULT_MAX_REPLICAS",
    "GENERAL_USAGE",
    "MAX_TEXT_CHARS",
    "VERBS",
    "Arg",
    "Command",
    "Kind",
    "Option",
    "Role",
    "UsageError",
    "Value",
    "VerbSpec",
    "parse",
    "usage_lines",
]

GENERAL_USAGE: Final = f"{COMMAND} <verb> [arguments] [key=value …]  (`{COMMAND} help` lists the verbs)"
DEFAULT_MAX_REPLICAS: Final = 20
# Far above anything Slack sends, yet it bounds the work of the character-by-character tokenizer
# for text that arrives another way (the console, a misbehaving client).
MAX_TEXT_CHARS: Final = 100_000

# Every character str.isspace() accepts. shlex only splits on ASCII whitespace, but Slack clients
# and copy-paste produce no-break and other Unicode spaces; "scale\u00a0qwen" is two words to a user.
_WHITESPACE: Final = (
    " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
# One character for one character: the tokenizer reads the translated text, and the verbatim
# prompt of `test` is sliced from the untranslated text at the same offsets.
_SMART_QUOTES: Final = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
    }
)
# Slack escapes exactly these three in command text. One pass, so "&amp;lt;" (a typed "&lt;")
# decodes to "&lt;" and not to "<".
_SLACK_ENTITY: Final = re.compile("&(amp|lt|gt);")
_ENTITY_CHARS: Final = {"amp": "&", "lt": "<", "gt": ">"}

# Explicit ASCII classes, as in handlers/grammar.py: \w would also accept letters such as "é".
_SET_KEY: Final = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,200}")
# Options that carry free-form keys, and the one verb that takes each.
_PREFIX_OWNERS: Final = {"set.": "deploy", "var.": "provision"}
# The grammar's preset id under its old name here: tests/ops/test_catalog.py checks ops/catalog against it.
_PRESET_ID: Final = PRESET_ID


class UsageError(Exception):
    """The text is not a valid command; nothing was done.

    ``message`` says what was wrong (short, safe to post in Slack), ``usage`` is the usage line of
    the verb (or :data:`GENERAL_USAGE` when the verb is unknown), ``verb`` the canonical verb.
    """

    def __init__(self, message: str, usage: str = GENERAL_USAGE, verb: str | None = None) -> None:
        # All three go to Exception so the error pickles and reprs with its whole content.
        super().__init__(message, usage, verb)
        self.message = message
        self.usage = usage
        self.verb = verb

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Command:
    """A parsed, validated `/infer` command.

    ``args`` are the positional arguments in grammar order, normalised (lowercased choices,
    canonical integers, a cron as five single-spaced fields); optional ones that were not given
    are absent, except where the grammar has a default (``audit``). ``options`` holds the verb's
    key=value options in grammar order, without ``cluster``; ``sets`` the ``set.``/``var.`` keys
    without their prefix, in the order typed.
    """

    verb: str
    args: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    sets: Mapping[str, str] = field(default_factory=dict)
    cluster: str | None = None

    def __post_init__(self) -> None:
        # Read-only copies: a Command is passed between threads and stored with operations, and
        # nobody should be able to change what was approved.
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "sets", MappingProxyType(dict(self.sets)))

    def __hash__(self) -> int:
        # The generated hash would fail on the mappings; order does not matter to equality.
        return hash(
            (
                self.verb,
                self.args,
                frozenset(self.options.items()),
                frozenset(self.sets.items()),
                self.cluster,
            )
        )

    @property
    def spec(self) -> VerbSpec:
        return VERBS[self.verb]

    @property
    def usage(self) -> str:
        return self.spec.usage

    def arg(self, name: str) -> str | None:
        """The positional argument called ``name`` in the grammar, or None when absent."""
        applicable = self.spec.applicable_args(self.args[0] if self.args else None)
        for arg, value in zip(applicable, self.args, strict=False):
            if arg.name == name:
                return value
        return None

    @property
    def text(self) -> str:
        """Canonical command text (after the slash command) that parses back to this Command.

        It is in Slack's wire encoding (``&``, ``<``, ``>`` escaped), which is also what Slack
        mrkdwn expects, so it can be shown in a message or audit row as is.
        """
        spec = self.spec
        words = [self.verb]
        prompt: str | None = None
        arg_cluster: str | None = None
        for arg, value in zip(spec.applicable_args(self.args[0] if self.args else None), self.args, strict=False):
            if arg.rest == "raw":
                prompt = value
                continue
            if arg.value.kind is Kind.CLUSTER:
                arg_cluster = value
            words.append(shlex.quote(value))
        words += [f"{key}={shlex.quote(value)}" for key, value in self.options.items()]
        if self.cluster is not None and self.cluster != arg_cluster:
            words.append(f"cluster={shlex.quote(self.cluster)}")
        words += [f"{spec.set_prefix}{key}={shlex.quote(value)}" for key, value in self.sets.items()]
        if prompt is not None:
            if _prompt_needs_separator(spec, prompt):
                words.append("--")
            words.append(prompt)
        return _slack_escape(" ".join(words))


def parse(text: str, *, max_replicas: int = DEFAULT_MAX_REPLICAS) -> Command:
    """Parse the text of `/infer …` (without the slash command) into a :class:`Command`.

    Raises :class:`UsageError` for any text that is not a valid command, and nothing else;
    ``max_replicas`` is configuration, and a value below 1 is a ValueError.
    """
    if max_replicas < 1:
        raise ValueError(f"max_replicas must be at least 1, got {max_replicas}")
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(f"the command is too long: {len(text)} characters, at most {MAX_TEXT_CHARS}")
    raw = _SLACK_ENTITY.sub(lambda match: _ENTITY_CHARS[match.group(1)], text)
    lexer = _Lexer(raw)
    try:
        first = lexer.next()
    except Invalid as exc:
        raise UsageError(exc.message) from None
    if first is None:
        return Command("help")
    spec = VERBS.get(ascii_lower(first))
    if spec is None:
        raise UsageError(unknown_verb(first))
    try:
        return _parse_verb(spec, raw, lexer, max_replicas)
    except Invalid as exc:
        raise UsageError(exc.message, spec.usage, spec.name) from None


def usage_lines() -> list[str]:
    """One line per verb, usage then summary, in the order `help` shows them."""
    return [f"{spec.usage}  —  {spec.summary}" for spec in VERBS.values()]


# --- tokenizing -------------------------------------------------------------------------------


class _Cursor:
    """The stream shlex reads from, counting characters so the rest of the text can be sliced."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def read(self, size: int = -1) -> str:
        end = len(self.text) if size < 0 else self.pos + size
        chunk = self.text[self.pos : end]
        self.pos += len(chunk)
        return chunk

    def readline(self) -> str:
        end = self.text.find("\n", self.pos)
        return self.read(-1 if end < 0 else end + 1 - self.pos)


class _Lexer:
    """Shell-like words, one at a time, with the position where the next word starts."""

    def __init__(self, text: str) -> None:
        self._cursor = _Cursor(text.translate(_SMART_QUOTES))
        lexer = shlex.shlex(self._cursor, posix=True)  # type: ignore[arg-type]  # duck-typed stream
        lexer.whitespace_split = True
        lexer.whitespace = _WHITESPACE
        # '#' is ordinary text here (in set values, prompts), not the start of a comment.
        lexer.commenters = ""
        self._lexer = lexer

    @property
    def pos(self) -> int:
        return self._cursor.pos

    def next(self) -> str | None:
        """The next word, or None at the end of the text."""
        try:
            return self._lexer.get_token()
        except ValueError as exc:
            if "quotation" in str(exc):
                raise Invalid("unbalanced quote: a \" or ' is opened but never closed") from None
            raise Invalid("the text ends with a lone backslash") from None


# --- the generic pass ---------------------------------------------------------------------------


def _parse_verb(spec: VerbSpec, raw: str, lexer: _Lexer, max_replicas: int) -> Command:
    words, given, sets, rest = _scan(spec, raw, lexer)
    args = _bind_args(spec, words, rest, max_replicas)
    options = _bind_options(spec, given, args, max_replicas)
    cluster = options.pop("cluster", None)
    applicable = spec.applicable_args(args[0] if args else None)
    for arg, value in zip(applicable, args, strict=False):
        if arg.value.kind is Kind.CLUSTER:
            if cluster is not None and cluster != value:
                raise Invalid(f"two clusters given: {shown(value)} and cluster={shown(cluster)}")
            cluster = value
    if spec.check is not None:
        spec.check(args, options)
    return Command(spec.name, args, options, sets, cluster)


def _scan(
    spec: VerbSpec, raw: str, lexer: _Lexer
) -> tuple[list[str], dict[str, str], dict[str, str], str | None]:
    """Split the words after the verb into positionals, options, set./var. keys and a raw rest."""
    words: list[str] = []
    given: dict[str, str] = {}
    sets: dict[str, str] = {}
    rest: str | None = None
    raw_at = next((i for i, arg in enumerate(spec.args) if arg.rest == "raw"), None)
    while True:
        start = lexer.pos
        if raw_at is not None and len(words) == raw_at:
            try:
                token = lexer.next()
            except Invalid:
                # A prompt may hold an apostrophe that opens no quote ("what's up"): it is text.
                rest = raw[start:]
                break
            if token is None:
                break
            if token == "--":
                rest = raw[lexer.pos :]
                break
            if _option_key(spec, token) is None:
                rest = raw[start:]
                break
            _take_option(spec, token, given, sets)
            continue
        token = lexer.next()
        if token is None:
            break
        if "=" in token:
            _take_option(spec, token, given, sets)
        else:
            words.append(token)
    if rest is not None:
        rest = rest.strip() or None
    return words, given, sets, rest


def _option_key(spec: VerbSpec, token: str) -> str | None:
    """The canonical key when ``token`` is a key=value option this verb accepts, else None."""
    key, sep, _ = token.partition("=")
    lowered = ascii_lower(key)
    if not sep:
        return None
    if lowered in spec.options or (spec.set_prefix is not None and lowered.startswith(spec.set_prefix)):
        return lowered
    return None


def _take_option(spec: VerbSpec, token: str, given: dict[str, str], sets: dict[str, str]) -> None:
    key, _, value = token.partition("=")
    if not key:
        raise Invalid(f"{shown(token)} has no option name before the `=`")
    lowered = ascii_lower(key)
    for prefix, owner in _PREFIX_OWNERS.items():
        if not lowered.startswith(prefix):
            continue
        if spec.set_prefix != prefix:
            raise Invalid(f"`{prefix}KEY=` options only work with `{owner}`, not `{spec.name}`")
        name = key[len(prefix) :]
        if not _SET_KEY.fullmatch(name):
            raise Invalid(
                f"{shown(key + '=')} has an invalid key: after `{prefix}` use 1 to 200 letters, "
                "digits, or `_ . - [ ]`"
            )
        if name in sets:
            raise Invalid(f"{shown(prefix + name + '=')} is given twice")
        sets[name] = value
        return
    if lowered not in spec.options:
        allowed = [f"`{option}=`" for option in spec.options]
        if spec.set_prefix is not None:
            allowed.append(f"`{spec.set_prefix}KEY=`")
        raise Invalid(f"unknown option {shown(key + '=')} for `{spec.name}`; it accepts {', '.join(allowed)}")
    if lowered in given:
        raise Invalid(f"`{lowered}=` is given twice")
    given[lowered] = value


def _bind_args(spec: VerbSpec, words: list[str], rest: str | None, max_replicas: int) -> tuple[str, ...]:
    values: list[str] = []
    missing: list[str] = []
    pending = list(words)
    for arg in spec.args:
        if arg.when is not None and (not values or values[0] != arg.when):
            continue
        value: str | None
        if arg.rest == "raw":
            value = rest
        elif arg.rest == "words":
            value = " ".join(pending) if pending else None
            pending = []
        else:
            value = pending.pop(0) if pending else None
        if value is None:
            if arg.required:
                missing.append(_describe(arg))
            elif arg.default is not None:
                values.append(arg.default)
            continue
        values.append(check_value(arg.value, value, max_replicas))
    if missing:
        noun = "argument" if len(missing) == 1 else "arguments"
        raise Invalid(f"missing {noun}: {', '.join(missing)}")
    if pending:
        takes = [arg.name for arg in spec.applicable_args(values[0] if values else None)]
        expected = f"`{spec.name}` takes {', '.join(takes)}" if takes else f"`{spec.name}` takes no arguments"
        raise Invalid(f"unexpected argument {shown(pending[0])}: {expected}")
    return tuple(values)


def _bind_options(
    spec: VerbSpec, given: Mapping[str, str], args: tuple[str, ...], max_replicas: int
) -> dict[str, str]:
    first = args[0] if args else None
    checked: dict[str, str] = {}
    missing: list[str] = []
    for key, option in spec.options.items():
        applies = option.when is None or option.when == first
        if key not in given:
            if option.required and applies:
                missing.append(f"`{key}=`")
            continue
        if not applies:
            raise Invalid(f"`{key}=` only applies to `{spec.name} {option.when}`")
        checked[key] = check_value(option.value, given[key], max_replicas)
    if missing:
        noun = "option" if len(missing) == 1 else "options"
        raise Invalid(f"missing required {noun} {', '.join(missing)}")
    return checked


def _describe(arg: Arg) -> str:
    if arg.value.choices:
        return f"{arg.name} ({' | '.join(arg.value.choices)})"
    return f"{arg.name} ({arg.value.hint})" if arg.value.hint else arg.name


# --- message helpers ----------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _prompt_needs_separator(spec: VerbSpec, prompt: str) -> bool:
    """Whether parse() would read the prompt's first word as an option or as `--`."""
    try:
        first = _Lexer(prompt).next()
    except Invalid:
        return False
    return first is not None and (first == "--" or _option_key(spec, first) is not None)
