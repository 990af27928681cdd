"""The `/infer` grammar as data: :data:`VERBS` (one :class:`VerbSpec` per verb, with its
arguments and options), the :class:`Kind` of every value and the one checker of each kind.

handlers/parse.py reads this table in one generic pass; usage lines, error messages and
:attr:`Command.text` all come from it, so they cannot drift apart. Pure logic, like the parser:
no Slack, no I/O, standard library only (and ops.cron for crontab syntax).
"""

from __future__ import annotations

import difflib
import enum
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from ops.cron import parse_crontab

COMMAND: Final = "/infer"
AUDIT_DEFAULT: Final = 20
AUDIT_MAX: Final = 200
# Error messages repeat at most this much of a user's value, so one huge argument cannot turn
# into a huge (or truncated-by-Slack) reply.
_SHOWN_CHARS: Final = 80

Role = Literal["viewer", "operator", "approver", "admin"]

# Explicit ASCII classes throughout: \d and str.isdigit() also accept digits such as "３".
_DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
PRESET_ID: Final = re.compile(r"[a-z0-9][a-z0-9.-]{0,99}")
_INSTANCE_TYPE: Final = re.compile(r"[a-z][a-z0-9-]{0,30}\.[a-z0-9-]{1,30}")
# Nine digits keep int() far from its digit limit (a ValueError) and from absurd values.
_WHOLE_NUMBER: Final = re.compile(r"[0-9]{1,9}")
_DECIMAL: Final = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")
_TIME_ZONE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,31}(?:/[A-Za-z0-9_+\-]{1,31}){0,2}")


class Invalid(Exception):
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


# --- value checkers -----------------------------------------------------------------------------


def check_value(value: Value, given: str, max_replicas: int) -> str:
    """The normalised form of ``given``, or Invalid naming what is wrong with it."""
    return _CHECKERS[value.kind](value, given, max_replicas)


def _check_dns_label(value: Value, given: str, max_replicas: int) -> str:
    if _DNS_LABEL.fullmatch(given):
        return given
    raise Invalid(
        f"{shown(given)} is not a valid {value.label}: use lowercase letters, digits and '-', "
        "starting and ending with a letter or digit, at most 63 characters"
    )


def _check_preset(value: Value, given: str, max_replicas: int) -> str:
    if PRESET_ID.fullmatch(given):
        return given
    raise Invalid(
        f"{shown(given)} is not a valid {value.label}: use lowercase letters, digits, '-' and '.', "
        f"starting with a letter or digit, at most 100 characters (`{COMMAND} models` lists them)"
    )


def _check_instance(value: Value, given: str, max_replicas: int) -> str:
    if _INSTANCE_TYPE.fullmatch(given):
        return given
    raise Invalid(f"{shown(given)} is not a valid {value.label}: expected an EC2 type such as g5.xlarge")


def _check_integer(value: Value, given: str, max_replicas: int) -> str:
    high = max_replicas if value.capped else value.high
    if _WHOLE_NUMBER.fullmatch(given):
        number = int(given)
        if number >= value.low and (high is None or number <= high):
            return str(number)
    bounds = f"from {value.low} to {high}" if high is not None else f"of at least {value.low}"
    raise Invalid(f"{value.label} must be a whole number {bounds}, got {shown(given)}")


def _check_number(value: Value, given: str, max_replicas: int) -> str:
    if _DECIMAL.fullmatch(given) and float(given) > 0:
        return given
    raise Invalid(f"{value.label} must be a positive number such as 5 or 0.75, got {shown(given)}")


def _check_choice(value: Value, given: str, max_replicas: int) -> str:
    lowered = ascii_lower(given)
    if lowered in value.choices:
        return lowered
    raise Invalid(f"{shown(given)} is not a valid {value.label}: use {' or '.join(value.choices)}")


def _check_verb(value: Value, given: str, max_replicas: int) -> str:
    lowered = ascii_lower(given)
    if lowered in VERBS:
        return lowered
    raise Invalid(unknown_verb(given))


def _check_time_zone(value: Value, given: str, max_replicas: int) -> str:
    # Only the shape: whether the zone exists is a tz-database lookup, which is I/O.
    if _TIME_ZONE.fullmatch(given):
        return given
    raise Invalid(f"{shown(given)} is not a valid {value.label}: use a name such as UTC or Europe/Paris")


def _check_text(value: Value, given: str, max_replicas: int) -> str:
    return given


def _check_cron(value: Value, given: str, max_replicas: int) -> str:
    try:
        parse_crontab(given, shown=shown)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return " ".join(ascii_lower(given).split())


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
        raise Invalid(f"min={options['min']} is greater than max={options['max']}")


def _check_schedule(args: tuple[str, ...], options: Mapping[str, str]) -> None:
    # `schedule list` and `schedule <name> replicas= cron=` share the verb; cluster= is not in options.
    if args and args[0] == "list":
        if options:
            raise Invalid(f"`schedule list` takes only `cluster=`, not {', '.join(f'`{k}=`' for k in options)}")
        return
    missing = [f"`{key}=`" for key in ("replicas", "cron") if key not in options]
    if missing:
        raise Invalid(f"missing required option{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                      '(e.g. replicas=0 cron="0 20 * * 1-5")')


# --- message helpers ----------------------------------------------------------------------------


def ascii_lower(text: str) -> str:
    # Non-ASCII text keeps its case: str.lower() maps e.g. the Kelvin sign to "k", which would let
    # look-alike characters reach a verb or option.
    return text.lower() if text.isascii() else text


def shown(value: str) -> str:
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


def unknown_verb(token: str) -> str:
    # A prefix is plenty to find a near miss, and keeps difflib's work small for huge input.
    close = difflib.get_close_matches(ascii_lower(token[:32]), list(VERBS), n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return f"unknown verb {shown(token)}.{hint} `{COMMAND} help` lists the verbs."


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
        _verb(
            "clusters", "[cluster]", "list the clusters, or check what one has and lacks", "viewer",
            args=(Arg("cluster", _CLUSTER_NAME, required=False),),
        ),
        _verb("models", "", "list the model presets that can be deployed", "viewer"),
        _verb(
            "status", "[name] [namespace=]", "show the deployments, or one of them in detail", "viewer",
            args=(Arg("name", _RELEASE, required=False),), options=(_NAMESPACE_OPTION,),
        ),
        _verb(
            "deploy", "<preset> [name=] [replicas=] [namespace=] [instance=] [set.<key>=<value> …]",
            "deploy a model preset (alone: opens a form with fit and price per instance)", "operator",
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
        _verb(
            "schedule", '<name> replicas=<n> cron="<cron>" [tz=<zone>] [until=<date>] [namespace=] | list',
            "scale a deployment on a cron schedule (approved once), or list schedules", "operator",
            args=(_RELEASE_ARG,),
            options=(
                Option("replicas", _REPLICAS),
                Option("cron", _CRON),
                Option("tz", _TZ),
                Option("until", Value(Kind.TEXT, "until", hint="a date such as 2027-03-31")),
                _NAMESPACE_OPTION,
            ),
            check=_check_schedule,
        ),
        _verb(
            "unschedule", "<id>", "remove a replica schedule (`schedule list` shows the ids)", "operator",
            args=(Arg("id", Value(Kind.INTEGER, "schedule id", low=1)),),
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
