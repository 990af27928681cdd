"""The real binaries some tests drive; those tests skip, naming what to install, when one is absent."""

from __future__ import annotations

import os
import shutil

import pytest

TERRAFORM = os.environ.get("TERRAFORM_BIN") or shutil.which("terraform")
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None, reason="the terraform binary is not installed (scripts/setup test names how to get it)")

HELM = os.environ.get("HELM_BIN") or shutil.which("helm")
needs_helm = pytest.mark.skipif(
    HELM is None, reason="the helm binary is not installed (scripts/setup test puts one in .tools/bin)")
