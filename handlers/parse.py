"""The `/infer` slash grammar: command text in, a validated :class:`Command` out.

Handlers get their input only from :func:`parse`, so the grammar lives in one place (as Atlantis
keeps its own in ``comment_parser.go``) and no handler looks at raw text. The grammar is data,
:data:`VERBS`, read by one generic pass; usage lines, error messages and :attr:`Command.text`
all come from that table, so they cannot drift apart.

Pure logic on purpose: no Slack, no I/O, standard library only. Whatever a user types ends in
either a ``Command`` or a :class:`UsageError` whose message is short and safe to post back.

Details of the grammar that ARCHITECTURE.md leaves open:

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

import difflib
import enum
import re
import shlex
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from ops.cron import parse_crontab

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

COMMAND: Final = "/infer"
GENERAL_USAGE: Final = f"{COMMAND} <verb> [arguments] [key=value …]  (`{COMMAND} help` lists the verbs)"
DEFAULT_MAX_REPLICAS: Final = 20
AUDIT_DEFAULT: Final = 20
AUDIT_MAX: Final = 200
# Far above anything Slack sends, yet it bounds the work of the character-by-character tokenizer
# for text that arrives another way (the console, a misbehaving client).
MAX_TEXT_CHARS: Final = 100_000
# Error messages repeat at most this much of a user's value, so one huge argument cannot turn
# into a huge (or truncated-by-Slack) reply.
_SHOWN_CHARS: Final = 80

Role = Literal["viewer", "operator", "approver", "admin"]

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

# Explicit ASCII classes throughout: \d and str.isdigit() also accept digits such as "３".
_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_PRESET_ID: Final = re.compile(r"[a-z0-9][a-z0-9.-]{0,99}")
_INSTANCE_TYPE: Final = re.compile(r"[a-z][a-z0-9-]{0,30}\.[a-z0-9-]{1,30}")
# Nine digits keep int() far from its digit limit (a ValueError) and from absurd values.
_WHOLE_NUMBER: Final = re.compile(r"[0-9]{1,9}")
_DECIMAL: Final = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")
_SET_KEY: Final = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,200}")
_TIME_ZONE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,31}(?:/[A-Za-z0-9_+\-]{1,31}){0,2}")
# Options that carry free-form keys, and the one verb that takes each.
_PREFIX_OWNERS: Final = {"set.": "deploy", "var.": "provision"}


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


class _Invalid(Exception):
    """A user error found below parse(); parse() turns it into a UsageError with the usage line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Kind(enum.Enum):
    """How a value is checked; each kind has exactly one checker."""

    NAME = "name"  # a Kubernetes DNS-1123 label: release names, namespaces
    CLUSTER = "cluster"  # a DNS label too, and it fills Command.cluster
    PRESET = "preset"
    INSTANCE = "instance"
    INTEGER = "integer"
    NUMBER = "number"
    CHOICE = "choice"
    VERB = "verb"
    CRON = "cron"
    TIME_ZONE = "time_zone"
    TEXT = "text"  # anything; used for the prompt of `test`


@dataclass(frozen=True)
class Value:
    """What one argument or option value must look like."""

    kind: Kind
    label: str  # what messages call it
    low: int = 0
    high: int | None = None
    # The upper bound is parse()'s max_replicas, which is configuration and known only per call.
    capped: bool = False
    choices: tuple[str, ...] = ()
    hint: str = ""  # shown when the value is missing


@dataclass(frozen=True)
class Arg:
    """One positional argument."""

    name: str
    value: Value
    required: bool = True
    default: str | None = None
    # "words": takes all remaining words (a cron given unquoted); "raw": the rest of the text verbatim.
    rest: Literal["words", "raw"] | None = None
    # Applies only when the first argument has this value (the cron of `digest subscribe`).
    when: str | None = None


@dataclass(frozen=True)
class Option:
    """One key=value option."""

    key: str
    value: Value
    required: bool = False
    when: str | None = None  # as Arg.when


@dataclass(frozen=True)
class VerbSpec:
    """The grammar of one verb."""

    name: str
    usage: str
    summary: str
    # The least role that may run the verb: a hint for help and defaults; bot's policy decides.
    role: Role
    args: tuple[Arg, ...]
    options: Mapping[str, Option]  # includes cluster=, which every verb accepts
    set_prefix: str | None = None  # "set." (deploy) or "var." (provision)
    check: Callable[[tuple[str, ...], Mapping[str, str]], None] | None = None  # cross-field rules

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(arg.name for arg in self.args)

    @property
    def option_keys(self) -> tuple[str, ...]:
        return tuple(self.options)

    def applicable_args(self, first: str | None) -> tuple[Arg, ...]:
        """The positional arguments that apply when the first argument is ``first``."""
        return tuple(arg for arg in self.args if arg.when is None or arg.when == first)


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
    except _Invalid as exc:
        raise UsageError(exc.message) from None
    if first is None:
        return Command("help")
    spec = VERBS.get(_ascii_lower(first))
    if spec is None:
        raise UsageError(_unknown_verb(first))
    try:
        return _parse_verb(spec, raw, lexer, max_replicas)
    except _Invalid as exc:
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
                raise _Invalid("unbalanced quote: a \" or ' is opened but never closed") from None
            raise _Invalid("the text ends with a lone backslash") from None


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
                raise _Invalid(f"two clusters given: {_shown(value)} and cluster={_shown(cluster)}")
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
            except _Invalid:
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
    lowered = _ascii_lower(key)
    if not sep:
        return None
    if lowered in spec.options or (spec.set_prefix is not None and lowered.startswith(spec.set_prefix)):
        return lowered
    return None


def _take_option(spec: VerbSpec, token: str, given: dict[str, str], sets: dict[str, str]) -> None:
    key, _, value = token.partition("=")
    if not key:
        raise _Invalid(f"{_shown(token)} has no option name before the `=`")
    lowered = _ascii_lower(key)
    for prefix, owner in _PREFIX_OWNERS.items():
        if not lowered.startswith(prefix):
            continue
        if spec.set_prefix != prefix:
            raise _Invalid(f"`{prefix}KEY=` options only work with `{owner}`, not `{spec.name}`")
        name = key[len(prefix) :]
        if not _SET_KEY.fullmatch(name):
            raise _Invalid(
                f"{_shown(key + '=')} has an invalid key: after `{prefix}` use 1 to 200 letters, "
                "digits, or `_ . - [ ]`"
            )
        if name in sets:
            raise _Invalid(f"{_shown(prefix + name + '=')} is given twice")
        sets[name] = value
        return
    if lowered not in spec.options:
        allowed = [f"`{option}=`" for option in spec.options]
        if spec.set_prefix is not None:
            allowed.append(f"`{spec.set_prefix}KEY=`")
        raise _Invalid(f"unknown option {_shown(key + '=')} for `{spec.name}`; it accepts {', '.join(allowed)}")
    if lowered in given:
        raise _Invalid(f"`{lowered}=` is given twice")
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
        values.append(_check(arg.value, value, max_replicas))
    if missing:
        noun = "argument" if len(missing) == 1 else "arguments"
        raise _Invalid(f"missing {noun}: {', '.join(missing)}")
    if pending:
        takes = [arg.name for arg in spec.applicable_args(values[0] if values else None)]
        expected = f"`{spec.name}` takes {', '.join(takes)}" if takes else f"`{spec.name}` takes no arguments"
        raise _Invalid(f"unexpected argument {_shown(pending[0])}: {expected}")
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
            raise _Invalid(f"`{key}=` only applies to `{spec.name} {option.when}`")
        checked[key] = _check(option.value, given[key], max_replicas)
    if missing:
        noun = "option" if len(missing) == 1 else "options"
        raise _Invalid(f"missing required {noun} {', '.join(missing)}")
    return checked


def _describe(arg: Arg) -> str:
    if arg.value.choices:
        return f"{arg.name} ({' | '.join(arg.value.choices)})"
    return f"{arg.name} ({arg.value.hint})" if arg.value.hint else arg.name


# --- value checkers -----------------------------------------------------------------------------


def _check(value: Value, given: str, max_replicas: int) -> str:
    """The normalised form of ``given``, or _Invalid naming what is wrong with it."""
    return _CHECKERS[value.kind](value, given, max_replicas)


def _check_dns_label(value: Value, given: str, max_replicas: int) -> str:
    if _DNS_LABEL.fullmatch(given):
        return given
    raise _Invalid(
        f"{_shown(given)} is not a valid {value.label}: use lowercase letters, digits and '-', "
        "starting and ending with a letter or digit, at most 63 characters"
    )


def _check_preset(value: Value, given: str, max_replicas: int) -> str:
    if _PRESET_ID.fullmatch(given):
        return given
    raise _Invalid(
        f"{_shown(given)} is not a valid {value.label}: use lowercase letters, digits, '-' and '.', "
        f"starting with a letter or digit, at most 100 characters (`{COMMAND} models` lists them)"
    )


def _check_instance(value: Value, given: str, max_replicas: int) -> str:
    if _INSTANCE_TYPE.fullmatch(given):
        return given
    raise _Invalid(f"{_shown(given)} is not a valid {value.label}: expected an EC2 type such as g5.xlarge")


def _check_integer(value: Value, given: str, max_replicas: int) -> str:
    high = max_replicas if value.capped else value.high
    if _WHOLE_NUMBER.fullmatch(given):
        number = int(given)
        if number >= value.low and (high is None or number <= high):
            return str(number)
    bounds = f"from {value.low} to {high}" if high is not None else f"of at least {value.low}"
    raise _Invalid(f"{value.label} must be a whole number {bounds}, got {_shown(given)}")


def _check_number(value: Value, given: str, max_replicas: int) -> str:
    if _DECIMAL.fullmatch(given) and float(given) > 0:
        return given
    raise _Invalid(f"{value.label} must be a positive number such as 5 or 0.75, got {_shown(given)}")


def _check_choice(value: Value, given: str, max_replicas: int) -> str:
    lowered = _ascii_lower(given)
    if lowered in value.choices:
        return lowered
    raise _Invalid(f"{_shown(given)} is not a valid {value.label}: use {' or '.join(value.choices)}")


def _check_verb(value: Value, given: str, max_replicas: int) -> str:
    lowered = _ascii_lower(given)
    if lowered in VERBS:
        return lowered
    raise _Invalid(_unknown_verb(given))


def _check_time_zone(value: Value, given: str, max_replicas: int) -> str:
    # Only the shape: whether the zone exists is a tz-database lookup, which is I/O.
    if _TIME_ZONE.fullmatch(given):
        return given
    raise _Invalid(f"{_shown(given)} is not a valid {value.label}: use a name such as UTC or Europe/Paris")


def _check_text(value: Value, given: str, max_replicas: int) -> str:
    return given


def _check_cron(value: Value, given: str, max_replicas: int) -> str:
    try:
        parse_crontab(given, shown=_shown)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return " ".join(_ascii_lower(given).split())


_CHECKERS: Final[dict[Kind, Callable[[Value, str, int], str]]] = {
    Kind.NAME: _check_dns_label,
    Kind.CLUSTER: _check_dns_label,
    Kind.PRESET: _check_preset,
    Kind.INSTANCE: _check_instance,
    Kind.INTEGER: _check_integer,
    Kind.NUMBER: _check_number,
    Kind.CHOICE: _check_choice,
    Kind.VERB: _check_verb,
    Kind.CRON: _check_cron,
    Kind.TIME_ZONE: _check_time_zone,
    Kind.TEXT: _check_text,
}


def _check_autoscale(args: tuple[str, ...], options: Mapping[str, str]) -> None:
    if int(options["min"]) > int(options["max"]):
        raise _Invalid(f"min={options['min']} is greater than max={options['max']}")


# --- message helpers ----------------------------------------------------------------------------


def _ascii_lower(text: str) -> str:
    # Non-ASCII text keeps its case: str.lower() maps e.g. the Kelvin sign to "k", which would let
    # look-alike characters reach a verb or option.
    return text.lower() if text.isascii() else text


def _shown(value: str) -> str:
    """``value`` ready to quote in a message: bounded, no mention syntax, no invisible characters."""
    if not value:
        return "(empty)"
    chars: list[str] = []
    for char in value:
        # < and > would let "<!channel>" ping a channel; a backtick would end the code span.
        if char in "<>`":
            continue
        chars.append("\ufffd" if unicodedata.category(char).startswith("C") else char)
        if len(chars) > _SHOWN_CHARS:
            chars[_SHOWN_CHARS - 1 :] = ["…"]
            break
    return f"`{''.join(chars)}`" if chars else "(unprintable)"


def _unknown_verb(token: str) -> str:
    # A prefix is plenty to find a near miss, and keeps difflib's work small for huge input.
    close = difflib.get_close_matches(_ascii_lower(token[:32]), list(VERBS), n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return f"unknown verb {_shown(token)}.{hint} `{COMMAND} help` lists the verbs."


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _prompt_needs_separator(spec: VerbSpec, prompt: str) -> bool:
    """Whether parse() would read the prompt's first word as an option or as `--`."""
    try:
        first = _Lexer(prompt).next()
    except _Invalid:
        return False
    return first is not None and (first == "--" or _option_key(spec, first) is not None)


# --- the grammar --------------------------------------------------------------------------------

_RELEASE: Final = Value(Kind.NAME, "release name")
_NAMESPACE: Final = Value(Kind.NAME, "namespace")
_CLUSTER_NAME: Final = Value(Kind.CLUSTER, "cluster name")
_PRESET: Final = Value(Kind.PRESET, "preset id")
_INSTANCE: Final = Value(Kind.INSTANCE, "instance type")
_REPLICAS: Final = Value(Kind.INTEGER, "replicas", low=0, capped=True)
_MIN: Final = Value(Kind.INTEGER, "min", low=0, capped=True)
_MAX: Final = Value(Kind.INTEGER, "max", low=1, capped=True)
_REVISION: Final = Value(Kind.INTEGER, "revision", low=1)
_AUDIT_N: Final = Value(Kind.INTEGER, "n", low=1, high=AUDIT_MAX)
_METRIC: Final = Value(Kind.CHOICE, "metric", choices=("queue", "cpu"))
_TARGET: Final = Value(Kind.NUMBER, "target")
_VERB: Final = Value(Kind.VERB, "verb")
_DIGEST_ACTION: Final = Value(Kind.CHOICE, "digest action", choices=("now", "subscribe", "unsubscribe", "list"))
_CRON: Final = Value(Kind.CRON, "cron schedule", hint='5 fields, e.g. "0 9 * * *"')
_TZ: Final = Value(Kind.TIME_ZONE, "time zone")
_DIGEST_SORT: Final = Value(Kind.CHOICE, "sort", choices=("severity", "cost"))
_SECRET: Final = Value(Kind.CHOICE, "secret", choices=("hf-token",))
_PROMPT: Final = Value(Kind.TEXT, "prompt")

_CLUSTER_OPTION: Final = Option("cluster", _CLUSTER_NAME)
_NAMESPACE_OPTION: Final = Option("namespace", _NAMESPACE)
_RELEASE_ARG: Final = Arg("name", _RELEASE)
_CLUSTER_ARG: Final = Arg("cluster", _CLUSTER_NAME)


def _verb(
    name: str,
    grammar: str,
    summary: str,
    role: Role,
    *,
    args: tuple[Arg, ...] = (),
    options: tuple[Option, ...] = (),
    set_prefix: str | None = None,
    check: Callable[[tuple[str, ...], Mapping[str, str]], None] | None = None,
) -> VerbSpec:
    # cluster= is accepted everywhere; the usage line mentions it unless a positional <cluster> makes
    # it redundant, or the grammar already places it (before the prompt of `test`).
    implicit = any(arg.value.kind is Kind.CLUSTER for arg in args) or "[cluster=]" in grammar
    usage = " ".join(part for part in (COMMAND, name, grammar, "" if implicit else "[cluster=]") if part)
    table = MappingProxyType({option.key: option for option in (*options, _CLUSTER_OPTION)})
    return VerbSpec(name, usage, summary, role, args, table, set_prefix, check)


VERBS: Final[dict[str, VerbSpec]] = {
    spec.name: spec
    for spec in (
        _verb(
            "help", "[verb]", "list the verbs, or show one verb's usage", "viewer",
            args=(Arg("verb", _VERB, required=False),),
        ),
        _verb("clusters", "", "list the configured clusters", "viewer"),
        _verb("models", "", "list the model presets that can be deployed", "viewer"),
        _verb(
            "status", "[name] [namespace=]", "show the deployments, or one of them in detail", "viewer",
            args=(Arg("name", _RELEASE, required=False),), options=(_NAMESPACE_OPTION,),
        ),
        _verb(
            "deploy", "<preset> [name=] [replicas=] [namespace=] [instance=] [set.<key>=<value> …]",
            "deploy a model preset", "operator",
            args=(Arg("preset", _PRESET),),
            options=(
                Option("name", _RELEASE),
                Option("replicas", _REPLICAS),
                _NAMESPACE_OPTION,
                Option("instance", _INSTANCE),
            ),
            set_prefix="set.",
        ),
        _verb(
            "scale", "<name> <replicas> [namespace=]", "set the replica count of a deployment", "operator",
            args=(_RELEASE_ARG, Arg("replicas", _REPLICAS)), options=(_NAMESPACE_OPTION,),
        ),
        _verb(
            "autoscale", "<name> min=<n> max=<n> [metric=queue|cpu] [target=<number>] [namespace=]",
            "set the autoscaling bounds of a deployment", "operator",
            args=(_RELEASE_ARG,),
            options=(
                Option("min", _MIN, required=True),
                Option("max", _MAX, required=True),
                Option("metric", _METRIC),
                Option("target", _TARGET),
                _NAMESPACE_OPTION,
            ),
            check=_check_autoscale,
        ),
        _verb(
            "undeploy", "<name> [namespace=]", "remove a deployment", "operator",
            args=(_RELEASE_ARG,), options=(_NAMESPACE_OPTION,),
        ),
        _verb(
            "rollback", "<name> [revision=<n>] [namespace=]",
            "roll a deployment back to a previous revision", "operator",
            args=(_RELEASE_ARG,), options=(Option("revision", _REVISION), _NAMESPACE_OPTION),
        ),
        _verb(
            "test", "<name> [namespace=] [cluster=] <prompt…>", "send a prompt to a deployment and show the answer",
            "operator",
            args=(_RELEASE_ARG, Arg("prompt", _PROMPT, rest="raw")), options=(_NAMESPACE_OPTION,),
        ),
        _verb(
            "metrics", "<name> [namespace=]", "show the latency, throughput and GPU use of a deployment",
            "viewer",
            args=(_RELEASE_ARG,), options=(_NAMESPACE_OPTION,),
        ),
        _verb(
            "provision", "<cluster> [var.<key>=<value> …]",
            "create or update an inference-ready EKS cluster (Terraform)", "admin",
            args=(_CLUSTER_ARG,), set_prefix="var.",
        ),
        _verb(
            "destroy", "<cluster>", "destroy a cluster and everything on it", "admin",
            args=(_CLUSTER_ARG,),
        ),
        _verb(
            "drift", "<cluster>", "compare a cluster with its Terraform configuration (no changes)",
            "operator",
            args=(_CLUSTER_ARG,),
        ),
        _verb(
            "digest", "now [sort=severity|cost] | subscribe <cron> [tz=<zone>] | unsubscribe | list",
            "post the efficiency digest now, or manage this channel's schedule", "operator",
            args=(Arg("action", _DIGEST_ACTION), Arg("cron", _CRON, rest="words", when="subscribe")),
            options=(Option("tz", _TZ, when="subscribe"), Option("sort", _DIGEST_SORT, when="now")),
        ),
        _verb("approvals", "", "list the changes waiting for approval", "viewer"),
        _verb("ops", "", "list running and recent operations", "viewer"),
        _verb(
            "audit", "[n]", f"show the last n audit entries (default {AUDIT_DEFAULT}, at most {AUDIT_MAX})",
            "approver",
            args=(Arg("n", _AUDIT_N, required=False, default=str(AUDIT_DEFAULT)),),
        ),
        _verb(
            "secret", "hf-token", "set the Hugging Face token used to pull gated models", "admin",
            args=(Arg("name", _SECRET),),
        ),
    )
}
