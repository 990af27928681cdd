"""Where the Grafana link shows in a digest and `/infer metrics`, and where it does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.sandbox.slack.webapi import block_kit_errors
from handlers.digest_blocks import Layout, metrics_message, render_digest
from handlers.grafana_links import NO_LINKS, Links
from ops.advisor import Thresholds
from ops.digest import ClusterStatus, DeploymentReport, Digest
from ops.grafana import Dashboard
from ops.metrics import DeploymentMetrics

END = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
START = END - timedelta(hours=24)
FROM_TO = "from=1796288400000&amp;to=1796374800000"  # the digest's window in ms, & escaped for Slack
UID = "bec31e71-3ac5-4133-b2e3-b9f75c8ab56c"


def report(cluster: str, name: str, namespace: str = "default") -> DeploymentReport:
    return DeploymentReport(DeploymentMetrics(cluster=cluster, namespace=namespace, name=name, util_mean=40.0,
                                              replicas_desired=1, replicas_available=1),
                            price_per_device_hour=1.0, cost_per_day=24.0, idle_cost_per_day=None)


DIGEST = Digest(start=START, end=END,
                clusters=(ClusterStatus("dev", None, (), 2, 10), ClusterStatus("eu", None, (), 1, 10)),
                deployments=(report("dev", "busy-qwen"), report("dev", "custom", "team-a"), report("eu", "phi")),
                thresholds=Thresholds(), queries=20)
# dev has a Grafana under a sub-path; eu has none. busy-qwen's command line names its model, custom's does not.
LINKS = Links({"dev": Dashboard("https://grafana.example.com/monitoring")},
              lambda cluster, namespace: {"busy-qwen": "Qwen/Qwen3-1.7B"} if namespace == "default" else {})


def section_of(blocks: list[dict], name: str) -> str:
    [text] = [b["text"]["text"] for b in blocks if f"*{name}* · " in (b.get("text") or {}).get("text", "")]
    return text


def test_each_digest_row_links_to_its_dashboard_over_the_digests_window():
    blocks = render_digest(DIGEST, {}, links=LINKS).main.blocks
    assert block_kit_errors(blocks) == []
    head = section_of(blocks, "busy-qwen").splitlines()[0]
    assert head.endswith(f" · <https://grafana.example.com/monitoring/d/{UID}?{FROM_TO}"
                         "&amp;var-namespace=default&amp;var-model_name=Qwen%2FQwen3-1.7B|Grafana>")
    # No served model name known: the namespace alone, so the dashboard does not filter on a wrong one.
    assert section_of(blocks, "custom").splitlines()[0].endswith(
        f" · <https://grafana.example.com/monitoring/d/{UID}?{FROM_TO}&amp;var-namespace=team-a|Grafana>")
    # A cluster without grafana_url: no link at all.
    assert "Grafana" not in section_of(blocks, "phi") and "/d/" not in section_of(blocks, "phi")


def test_rows_moved_to_the_thread_keep_their_links():
    render = render_digest(DIGEST, {}, links=LINKS, layout=Layout(main_deployments=1))
    thread = [b for m in render.thread for b in m.blocks]
    assert block_kit_errors(thread) == []
    assert f"<https://grafana.example.com/monitoring/d/{UID}?{FROM_TO}&amp;var-namespace=team-a|Grafana>" in \
        section_of(thread, "custom")


def test_metrics_of_one_deployment_links_to_it():
    blocks = metrics_message(DIGEST.deployments[0], DIGEST, {}, links=LINKS).blocks
    assert block_kit_errors(blocks) == []
    assert "var-model_name=Qwen%2FQwen3-1.7B|Grafana>" in section_of(blocks, "busy-qwen")


def test_no_grafana_configured_means_no_link_anywhere():
    render = render_digest(DIGEST, {}, links=NO_LINKS)
    shown = str(render.main.blocks) + str(metrics_message(DIGEST.deployments[0], DIGEST, {}).blocks)
    assert "Grafana" not in shown and "/d/" not in shown


def test_status_of_a_release_ends_its_line_with_the_link():
    from handlers.release_blocks import status_message
    from ops.releases import ReleaseInfo

    release = ReleaseInfo(name="qwen", namespace="default", revision="3", kind="Deployment", ready=1, desired=1,
                          created=None, endpoint="http://qwen.default.svc.cluster.local:8000", preset="qwen3-1.7b-vllm")
    link = LINKS.link("dev", "default", "busy-qwen", START, END)
    blocks = status_message("dev", "default", [release], [], links={"qwen": link}).blocks
    assert block_kit_errors(blocks) == []
    [line] = [b["text"]["text"] for b in blocks if "*qwen* rev 3" in (b.get("text") or {}).get("text", "")]
    assert line.endswith(f"· Deployment · http://qwen.default.svc.cluster.local:8000 · {link}")
    assert "Grafana" not in str(status_message("dev", "default", [release], []).blocks)
