"""`server.after_ack: queue`: `serve` answers Slack and hands the rest to worker processes through the
database inbox; `infer-bot worker` (or the workers `serve` starts) do the cluster reads and the posts.

- with no worker running, a command is acked and waits in the inbox; a worker started later posts its
  card, and the card's buttons go the same way;
- a usage error is still answered inside the ack, by `serve` alone, and audited; so is a deploy form's
  invalid field, while the accepted form's card comes from a worker;
- the Home tab (an event, deferred whole) is published by a worker;
- two workers, a Slack retry and a burst of commands: every command is answered once; two serve
  replicas with their workers and sixty clicks on one card: it scales once;
- the worker `serve` starts runs at a lower CPU priority, and does not outlive a SIGKILLed `serve`.
"""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from handlers import deploy_modal_blocks as mb
from ops.helm import BUNDLED_CHART
from tests.support.binaries import needs_helm
from tests.support.botproc import Database
from tests.support.slack import APPROVER, CHANNEL, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()


def queued(db: Database) -> list[dict]:
    return db.rows("SELECT * FROM inbox ORDER BY id")


def test_a_command_waits_in_the_inbox_until_a_worker_takes_it(make_bot, slack, kube, database_url):
    bot = make_bot(database_url=database_url, server={"after_ack": "queue", "worker_processes": 0})
    db = Database(database_url)
    reply = bot.slash("scale qwen 2", user=OPERATOR)
    assert reply.status_code == 200 and reply.text == ""  # acked at once, with nothing to show yet
    [waiting] = wait_until(lambda: queued(db), what="the command in the inbox")
    assert "scale+qwen+2" in waiting["body"] and waiting["status"] == "queued"
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0  # serve did none of the work

    bot.start_worker()
    card = card_for(slack, timeout=30)
    assert "qwen" in text_of(card)
    wait_until(lambda: not queued(db), what="the inbox emptied")

    # A click is acked by serve and carried out by the worker as well.
    assert bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"]).status_code == 200
    done = slack.wait_for(lambda c: "Succeeded" in text_of(c) and c.params.get("thread_ts") == card.response["ts"],
                          timeout=30)
    assert "qwen" in text_of(done)
    assert kube.get("apps/v1", "Deployment", "default", "qwen")["spec"]["replicas"] == 2


def test_a_usage_error_is_answered_in_the_ack_by_serve_alone(make_bot, slack, db):
    bot = make_bot(server={"after_ack": "queue", "worker_processes": 0})
    reply = bot.slash("scale qwen lots", user=OPERATOR)
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["response_type"] == "ephemeral" and "lots" in answer["text"]
    [row] = wait_until(lambda: [r for r in db.audit() if r["outcome"] == "refused"], what="the refusal audited")
    assert row["action"] == "scale" and row["actor"] == OPERATOR
    assert queued(db) == []  # nothing for a worker to do


def test_two_workers_answer_each_command_once_retries_included(make_bot, slack, db):
    bot = make_bot(server={"after_ack": "queue", "worker_processes": 2})
    body, headers = bot.requests.slash("scale qwen 2", user_id=OPERATOR, channel_id=CHANNEL)
    retry = dict(headers, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert bot.post(body, headers).status_code == 200 and bot.post(body, retry).status_code == 200
    channels = [f"C0BURST{i:02d}" for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(lambda ch: bot.slash("status", user=OPERATOR, channel=ch).status_code, channels))
    assert codes == [200] * 12

    card_for(slack, timeout=30)
    wait_until(lambda: all(slack.ephemerals(ch, OPERATOR) for ch in channels), timeout=60,
               what="every status answered")
    wait_until(lambda: "not acting again" in bot.log(), what="the retry dropped by whichever worker got it")
    wait_until(lambda: not queued(db), what="the inbox emptied")
    assert [len(slack.ephemerals(ch, OPERATOR)) for ch in channels] == [1] * len(channels)  # once each
    assert len([c for c in slack.calls_to("chat.postMessage") if op_id_of(c)]) == 1
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 1


def test_the_worker_serve_started_yields_the_cpu_and_stops_when_serve_is_killed(make_bot):
    bot = make_bot(server={"after_ack": "queue", "worker_processes": 1})
    [child] = wait_until(bot.children, what="the worker process started")
    assert bot.proc is not None
    assert _nice(child) == _nice(bot.proc.pid) + 10  # `ps -o ni`: acks get the CPU first
    bot.kill()
    wait_until(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), what="the worker gone with serve")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@needs_helm
def test_the_deploy_form_validates_in_serve_and_its_card_comes_from_a_worker(make_bot, slack, kube, db):
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})
    bot = make_bot(chart={"path": str(BUNDLED_CHART)}, server={"after_ack": "queue", "worker_processes": 0})
    assert bot.slash("deploy", user=OPERATOR).status_code == 200
    view = slack.wait_for(lambda c: c.method == "views.open" and c.status == 200).response["view"]

    def submit(replicas: str):
        preset = {"type": "static_select", "selected_option": {"value": "qwen3-1.7b-vllm"}}
        state = {mb.PRESET: {mb.PRESET_ACTION: preset},
                 mb.NAME: {mb.VALUE: {"type": "plain_text_input", "value": "formed"}},
                 mb.REPLICAS: {mb.VALUE: {"type": "plain_text_input", "value": replicas}},
                 mb.CLUSTER: {mb.VALUE: {"type": "static_select", "selected_option": {"value": "dev"}}}}
        body, headers = bot.requests.view_submission(mb.CALLBACK, state, user_id=OPERATOR, view_id=view["id"],
                                                     private_metadata=None)
        return bot.post(body, headers)

    refused = submit("500").json()  # serve alone answers the error next to its field
    assert refused["response_action"] == "errors" and "replicas" in refused["errors"][mb.REPLICAS]
    assert queued(db) == []
    assert submit("1").status_code == 200
    wait_until(lambda: queued(db), what="the accepted form in the inbox")
    bot.start_worker()
    card = card_for(slack, timeout=30)
    assert "create `Deployment/formed`" in text_of(card)


def test_the_home_tab_is_published_by_a_worker(make_bot, slack, db):
    bot = make_bot(server={"after_ack": "queue", "worker_processes": 1})
    body, headers = bot.requests.app_home_opened(user_id=OPERATOR)
    assert bot.post(body, headers).status_code == 200
    published = slack.wait_for(lambda c: c.method == "views.publish" and c.params.get("user_id") == OPERATOR,
                               timeout=30)
    assert published.status == 200
    assert db.rows("SELECT user_id FROM home_tabs") == [{"user_id": OPERATOR}]


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])  # field 19 of proc(5), after pid and comm


def test_sixty_clicks_over_two_queue_replicas_scale_once(make_bot, slack, kube, postgres):
    url = postgres.new_database()
    replicas = [make_bot(database_url=url, server={"after_ack": "queue", "worker_processes": 1}) for _ in range(2)]
    db = Database(url)
    replicas[0].slash("scale qwen 3", user=OPERATOR)
    card = card_for(slack, timeout=30)
    op_id = op_id_of(card)

    def click(i: int) -> int:
        return replicas[i % 2].click("op_approve", op_id, user=APPROVER, message_ts=card.response["ts"]).status_code

    with ThreadPoolExecutor(max_workers=30) as pool:
        assert list(pool.map(click, range(60))) == [200] * 60
    slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                   timeout=60)
    # every click answered by whichever worker took it: one approved, the others told it was decided
    wait_until(lambda: len([c for c in slack.calls_to("chat.postEphemeral") if f"#{op_id} is already" in text_of(c)])
               == 59, timeout=60, what="the other 59 clicks answered")
    assert db.operation(int(op_id))["status"] == "succeeded"
    assert len([r for r in kube.requests if r[0] == "PATCH" and r[1].endswith("/deployments/qwen/scale")]) == 1
    wait_until(lambda: not queued(db), what="the inbox emptied")
