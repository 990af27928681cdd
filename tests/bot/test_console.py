"""The README's first command: the console against the local sandbox, driven as a newcomer would."""

from __future__ import annotations

from tests.support.console import run_console

SCRIPT = """\
/infer help
/infer status
/infer scale qwen3-1-7b-vllm 2
:as U0OPERATOR
:approve 1
:as U0APPROVER
:approve 1
/infer status qwen3-1-7b-vllm
/infer scale llama-32-1b-vllm 0
:reject 2 not today
/infer scael x
:quit
"""


def test_sandbox_console_shows_scale_approval_and_result():
    out = run_console(SCRIPT)
    assert "SANDBOX" in out
    assert "scale <name> <replicas>" in out  # help
    assert "qwen3-1-7b-vllm" in out and "llama-32-1b-vllm" in out and "1/1 ready" in out  # status
    assert "replicas 1 → 2" in out and "[Approve → :click op_approve 1]" in out  # the card
    assert "needs the *approver* role" in out  # the requester cannot approve
    assert "Approved by <@U0APPROVER>" in out
    assert "Succeeded" in out and "2/2 replicas available" in out
    assert "2/2 ready" in out  # status afterwards
    assert "Rejected by <@U0APPROVER>" in out and "not today" in out
    assert "unknown verb" in out.lower() and "scale" in out


HOME_SCRIPT = """\
/infer scale qwen3-1-7b-vllm 2
:as U0APPROVER
:home
:home-click op_approve 1
:quit
"""


def test_sandbox_console_shows_the_home_tab_and_its_buttons_work():
    out = run_console(HOME_SCRIPT)
    tab = out[out.index("[Home tab of U0APPROVER]"):]
    assert "== Waiting for your approval ==" in tab and "*#1 Scale `qwen3-1-7b-vllm` on sandbox*" in tab
    assert "[Approve → :click op_approve 1]" in tab
    # The fleet with the sandbox Prometheus' figures.
    fleet = tab[tab.index("== Fleet =="):tab.index("== Your recent operations ==")]
    assert "*qwen3-1-7b-vllm*  1/1 ready" in fleet and "% busy now" in fleet and "/day in all" in fleet
    assert "Approved by <@U0APPROVER>" in tab and "Succeeded" in tab  # the click on the tab approved it
