"""Tests for handlers/parse.py: the `/infer` grammar, its error messages, and properties over any text."""

from __future__ import annotations

import pickle
import re
import shlex
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.parse import (
    GENERAL_USAGE,
    MAX_TEXT_CHARS,
    VERBS,
    Command,
    Kind,
    UsageError,
    Value,
    parse,
    usage_lines,
)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
SMART_QUOTES = "\u201c\u201d\u201e\u201f\u2018\u2019\u201a\u201b"
# ARCHITECTURE.md's "Slash grammar", plus `secret hf-token` from the brief.
CONTRACT_VERBS = {
    "help", "clusters", "models", "status", "deploy", "scale", "autoscale", "undeploy", "rollback",
    "test", "metrics", "provision", "destroy", "drift", "digest", "approvals", "ops", "audit", "secret",
    "schedule", "unschedule",
}
RELEASE_VERBS = {"status", "scale", "autoscale", "undeploy", "rollback", "test", "metrics", "deploy", "schedule"}


def cmd(verb, *args, cluster=None, sets=None, **options):
    return Command(verb, args, options, sets or {}, cluster)


def check_outcome(text, max_replicas=20):
    """parse() either returns a well-formed Command or raises a well-formed UsageError."""
    try:
        command = parse(text, max_replicas=max_replicas)
    except UsageError as exc:
        assert 0 < len(exc.message) < 300, exc.message
        assert "<" not in exc.message and ">" not in exc.message, exc.message
        assert str(exc) == exc.message
        assert exc.verb is None or exc.verb in VERBS
        assert exc.usage == (VERBS[exc.verb].usage if exc.verb else GENERAL_USAGE)
        return None
    spec = VERBS[command.verb]
    assert set(command.options) <= set(spec.option_keys) - {"cluster"}
    assert not command.sets or spec.set_prefix is not None
    assert command.cluster is None or DNS_LABEL.fullmatch(command.cluster)
    return command


# --- valid forms ---------------------------------------------------------------------------------

VALID = [
    ("", cmd("help")),
    ("   \t ", cmd("help")),
    ("help", cmd("help")),
    ("HELP Scale", cmd("help", "scale")),
    ("clusters", cmd("clusters")),
    ("clusters cluster=dev", cmd("clusters", cluster="dev")),
    ("clusters dev", cmd("clusters", "dev", cluster="dev")),
    ("models", cmd("models")),
    ("approvals", cmd("approvals")),
    ("ops cluster=prod", cmd("ops", cluster="prod")),
    ("status", cmd("status")),
    ("status qwen", cmd("status", "qwen")),
    ("status qwen namespace=ml cluster=dev", cmd("status", "qwen", namespace="ml", cluster="dev")),
    ("deploy qwen3-1.7b-vllm", cmd("deploy", "qwen3-1.7b-vllm")),
    (
        "deploy llama-32-1b-vllm name=llama replicas=2 namespace=ml instance=g5.xlarge cluster=dev "
        "set.image.tag=v1 set.args[0]=--max-model-len=4096 SET.Env.HF_HOME=/cache",
        cmd(
            "deploy", "llama-32-1b-vllm", cluster="dev", name="llama", replicas="2", namespace="ml",
            instance="g5.xlarge",
            sets={"image.tag": "v1", "args[0]": "--max-model-len=4096", "Env.HF_HOME": "/cache"},
        ),
    ),
    ("deploy p set.note='a # b'", cmd("deploy", "p", sets={"note": "a # b"})),
    ("deploy p set.empty=", cmd("deploy", "p", sets={"empty": ""})),
    ("scale qwen 3", cmd("scale", "qwen", "3")),
    ("scale qwen 0", cmd("scale", "qwen", "0")),
    ("scale qwen 20", cmd("scale", "qwen", "20")),
    ("SCALE qwen 007", cmd("scale", "qwen", "7")),
    ("scale Cluster=dev qwen Namespace=ml 3", cmd("scale", "qwen", "3", cluster="dev", namespace="ml")),
    ("autoscale qwen min=0 max=4", cmd("autoscale", "qwen", min="0", max="4")),
    (
        "autoscale qwen max=20 min=2 metric=Queue target=0.75 namespace=ml",
        cmd("autoscale", "qwen", min="2", max="20", metric="queue", target="0.75", namespace="ml"),
    ),
    ("autoscale qwen min=3 max=3 metric=cpu target=70", cmd("autoscale", "qwen", min="3", max="3", metric="cpu",
                                                             target="70")),
    ("undeploy qwen", cmd("undeploy", "qwen")),
    ("undeploy qwen namespace=ml", cmd("undeploy", "qwen", namespace="ml")),
    ("rollback qwen", cmd("rollback", "qwen")),
    ("rollback qwen revision=3", cmd("rollback", "qwen", revision="3")),
    ("test qwen hello world", cmd("test", "qwen", "hello world")),
    (
        "test qwen  What's 2+2? Answer with x=4 and \"quotes\" \\n  ",
        cmd("test", "qwen", "What's 2+2? Answer with x=4 and \"quotes\" \\n"),
    ),
    ("test qwen cluster=dev namespace=ml say hi", cmd("test", "qwen", "say hi", cluster="dev", namespace="ml")),
    ("test cluster=dev qwen say hi", cmd("test", "qwen", "say hi", cluster="dev")),
    ("test qwen temperature=0 hi", cmd("test", "qwen", "temperature=0 hi")),
    ("test qwen -- cluster=x is part of the prompt", cmd("test", "qwen", "cluster=x is part of the prompt")),
    ("test qwen set.x=1", cmd("test", "qwen", "set.x=1")),
    ("test qwen \u201chi\u201d, it\u2019s me", cmd("test", "qwen", "\u201chi\u201d, it\u2019s me")),
    ("test qwen a &amp; b &lt;tag&gt;", cmd("test", "qwen", "a & b <tag>")),
    ("metrics qwen", cmd("metrics", "qwen")),
    ("provision dev", cmd("provision", "dev", cluster="dev")),
    (
        "provision dev var.region=us-west-2 var.node_count=3",
        cmd("provision", "dev", cluster="dev", sets={"region": "us-west-2", "node_count": "3"}),
    ),
    ("destroy dev", cmd("destroy", "dev", cluster="dev")),
    ("destroy dev cluster=dev", cmd("destroy", "dev", cluster="dev")),
    ("drift dev", cmd("drift", "dev", cluster="dev")),
    ("digest now", cmd("digest", "now")),
    ("digest LIST", cmd("digest", "list")),
    ("digest unsubscribe cluster=dev", cmd("digest", "unsubscribe", cluster="dev")),
    ('digest subscribe "0 9 * * *"', cmd("digest", "subscribe", "0 9 * * *")),
    ("digest subscribe \u201c0  9 * * *\u201d", cmd("digest", "subscribe", "0 9 * * *")),
    (
        "digest subscribe 0 9 * * 1-5 tz=Europe/Paris",
        cmd("digest", "subscribe", "0 9 * * 1-5", tz="Europe/Paris"),
    ),
    (
        "digest subscribe '*/15 8-18/2 1,15 JAN-jun MON,fri'",
        cmd("digest", "subscribe", "*/15 8-18/2 1,15 jan-jun mon,fri"),
    ),
    ("digest subscribe 0 0 31 12 7", cmd("digest", "subscribe", "0 0 31 12 7")),
    ("audit", cmd("audit", "20")),
    ("audit 5", cmd("audit", "5")),
    ("audit 200", cmd("audit", "200")),
    ("secret hf-token", cmd("secret", "hf-token")),
    (
        'schedule qwen replicas=0 cron="0 20 * * 1-5" tz=Europe/Paris until=2027-03-31',
        cmd("schedule", "qwen", replicas="0", cron="0 20 * * 1-5", tz="Europe/Paris", until="2027-03-31"),
    ),
    ("schedule list cluster=dev", cmd("schedule", "list", cluster="dev")),
    ("unschedule 3", cmd("unschedule", "3")),
    ("secret HF-Token", cmd("secret", "hf-token")),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[text or "<empty>" for text, _ in VALID])
def test_valid_forms(text, expected):
    command = parse(text)
    assert command == expected
    assert command.usage == VERBS[expected.verb].usage
    # The canonical text is itself a valid spelling of the same command.
    assert parse(command.text) == command


def test_every_verb_has_a_valid_form():
    assert {expected.verb for _, expected in VALID} == set(VERBS)


# --- errors --------------------------------------------------------------------------------------

ERRORS = [
    # unknown verbs
    ("scael qwen 3", None, ["unknown verb", "`scael`", "`scale`", "/infer help"]),
    ("frobnicate", None, ["unknown verb", "`frobnicate`", "/infer help"]),
    ("cluster=dev", None, ["unknown verb", "`cluster=dev`"]),
    ("help frobnicate", "help", ["unknown verb", "`frobnicate`"]),
    # tokenizing
    ("'scale qwen 3", None, ["unbalanced quote"]),
    ("scale 'qwen 3", "scale", ["unbalanced quote"]),
    ("scale qwen \u201c3", "scale", ["unbalanced quote"]),
    ("scale qwen 3 \\", "scale", ["backslash"]),
    # options
    ("scale qwen 3 foo=1", "scale", ["unknown option", "`foo=`", "`namespace=`", "`cluster=`"]),
    ("scale qwen 3 replicas=2", "scale", ["unknown option", "`replicas=`"]),
    ("deploy p colour=red", "deploy", ["`colour=`", "`replicas=`", "`set.KEY=`"]),
    ("clusters namespace=ml", "clusters", ["unknown option", "`namespace=`", "`cluster=`"]),
    ("scale qwen 3 =x", "scale", ["no option name", "`=x`"]),
    ("scale qwen 3 cluster=a cluster=b", "scale", ["`cluster=`", "twice"]),
    ("scale qwen 3 Cluster=a cluster=a", "scale", ["`cluster=`", "twice"]),
    ("deploy p set.a=1 set.a=2", "deploy", ["`set.a=`", "twice"]),
    ("scale qwen 3 set.x=1", "scale", ["`set.KEY=`", "`deploy`"]),
    ("deploy p var.x=1", "deploy", ["`var.KEY=`", "`provision`"]),
    ("provision dev set.x=1", "provision", ["`set.KEY=`", "`deploy`"]),
    ("deploy p set.=1", "deploy", ["`set.=`", "invalid key"]),
    ("deploy p set.a$b=1", "deploy", ["`set.a$b=`", "invalid key"]),
    ("deploy p 'set.a b=1'", "deploy", ["`set.a b=`", "invalid key"]),
    ("test qwen cluster=a cluster=b hi", "test", ["`cluster=`", "twice"]),
    ("test foo=bar qwen hi", "test", ["unknown option", "`foo=`"]),
    # names
    ("scale Qwen 3", "scale", ["`Qwen`", "release name", "63"]),
    ("scale -qwen 3", "scale", ["`-qwen`", "release name"]),
    ("scale qwen- 3", "scale", ["`qwen-`", "release name"]),
    ("scale q_wen 3", "scale", ["`q_wen`", "release name"]),
    ("scale " + "a" * 64 + " 3", "scale", ["release name", "63"]),
    ("scale '' 3", "scale", ["(empty)", "release name"]),
    ("deploy p name=Big", "deploy", ["`Big`", "release name"]),
    ("status qwen namespace=ML", "status", ["`ML`", "namespace"]),
    ("scale qwen 3 cluster=Dev", "scale", ["`Dev`", "cluster name"]),
    ("provision dev.prod", "provision", ["`dev.prod`", "cluster name"]),
    ("destroy dev cluster=prod", "destroy", ["`dev`", "`prod`"]),
    ("deploy Qwen", "deploy", ["`Qwen`", "preset id"]),
    ("deploy .hidden", "deploy", ["`.hidden`", "preset id"]),
    ("deploy " + "a" * 101, "deploy", ["preset id", "100"]),
    ("deploy p instance=huge", "deploy", ["`huge`", "instance type", "g5.xlarge"]),
    # integers and numbers
    ("scale qwen 21", "scale", ["replicas", "0 to 20", "`21`"]),
    ("scale qwen -1", "scale", ["replicas", "0 to 20", "`-1`"]),
    ("scale qwen +3", "scale", ["replicas", "`+3`"]),
    ("scale qwen \uff13", "scale", ["replicas", "`\uff13`"]),
    ("scale qwen \u0663", "scale", ["replicas", "`\u0663`"]),
    ("scale qwen 1e3", "scale", ["replicas", "`1e3`"]),
    ("scale qwen 3.0", "scale", ["replicas", "`3.0`"]),
    ("scale qwen ' 3'", "scale", ["replicas", "` 3`"]),
    ("scale qwen '3\n'", "scale", ["replicas"]),
    ("scale qwen 99999999999999999999", "scale", ["replicas", "0 to 20"]),
    ("deploy p replicas=21", "deploy", ["replicas", "0 to 20", "`21`"]),
    ("rollback qwen revision=0", "rollback", ["revision", "at least 1", "`0`"]),
    ("rollback qwen revision=two", "rollback", ["revision", "`two`"]),
    ("audit 0", "audit", ["n ", "1 to 200", "`0`"]),
    ("audit 201", "audit", ["n ", "1 to 200", "`201`"]),
    ("autoscale qwen min=1", "autoscale", ["missing", "`max=`"]),
    ("autoscale qwen", "autoscale", ["missing", "`min=`", "`max=`"]),
    ("autoscale qwen min=3 max=2", "autoscale", ["min=3", "max=2"]),
    ("autoscale qwen min=0 max=0", "autoscale", ["max", "1 to 20", "`0`"]),
    ("autoscale qwen min=1 max=21", "autoscale", ["max", "1 to 20", "`21`"]),
    ("autoscale qwen min=-1 max=2", "autoscale", ["min", "0 to 20", "`-1`"]),
    ("autoscale qwen min=1 max=2 metric=gpu", "autoscale", ["`gpu`", "queue or cpu"]),
    ("autoscale qwen min=1 max=2 target=0", "autoscale", ["target", "positive", "`0`"]),
    ("autoscale qwen min=1 max=2 target=0.000", "autoscale", ["target", "positive"]),
    ("autoscale qwen min=1 max=2 target=-1", "autoscale", ["target", "`-1`"]),
    ("autoscale qwen min=1 max=2 target=.5", "autoscale", ["target", "`.5`"]),
    # arity
    ("scale qwen", "scale", ["missing argument", "replicas"]),
    ("scale", "scale", ["missing arguments", "name", "replicas"]),
    ("scale qwen 3 4", "scale", ["unexpected argument", "`4`", "name, replicas"]),
    ("clusters dev extra", "clusters", ["unexpected argument", "`extra`", "takes cluster"]),
    ("clusters dev cluster=prod", "clusters", ["two clusters given", "`dev`", "`prod`"]),
    ("help scale deploy", "help", ["unexpected argument", "`deploy`"]),
    ("schedule qwen replicas=0", "schedule", ["missing required option", "`cron=`"]),
    ('schedule list replicas=0', "schedule", ["`schedule list` takes only `cluster=`", "`replicas=`"]),
    ("unschedule", "unschedule", ["missing argument", "id"]),
    ("undeploy", "undeploy", ["missing argument", "name"]),
    ("test", "test", ["missing arguments", "name", "prompt"]),
    ("test qwen", "test", ["missing argument", "prompt"]),
    ("test qwen cluster=dev", "test", ["missing argument", "prompt"]),
    ("test qwen --  ", "test", ["missing argument", "prompt"]),
    ("destroy", "destroy", ["missing argument", "cluster"]),
    ("drift dev prod", "drift", ["unexpected argument", "`prod`", "cluster"]),
    ("secret", "secret", ["missing argument", "hf-token"]),
    ("secret aws-key", "secret", ["`aws-key`", "hf-token"]),
    # digest
    ("digest", "digest", ["missing argument", "now | subscribe | unsubscribe | list"]),
    ("digest weekly", "digest", ["`weekly`", "now or subscribe"]),
    ("digest subscribe", "digest", ["missing argument", "cron", "0 9 * * *"]),
    ("digest subscribe 0 9 * *", "digest", ["5 fields", "got 4"]),
    ("digest subscribe 0 9 * * * *", "digest", ["5 fields", "got 6"]),
    ("digest subscribe 61 9 * * *", "digest", ["minute", "61", "0-59"]),
    ("digest subscribe 0 24 * * *", "digest", ["hour", "24", "0-23"]),
    ("digest subscribe 0 9 0 * *", "digest", ["day-of-month", "1-31"]),
    ("digest subscribe 0 9 * 13 *", "digest", ["month", "1-12"]),
    ("digest subscribe 0 9 * * 8", "digest", ["day-of-week", "0-7"]),
    ("digest subscribe 0 9 * * fri-mon", "digest", ["day-of-week", "`fri-mon`", "backwards"]),
    ("digest subscribe */0 9 * * *", "digest", ["minute", "step of 0"]),
    ("digest subscribe 0 9 * * xyz", "digest", ["day-of-week", "`xyz`"]),
    ("digest subscribe 0 9 ? * *", "digest", ["day-of-month", "`?`"]),
    ("digest subscribe 0 9 * * * tz='Mars Olympus'", "digest", ["`Mars Olympus`", "time zone"]),
    ("digest now tz=UTC", "digest", ["`tz=`", "digest subscribe"]),
    ("digest now 0 9 * * *", "digest", ["unexpected argument", "`0`"]),
]


@pytest.mark.parametrize(("text", "verb", "fragments"), ERRORS, ids=[text[:60] for text, _, _ in ERRORS])
def test_errors_name_the_problem_and_carry_the_usage(text, verb, fragments):
    with pytest.raises(UsageError) as caught:
        parse(text)
    error = caught.value
    for fragment in fragments:
        assert fragment in error.message
    assert error.verb == verb
    assert error.usage == (VERBS[verb].usage if verb else GENERAL_USAGE)
    check_outcome(text)  # and the message is short and mention-free


def test_every_verb_has_an_error_case():
    assert {verb for _, verb, _ in ERRORS} - {None} >= set(VERBS) - {"models", "approvals", "ops", "metrics"}


# --- input normalisation --------------------------------------------------------------------------


def test_smart_quotes_quote():
    assert parse("deploy p set.greeting=\u201chello world\u201d set.b=\u2018x y\u2019").sets == {
        "greeting": "hello world",
        "b": "x y",
    }


def test_slack_entities_are_decoded_once():
    command = parse("deploy p set.cmd=a&amp;&amp;b set.cmp=&lt;5&gt; set.lit=&amp;lt;")
    assert command.sets == {"cmd": "a&&b", "cmp": "<5>", "lit": "&lt;"}


@pytest.mark.parametrize("space", [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()])
def test_every_unicode_space_separates_words(space):
    assert parse(f"scale{space}qwen{space}{space}3{space}") == cmd("scale", "qwen", "3")
    assert parse(space * 3) == cmd("help")


def test_hash_is_ordinary_text_not_a_comment():
    assert parse("deploy p set.tag=#1").sets == {"tag": "#1"}
    with pytest.raises(UsageError, match="unexpected argument"):
        parse("deploy p #2")


def test_max_replicas_is_configurable():
    assert parse("scale qwen 50", max_replicas=64).args == ("qwen", "50")
    with pytest.raises(UsageError, match="0 to 64"):
        parse("scale qwen 65", max_replicas=64)
    with pytest.raises(UsageError, match="1 to 5"):
        parse("autoscale qwen min=1 max=6", max_replicas=5)
    with pytest.raises(ValueError, match="max_replicas"):
        parse("scale qwen 1", max_replicas=0)


def test_huge_argument_is_truncated_in_the_message():
    with pytest.raises(UsageError) as caught:
        parse("scale " + "a" * 40_000 + " 3")
    message = caught.value.message
    assert len(message) < 300
    assert "a" * 79 + "…" in message
    assert "a" * 81 not in message


def test_over_long_text_is_refused():
    with pytest.raises(UsageError, match="too long"):
        parse("test qwen " + "x" * MAX_TEXT_CHARS)


@pytest.mark.parametrize(
    "text",
    [
        "scale <!channel> 3",
        "scale &lt;!here&gt; 3",
        "<!everyone>",
        "scale qwen 3 <@U123>=1",
        "deploy p set.<!channel>=1",
    ],
)
def test_mentions_are_not_echoed(text):
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert "<" not in caught.value.message and ">" not in caught.value.message
    assert "!" in caught.value.message or "@" in caught.value.message


def test_invisible_characters_are_not_echoed():
    with pytest.raises(UsageError) as caught:
        parse("scale q\x00w\u202ee\x1bn 3")
    message = caught.value.message
    assert not {"\x00", "\u202e", "\x1b"} & set(message)
    assert "\ufffd" in message


def test_backticks_cannot_break_out_of_the_code_span():
    with pytest.raises(UsageError) as caught:
        parse("scale `*bold*` 3")
    assert caught.value.message.startswith("`*bold*` is not")


# --- Command ---------------------------------------------------------------------------------------


def test_command_is_immutable_and_hashable():
    command = parse("deploy p replicas=2 set.a=1 set.b=2")
    with pytest.raises(TypeError):
        command.options["replicas"] = "9"  # type: ignore[index]
    with pytest.raises(TypeError):
        command.sets["a"] = "9"  # type: ignore[index]
    same = cmd("deploy", "p", replicas="2", sets={"b": "2", "a": "1"})
    assert command == same
    assert hash(command) == hash(same)
    assert len({command, same}) == 1


def test_arg_by_name():
    command = parse("scale qwen 3")
    assert command.arg("name") == "qwen"
    assert command.arg("replicas") == "3"
    assert command.arg("prompt") is None
    assert parse("digest subscribe 0 9 * * *").arg("cron") == "0 9 * * *"
    assert parse("digest now").arg("cron") is None


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Scale qwen 03 Cluster=dev", "scale qwen 3 cluster=dev"),
        ("digest subscribe 0 9 * * * tz=UTC", "digest subscribe '0 9 * * *' tz=UTC"),
        ("destroy dev cluster=dev", "destroy dev"),
        ("deploy p set.x='a b' set.y=&amp;", "deploy p set.x='a b' set.y='&amp;'"),
        ("test qwen -- cluster=x hi", "test qwen -- cluster=x hi"),
        ("test qwen -- -- hi", "test qwen -- -- hi"),
        ("test qwen cluster=dev hi &lt;3", "test qwen cluster=dev hi &lt;3"),
        ("audit", "audit 20"),
        ("", "help"),
    ],
)
def test_canonical_text(text, canonical):
    assert parse(text).text == canonical


def test_usage_error_pickles():
    error = UsageError("bad", "usage", "scale")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.usage, copy.verb) == ("bad", "usage", "scale")


# --- the grammar table ---------------------------------------------------------------------------


def test_verbs_match_the_contract():
    assert set(VERBS) == CONTRACT_VERBS
    for name, spec in VERBS.items():
        assert spec.name == name
        assert spec.usage.startswith(f"/infer {name}")
        assert "cluster" in spec.option_keys
        assert spec.role in {"viewer", "operator", "approver", "admin"}
        assert spec.summary and len(spec.summary) < 80
        assert ("namespace" in spec.option_keys) == (name in RELEASE_VERBS)
        assert spec.set_prefix == {"deploy": "set.", "provision": "var."}.get(name)
        for key in spec.option_keys:
            if key != "cluster" or not {"<cluster>", "[cluster]"} & set(spec.usage.split()):
                assert f"{key}=" in spec.usage, (name, key)
        if spec.set_prefix:
            assert spec.set_prefix in spec.usage


def test_usage_lines_cover_every_verb():
    lines = usage_lines()
    assert len(lines) == len(VERBS)
    for line, spec in zip(lines, VERBS.values(), strict=True):
        assert line.startswith(spec.usage) and spec.summary in line


# --- properties ----------------------------------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())  # surrogates and unassigned code points too


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_any_text_gives_a_command_or_a_usage_error(text):
    check_outcome(text)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(VERBS)), st.text(alphabet=ANY_CHARACTER, max_size=60))
def test_any_text_after_a_verb(verb, rest):
    check_outcome(f"{verb} {rest}")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["", "scale ", "test qwen ", "deploy p set.x=", "help ", "digest subscribe "]),
    st.text(min_size=1, max_size=12),
    st.integers(min_value=500, max_value=5_000),
)
def test_very_long_text(prefix, unit, repeat):
    check_outcome(prefix + unit * repeat)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(VERBS)), st.text(alphabet=ANY_CHARACTER, max_size=200))
def test_any_value_in_an_argument_slot_is_bounded_in_the_message(verb, value):
    check_outcome(f"{verb} {shlex.quote(value)} {shlex.quote(value)}=x cluster={shlex.quote(value)}")


SOUP_WORDS = [
    "qwen", "Qwen", "llama-32-1b-vllm", "3", "0", "21", "-1", "007", "cluster=dev", "cluster=Dev",
    "namespace=ml", "name=llama", "replicas=2", "instance=g5.xlarge", "set.image.tag=v1", "'set.x=a b'",
    "var.region=us-west-2", "min=1", "max=4", "metric=cpu", "target=0.5", "revision=2", "tz=UTC",
    "now", "subscribe", "list", "unsubscribe", "9", "*", "*/5", "mon-fri", '"0 9 * * *"', "hf-token",
    "--", "'", '"', "\u201c", "\u2019", "&amp;", "&lt;!channel&gt;", "=", "foo=bar", "\\", "what's",
    "hello", "#", "\u00a0", "\uff13",
]


@st.composite
def token_soup(draw):
    verb = draw(st.sampled_from([*VERBS, *(v.upper() for v in VERBS), "", "halp"]))
    words = draw(st.lists(st.one_of(st.sampled_from(SOUP_WORDS), st.text(max_size=6)), max_size=8))
    separator = draw(st.sampled_from([" ", "  ", "\t", "\u00a0"]))
    return separator.join([verb, *words])


@settings(max_examples=300, deadline=None)
@given(token_soup())
def test_whatever_parses_reparses_from_its_canonical_text(text):
    command = check_outcome(text)
    if command is not None:
        assert parse(command.text) == command
        assert parse(command.text).text == command.text


# Valid parts, stated independently of the module's regexes.
def cron_field(low, high, names):
    number = st.integers(low, high)
    item = st.one_of(
        st.just("*"),
        st.integers(1, 30).map(lambda step: f"*/{step}"),
        number.map(str),
        st.tuples(number, number).map(sorted).map(lambda pair: f"{pair[0]}-{pair[1]}"),
        st.tuples(number, number, st.integers(1, 9)).map(lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"),
        *([st.sampled_from(names)] if names else []),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


CRON = st.tuples(
    cron_field(0, 59, ()),
    cron_field(0, 23, ()),
    cron_field(1, 31, ()),
    cron_field(1, 12, ("jan", "jun", "dec")),
    cron_field(0, 7, ("sun", "mon", "sat")),
).map(" ".join)


def value_strategy(value: Value, max_replicas: int):
    if value.kind in (Kind.NAME, Kind.CLUSTER):
        return st.from_regex(DNS_LABEL, fullmatch=True)
    if value.kind is Kind.PRESET:
        return st.from_regex(r"[a-z0-9][a-z0-9.-]{0,99}", fullmatch=True)
    if value.kind is Kind.INSTANCE:
        return st.sampled_from(["g5.xlarge", "g6e.12xlarge", "inf2.48xlarge", "p4d.24xlarge", "u-6tb1.metal"])
    if value.kind is Kind.INTEGER:
        high = max_replicas if value.capped else (value.high or 10**9 - 1)
        return st.integers(value.low, high).map(str)
    if value.kind is Kind.NUMBER:
        return st.from_regex(r"[0-9]{1,9}(\.[0-9]{1,6})?", fullmatch=True).filter(lambda s: float(s) > 0)
    if value.kind is Kind.CHOICE:
        return st.sampled_from(value.choices)
    if value.kind is Kind.VERB:
        return st.sampled_from(sorted(VERBS))
    if value.kind is Kind.CRON:
        return CRON
    if value.kind is Kind.TIME_ZONE:
        return st.sampled_from(["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
    if value.kind is Kind.TEXT:
        return st.text(alphabet=ANY_CHARACTER, min_size=1).map(str.strip).filter(bool)
    raise AssertionError(f"no strategy for {value.kind}")


# What parse() can produce in a set value: anything but the smart quotes it reads as quotes.
SET_VALUE = st.text(alphabet=st.characters(exclude_categories=(), exclude_characters=SMART_QUOTES), max_size=20)


@st.composite
def commands(draw, max_replicas=20):
    spec = draw(st.sampled_from(list(VERBS.values())))
    args: list[str] = []
    for arg in spec.args:
        if arg.when is not None and (not args or args[0] != arg.when):
            continue
        if not arg.required and arg.default is None and not draw(st.booleans()):
            break
        args.append(draw(value_strategy(arg.value, max_replicas)))
    options: dict[str, str] = {}
    for key, option in spec.options.items():
        applies = option.when is None or (args and args[0] == option.when)
        if key != "cluster" and applies and (option.required or draw(st.booleans())):
            options[key] = draw(value_strategy(option.value, max_replicas))
    if spec.name == "autoscale":
        low, high = sorted((int(options["min"]), int(options["max"])))
        options["min"], options["max"] = str(low), str(max(high, 1))
    if spec.name == "schedule":  # `schedule list` takes no options; a schedule needs replicas= and cron=
        if args[0] == "list":
            options = {}
        else:
            options.setdefault("replicas", draw(value_strategy(spec.options["replicas"].value, max_replicas)))
            options.setdefault("cron", draw(CRON))
            options = {key: options[key] for key in spec.options if key in options}
    applicable = spec.applicable_args(args[0] if args else None)
    cluster = next((v for a, v in zip(applicable, args, strict=False) if a.value.kind is Kind.CLUSTER), None)
    if cluster is None:
        cluster = draw(st.none() | st.from_regex(DNS_LABEL, fullmatch=True))
    sets = {}
    if spec.set_prefix:
        sets = draw(st.dictionaries(st.from_regex(r"[A-Za-z0-9_.\-\[\]]{1,30}", fullmatch=True), SET_VALUE,
                                    max_size=3))
    return Command(spec.name, tuple(args), options, sets, cluster)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands())
def test_round_trip_from_valid_parts(command):
    text = command.text
    assert parse(text) == command
    assert parse(text).text == text


@st.composite
def mutated_commands(draw):
    """Valid command text with a few words inserted, dropped, re-cased or moved: near misses."""
    words = draw(commands()).text.split(" ")
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(words) - 1))
        operation = draw(st.sampled_from(["insert", "delete", "upper", "move"]))
        if operation == "insert":
            words.insert(at, draw(st.sampled_from(SOUP_WORDS) | st.text(max_size=6)))
        elif operation == "delete" and len(words) > 1:
            del words[at]
        elif operation == "upper":
            words[at] = words[at].upper()
        elif operation == "move":
            words.append(words.pop(at))
    separator = draw(st.sampled_from([" ", "  ", "\t", "\u00a0"]))
    return separator.join(words)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_commands())
def test_near_misses_fail_cleanly_or_reparse(text):
    command = check_outcome(text)
    if command is not None:
        assert parse(command.text) == command
