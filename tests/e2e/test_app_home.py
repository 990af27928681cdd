"""The App Home tab end to end: signed `app_home_opened` events to a real `infer-bot serve`, its
views.publish calls answered (and validated) by the local Slack, clicks on the tab's buttons."""

from __future__ import annotations

import copy
import math
import re
from typing import Any

from bot.sandbox.slack.webapi import Call, LocalSlack
from tests.support.botproc import BotProcess, Database, free_port
from tests.support.cluster import model
from tests.support.slack import APPROVER, CHANNEL, OPERATOR, VIEWER, card_for, op_id_of, text_of
from tests.support.waiting import wait_until

MIN_INTERVAL = 3.0  # handlers/home.py: at most one publish per user this often


def open_home(bot: BotProcess, user: str) -> None:
    body, headers = bot.requests.app_home_opened(user_id=user)
    assert bot.post(body, headers).status_code == 200


def home_click(bot: BotProcess, action_id: str, value: str, user: str) -> None:
    body, headers = bot.requests.home_action(action_id, value, user_id=user)
    assert bot.post(body, headers).status_code == 200


def publishes(slack: LocalSlack, user: str) -> list[Call]:
    return [c for c in slack.calls_to("views.publish") if c.params.get("user_id") == user]


def shown(call: Call) -> str:
    """What the user reads on the tab."""
    view = call.params.get("view") or {}
    return text_of(Call("view", {"blocks": view.get("blocks") or []}, {}, 0, 200, {}))


def buttons(call: Call) -> set[tuple[str, str]]:
    return {(e["action_id"], e.get("value", "")) for b in (call.params.get("view") or {}).get("blocks") or []
            if b.get("type") == "actions" for e in b.get("elements", [])}


def home_of(slack: LocalSlack, user: str, *needles: str, timeout: float = 20) -> Call:
    """The first publish of `user`'s tab that shows every needle."""
    return slack.wait_for(lambda c: c.method == "views.publish" and c.params.get("user_id") == user
                          and all(n in shown(c) for n in needles), timeout=timeout)


def test_opening_the_tab_shows_the_fleet_and_the_approvals_waiting_for_that_user(make_bot, slack):
    bot = make_bot()
    bot.slash("scale qwen 2", user=OPERATOR)
    op_id = op_id_of(card_for(slack))

    open_home(bot, APPROVER)
    tab = home_of(slack, APPROVER, "Fleet")
    assert tab.ok, tab.response  # the local Slack validated it as a home view
    assert tab.params["view"]["type"] == "home" and len(tab.params["view"]["blocks"]) <= 100
    seen = shown(tab)
    assert "*dev*" in seen and "qwen" in seen and "1/1 ready" in seen
    assert "No Prometheus is configured (`prometheus_url`), so no utilization or cost." in seen
    assert f"#{op_id} Scale `qwen` on dev" in seen and f"asked by <@{OPERATOR}> in <#{CHANNEL}>" in seen
    assert {("op_approve", op_id), ("op_reject", op_id)} <= buttons(tab)

    open_home(bot, OPERATOR)
    theirs = home_of(slack, OPERATOR, "Fleet")
    assert "Nothing waits for your approval." in shown(theirs)
    assert not buttons(theirs)  # their own request is not theirs to approve
    assert f"*#{op_id}* scale `qwen`" in shown(theirs)  # but it is among their recent operations
    assert "Of the channels where you asked for changes." in shown(theirs)
    assert publishes(slack, VIEWER) == []


def test_approve_on_the_home_tab_approves_updates_the_card_and_refreshes_the_tab(make_bot, slack, kube):
    bot = make_bot()
    db = Database(bot.database_url)
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    op_id = op_id_of(card)
    open_home(bot, APPROVER)
    assert ("op_approve", op_id) in buttons(home_of(slack, APPROVER, f"#{op_id} Scale"))

    home_click(bot, "op_approve", op_id, APPROVER)
    ts = card.response["ts"]
    slack.wait_for(lambda c: c.method == "chat.update" and c.params.get("ts") == ts
                   and f"Approved by <@{APPROVER}>" in text_of(c))
    slack.wait_for(lambda c: c.params.get("thread_ts") == ts and "Succeeded" in text_of(c), timeout=30)
    assert db.operation(int(op_id))["status"] == "succeeded"
    assert [r["actor"] for r in db.audit(int(op_id)) if r["action"] == "approval"] == [APPROVER]
    # The tab follows: nothing waits any more, and the approval is among the approver's operations.
    after = home_of(slack, APPROVER, "Nothing waits for your approval.", f"*#{op_id}* scale `qwen`", "succeeded",
                    timeout=30)
    assert not buttons(after) and "2/2 ready" in shown(after)


def test_reject_on_the_home_tab_asks_why_and_rejects(make_bot, slack):
    bot = make_bot()
    bot.slash("scale qwen 3", user=OPERATOR)
    card = card_for(slack)
    op_id = op_id_of(card)
    open_home(bot, APPROVER)
    home_of(slack, APPROVER, f"#{op_id} Scale")
    home_click(bot, "op_reject", op_id, APPROVER)
    form = slack.wait_for(lambda c: c.method == "views.open")
    assert form.ok and form.params["view"]["private_metadata"] == op_id
    values = {"reason": {"value": {"type": "plain_text_input", "value": "too many GPUs"}}}
    body, headers = bot.requests.view_submission("reject_reason", values, user_id=APPROVER,
                                                 private_metadata=op_id, view_id=form.response["view"]["id"])
    assert bot.post(body, headers).status_code == 200
    slack.wait_for(lambda c: c.method == "chat.update" and c.params.get("ts") == card.response["ts"]
                   and "Rejected by" in text_of(c) and "too many GPUs" in text_of(c))
    home_of(slack, APPROVER, "Nothing waits for your approval.", timeout=30)


def test_a_burst_of_changes_is_coalesced_and_only_open_tabs_are_published(make_bot, slack, kube):
    for name in ("alpha", "beta", "gamma"):
        kube.put(model(name))
    bot = make_bot()
    open_home(bot, APPROVER)
    home_of(slack, APPROVER, "Fleet")
    for name in ("qwen", "alpha", "beta", "gamma"):
        bot.slash(f"scale {name} 2", user=OPERATOR)
    cards = [card_for(slack, n=n) for n in range(1, 5)]
    ids = [op_id_of(c) for c in cards]

    final = home_of(slack, APPROVER, *(f"#{i} Scale" for i in ids), timeout=30)
    assert {("op_approve", i) for i in ids} <= buttons(final)
    tabs = publishes(slack, APPROVER)
    # Four cards in a burst: the tab was published when opened and then at most once per interval.
    gaps = [b.at - a.at for a, b in zip(tabs, tabs[1:], strict=False)]
    assert all(gap >= MIN_INTERVAL - 0.25 for gap in gaps), gaps
    # Without coalescing each card would cost a publish; with it, one per interval the burst spans.
    burst = cards[-1].at - cards[0].at
    assert len(tabs) <= 2 + math.ceil(burst / MIN_INTERVAL) < 1 + len(cards), (burst, [shown(t)[:80] for t in tabs])
    # The round that published the final tab considered every open tab; the requester never opened
    # theirs, so Slack heard nothing about them.
    assert publishes(slack, OPERATOR) == [] and publishes(slack, VIEWER) == []


def test_a_large_fleet_is_summarized_within_100_blocks(make_bot, slack, kube, tmp_path):
    for i in range(14):
        kube.put(model(f"m{i:02d}", gpus=0))
    kube.put(model("zz-broken", gpus=8))  # no node has 8 GPUs: it never becomes ready
    wait_until(lambda: (kube.get("apps/v1", "Deployment", "default", "m13") or {})
               .get("status", {}).get("readyReplicas") == 1, what="the fleet ready")
    kubeconfig = str(tmp_path / "kubeconfig")
    base: dict[str, Any] = {"kubeconfig": kubeconfig, "namespace": "default", "approvals": 1}
    clusters = [dict(copy.deepcopy(base), name=f"c{i:02d}") for i in range(50)]
    bot = make_bot(clusters=clusters)
    open_home(bot, VIEWER)
    tab = home_of(slack, VIEWER, "Fleet", timeout=60)
    assert tab.ok, tab.response
    blocks = tab.params["view"]["blocks"]
    assert len(blocks) <= 100
    seen = shown(tab)
    # 16 servers per cluster: the unhealthy one leads although it sorts last, 10 are shown, 6 counted.
    assert "and 6 more — `/infer status cluster=c00`" in seen
    first = next(b["text"]["text"] for b in blocks if b.get("type") == "section" and "*c00*" in b["text"]["text"])
    assert "16 model servers, 1 not ready" in first
    assert first.splitlines()[1].count("zz-broken") == 1 and "0/1 ready" in first.splitlines()[1]
    # Every cluster is either shown or counted.
    listed = [b for b in blocks if b.get("type") == "section" and "model servers" in b["text"]["text"]]
    counted = re.search(r"and (\d+) more clusters — `/infer clusters`", seen)
    assert counted and len(listed) + int(counted.group(1)) == 50


def test_a_dead_prometheus_is_one_line_on_the_tab(make_bot, slack):
    bot = make_bot(cluster={"prometheus_url": f"http://127.0.0.1:{free_port()}"})
    open_home(bot, VIEWER)
    tab = home_of(slack, VIEWER, "Fleet", timeout=60)
    seen = shown(tab)
    assert "qwen" in seen and "1/1 ready" in seen
    assert seen.count("Prometheus could not be read") == 1 and "so no utilization or cost" in seen


def test_two_replicas_publish_each_change_of_a_tab_once(make_bot, slack, db_url):
    replicas = [make_bot(), make_bot()]
    open_home(replicas[0], APPROVER)
    home_of(slack, APPROVER, "Fleet")
    replicas[1].slash("scale qwen 2", user=OPERATOR)
    op_id = op_id_of(card_for(slack))
    home_of(slack, APPROVER, f"#{op_id} Scale")
    replicas[0].slash("scale qwen 3", user=OPERATOR)
    second = op_id_of(card_for(slack, n=2))
    home_of(slack, APPROVER, f"#{second} Scale", timeout=30)
    # Both replicas noticed both changes; the claim in the database let one of them publish each.
    tabs = publishes(slack, APPROVER)
    assert [sum(f"#{i} Scale" in shown(t) for i in (op_id, second)) for t in tabs] == [0, 1, 2], \
        [shown(t)[:120] for t in tabs]
    assert Database(db_url).rows("SELECT user_id FROM home_tabs") == [{"user_id": APPROVER}]
