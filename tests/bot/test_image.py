"""The Dockerfile: pinned helm and terraform, each checked against its published sha256 for the
build's architecture, the runtime only (no sandbox extra), and the same helm the tests run
(scripts/setup). The download step is run by sh against a local copy of the release hosts; a real
build (test_the_image_builds) needs a Docker daemon and the release hosts, which the test machines
lack, so it runs only where both exist."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SHA256 = re.compile(r"[0-9a-f]{64}")


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), flags=re.M))


def _runs() -> str:
    """Every RUN instruction's shell text, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return "\n".join(line for line in text.splitlines() if line.startswith("RUN "))


def test_helm_and_terraform_are_pinned_with_a_checksum_per_architecture():
    args = _args()
    assert re.fullmatch(r"v\d+\.\d+\.\d+", args["HELM_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TERRAFORM_VERSION"])
    for tool in ("HELM", "TERRAFORM"):
        sums = {arch: args[f"{tool}_SHA256_{arch}"] for arch in ("AMD64", "ARM64")}
        assert all(SHA256.fullmatch(s) for s in sums.values()), sums
        assert sums["AMD64"] != sums["ARM64"]


def test_each_download_is_the_official_release_and_is_verified_before_use():
    runs = _runs()
    assert "https://get.helm.sh/helm-${HELM_VERSION}-linux-${arch}.tar.gz" in runs
    assert ("https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/"
            "terraform_${TERRAFORM_VERSION}_linux_${arch}.zip") in runs
    assert 'arch="${TARGETARCH:-amd64}"' in runs
    # The check comes before the archive is opened, and a mismatch stops the build (set -e).
    for archive, unpack in (("helm.tar.gz", "tar -xzf helm.tar.gz"), ("terraform.zip", 'ZipFile("terraform.zip")')):
        check = runs.index(f"  {archive}\" | sha256sum -c -")
        assert check < runs.index(unpack), archive
    assert "set -eu" in runs
    # An architecture without pinned sums fails instead of downloading something unchecked.
    assert re.search(r"\*\) echo \"no pinned helm/terraform checksums.*exit 1", runs)


def test_the_binaries_are_on_the_path_of_the_runtime_image():
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "COPY --from=tools /tools/bin/helm /tools/bin/terraform /usr/local/bin/" in text
    assert "helm version" in _runs() and "terraform version" in _runs()


def test_only_the_runtime_is_installed():
    installs = [line for line in _runs().splitlines() if "pip install" in line]
    assert installs == ['RUN pip install ".[postgres]"']
    instructions = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    assert not [line for line in instructions if "sandbox" in line or "kmock" in line]
    assert "tests" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def test_the_image_runs_the_helm_the_tests_run():
    setup = (ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    [pinned] = re.findall(r'^\s*HELM_VERSION="(v[\d.]+)"$', setup, flags=re.M)
    assert pinned == _args()["HELM_VERSION"]


# ---- the download step, run by sh against a local copy of the release hosts ------------------------
# No Docker daemon or route to get.helm.sh here: the tools stage's RUN script is run as the image's
# /bin/sh would run it, with urllib's download answered from a folder (by file name), so what it
# fetches, checks and unpacks is observed for real.

_MIRROR_HOOK = """
import os, shutil, urllib.request
def _from_mirror(url, dest):
    with open(os.environ["FETCHED"], "a") as log:
        log.write(url + "\\n")
    shutil.copy(os.path.join(os.environ["MIRROR"], url.rsplit("/", 1)[1]), dest)
urllib.request.urlretrieve = _from_mirror
"""


def _tools_script() -> str:
    [script] = [line[len("RUN "):] for line in _runs().splitlines() if "sha256sum -c" in line]
    return script


def _releases(folder: Path, arch: str = "amd64") -> dict[str, str]:
    """Archives shaped like the official ones; returns each file's sha256."""
    args = _args()
    folder.mkdir()
    helm = io.BytesIO()
    with tarfile.open(fileobj=helm, mode="w:gz") as tar:
        body = b"#!/bin/sh\necho fake helm\n"
        info = tarfile.TarInfo(f"linux-{arch}/helm")
        info.size, info.mode = len(body), 0o755
        tar.addfile(info, io.BytesIO(body))
    (folder / f"helm-{args['HELM_VERSION']}-linux-{arch}.tar.gz").write_bytes(helm.getvalue())
    with zipfile.ZipFile(folder / f"terraform_{args['TERRAFORM_VERSION']}_linux_{arch}.zip", "w") as zf:
        zf.writestr("terraform", "#!/bin/sh\necho fake terraform\n")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _run_tools_stage(tmp_path: Path, **build_args: str) -> tuple[subprocess.CompletedProcess[str], Path, list[str]]:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_MIRROR_HOOK)
    (tmp_path / "download").mkdir()
    tools = tmp_path / "tools"
    script = _tools_script().replace("/tools/bin", str(tools)).replace("/download/*", f"{tmp_path / 'download'}/*")
    env = {"PATH": f"{Path(shutil.which('python') or 'python').parent}:/usr/bin:/bin", "PYTHONPATH": str(hook),
           "MIRROR": str(tmp_path / "mirror"), "FETCHED": str(tmp_path / "fetched"), **_args(), **build_args}
    run = subprocess.run(["/bin/sh", "-c", script], cwd=tmp_path / "download", env=env, capture_output=True,
                         text=True, timeout=60)
    fetched = (tmp_path / "fetched").read_text().split() if (tmp_path / "fetched").exists() else []
    return run, tools, fetched


def test_the_tools_stage_fetches_the_official_releases_checks_and_unpacks_them(tmp_path):
    sums = _releases(tmp_path / "mirror", "arm64")
    args = _args()
    helm_sum = sums[f"helm-{args['HELM_VERSION']}-linux-arm64.tar.gz"]
    terraform_sum = sums[f"terraform_{args['TERRAFORM_VERSION']}_linux_arm64.zip"]
    run, tools, fetched = _run_tools_stage(tmp_path, TARGETARCH="arm64", HELM_SHA256_ARM64=helm_sum,
                                           TERRAFORM_SHA256_ARM64=terraform_sum)
    assert run.returncode == 0, run.stderr
    assert fetched == [f"https://get.helm.sh/helm-{args['HELM_VERSION']}-linux-arm64.tar.gz",
                       f"https://releases.hashicorp.com/terraform/{args['TERRAFORM_VERSION']}/"
                       f"terraform_{args['TERRAFORM_VERSION']}_linux_arm64.zip"]
    assert "helm.tar.gz: OK" in run.stdout and "terraform.zip: OK" in run.stdout
    for tool in ("helm", "terraform"):
        assert os.access(tools / tool, os.X_OK)
        assert subprocess.run([str(tools / tool)], capture_output=True, text=True).stdout == f"fake {tool}\n"


def test_an_archive_that_does_not_match_the_pinned_sum_stops_the_build_before_it_is_unpacked(tmp_path):
    _releases(tmp_path / "mirror")  # not the real releases: the Dockerfile's pinned sums cannot match
    run, tools, fetched = _run_tools_stage(tmp_path, TARGETARCH="amd64")
    assert run.returncode != 0
    assert "helm.tar.gz: FAILED" in run.stdout and "WARNING: 1 computed checksum did NOT match" in run.stderr
    assert len(fetched) == 1 and not (tools / "helm").exists()  # nothing unpacked, terraform not even fetched


def test_an_architecture_without_pinned_sums_is_refused(tmp_path):
    _releases(tmp_path / "mirror")
    run, _, fetched = _run_tools_stage(tmp_path, TARGETARCH="s390x")
    assert run.returncode == 1 and fetched == []
    assert "no pinned helm/terraform checksums for TARGETARCH=s390x" in run.stderr


def test_the_helm_of_this_machine_is_the_pinned_one():
    helm = ROOT / ".tools" / "bin" / "helm"
    if not helm.exists():
        pytest.skip("no .tools/bin/helm: run scripts/setup test")
    found = subprocess.run([str(helm), "version", "--template", "{{.Version}}"], capture_output=True, text=True,
                           timeout=30, check=True).stdout.strip()
    assert found == _args()["HELM_VERSION"]


def test_the_image_builds(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no Docker daemon on this machine")
    tag = f"infer-bot-test:{tmp_path.name.lower()}"
    subprocess.run([docker, "build", "-t", tag, str(ROOT)], check=True, timeout=1800)
    try:
        versions = subprocess.run([docker, "run", "--rm", "--entrypoint", "sh", tag, "-c",
                                   "helm version --template '{{.Version}}'; echo; terraform version -json"],
                                  capture_output=True, text=True, check=True, timeout=120).stdout
        assert _args()["HELM_VERSION"] in versions and f'"{_args()["TERRAFORM_VERSION"]}"' in versions
    finally:
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True, timeout=120)
