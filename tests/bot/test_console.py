"""The README's first command: the console against the local sandbox, driven as a newcomer would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bot.console import FILES_DIR_ENV, files_folder
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


PNG = b"\x89PNG\r\n\x1a\n"


def console_with(env: dict[str, str], script: str, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "bot.cli", "console", "--sandbox", *args], input=script, text=True,
                         env={**os.environ, **env}, capture_output=True, timeout=180)
    assert run.returncode == 0 and "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    return run.stdout


def test_the_digest_chart_is_saved_where_the_console_says(tmp_path):
    # No folder given (an empty variable is none): under the temporary folder, TMPDIR here, where the
    # chart outlives the console.
    out = console_with({"TMPDIR": str(tmp_path), FILES_DIR_ENV: ""}, "/infer digest now\n/infer digest now\n:quit\n")
    folder = (tmp_path / "infer-bot-files").resolve()
    assert f"Files the bot uploads (charts, images, plans) are saved in {folder}." in out
    saved = re.findall(r"\(file: Accelerator utilization and p95 latency, last 24 h\) saved as (\S+)", out)
    assert len(saved) == 2 and len(set(saved)) == 2  # the second digest's chart does not overwrite the first
    for shown in saved:
        path = Path(shown)
        assert path.parent == folder and path.name.endswith("-digest.png") and path.is_file()
        assert path.read_bytes().startswith(PNG)


def test_the_files_folder_can_be_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv(FILES_DIR_ENV, str(tmp_path / "charts"))
    assert files_folder() == tmp_path / "charts"
    assert files_folder(tmp_path / "given") == tmp_path / "given"
    # On the command line, the flag wins over the variable.
    out = console_with({FILES_DIR_ENV: str(tmp_path / "charts")}, "/infer digest now\n:quit\n",
                       "--files-dir", str(tmp_path / "flag"))
    [shown] = re.findall(r"saved as (\S+)", out)
    assert Path(shown).parent == (tmp_path / "flag").resolve() and Path(shown).read_bytes().startswith(PNG)
