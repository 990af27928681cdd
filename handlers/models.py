"""`/infer models`: the model presets that can be deployed, with size, default instance and price."""

from __future__ import annotations

from typing import Any

from handlers import catalog_blocks
from handlers.base import Invocation
from handlers.parse import Command
from ops import catalog, instances
from ops.errors import OpsError


def catalog_settings(config: Any) -> tuple[str | None, str]:
    """(user presets folder, pricing region) from the config's `catalog:` section.

    Read with getattr: a config without the section (older files, test doubles) means "no user
    folder beyond INFER_BOT_PRESETS_DIR, prices in us-west-2"."""
    section = getattr(config, "catalog", None)
    return (getattr(section, "presets_dir", None),
            getattr(section, "region", None) or instances.DEFAULT_REGION)


def list_models(cmd: Command, inv: Invocation) -> None:
    inv.authorize(None, "viewer", "models")
    presets_dir, region = catalog_settings(inv.deps.config)
    # Invalid user files are shown, not fatal: one typo must not hide the whole catalog.
    report = catalog.load_catalog_report(presets_dir)
    prices: dict[str, float | None] = {}
    for preset in report.presets.values():
        if preset.instance not in prices:
            try:
                prices[preset.instance] = instances.hourly_price(preset.instance, region)
            except OpsError:
                prices[preset.instance] = None
    inv.reply(catalog_blocks.models_message(
        list(report.presets.values()), prices, region=region, prices_as_of=instances.prices_as_of(),
        command=inv.deps.command, problems=report.problems, sandbox=inv.sandbox))
