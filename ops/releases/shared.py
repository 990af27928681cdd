"""Objects several releases share: the upstream chart's fixed-name ConfigMaps (`ray-vllm-serve`,
`triton-model-repository`, `diffusers-serve`, `fluentbit-config`) are the same object for every
release of that framework in a namespace.

Identical content is simply shared; different content would change another release's model server
under it, so it is refused with the difference. Each release that uses one marks it with its own
annotation (`users.infer-bot.io/<release>`), applied under its own field manager; a release that
stops using it removes only its mark, and the last one deletes it. Both steps name the
resourceVersion they read, so two releases leaving at once cannot both keep (or both miss) it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ops.errors import OpsError
from ops.releases.api import ReleaseApi
from ops.releases.manifests import (
    RELEASE_LABEL,
    REVISION_LABEL,
    SHARED_LABEL,
    USER_ANNOTATION_PREFIX,
    ObjectRef,
    is_shared,
)

MERGE_PATCH = "application/merge-patch+json"


def users(obj: Mapping[str, Any]) -> set[str]:
    """The releases that use a shared object (a release label counts: an object applied before it was shared)."""
    meta = obj.get("metadata") or {}
    found = {key[len(USER_ANNOTATION_PREFIX):] for key in (meta.get("annotations") or {})
             if key.startswith(USER_ANNOTATION_PREFIX)}
    owner = (meta.get("labels") or {}).get(RELEASE_LABEL)
    return found | ({owner} if owner else set())


def _content(obj: Mapping[str, Any]) -> dict[str, str]:
    data = {f"data.{k}": str(v) for k, v in (obj.get("data") or {}).items()}
    return data | {f"binaryData.{k}": str(v) for k, v in (obj.get("binaryData") or {}).items()}


def difference(wanted: Mapping[str, Any], live: Mapping[str, Any], limit: int = 8) -> list[str]:
    """What differs between two ConfigMaps' content, key by key, with the first changed lines."""
    mine, theirs = _content(wanted), _content(live)
    lines: list[str] = []
    for key in sorted(set(mine) | set(theirs)):
        if key not in theirs:
            lines.append(f"`{key}`: only in this release's")
        elif key not in mine:
            lines.append(f"`{key}`: only in the one in use")
        elif mine[key] != theirs[key]:
            changed = [d for d in difflib.unified_diff(theirs[key].splitlines(), mine[key].splitlines(),
                                                        "in use", "this release", lineterm="", n=0)
                       if d[:1] in "+-" and not d.startswith(("---", "+++"))]
            shown = "\n".join(changed[:limit]) + (f"\n… {len(changed) - limit} more line(s)" if len(changed) > limit
                                                  else "")
            lines.append(f"`{key}` differs:\n```\n{shown}\n```")
    return lines


@dataclass(frozen=True)
class Conflict:
    ref: ObjectRef
    users: tuple[str, ...]
    lines: tuple[str, ...]

    def text(self) -> str:
        who = ", ".join(f"`{u}`" for u in self.users)
        return (f"`{self.ref.key}` in `{self.ref.namespace}` is shared by every release of this framework in the "
                f"namespace, and {who} use{'s' if len(self.users) == 1 else ''} it with other content:\n"
                + "\n".join(self.lines))


def conflicts(api: ReleaseApi, objects: Iterable[Mapping[str, Any]], release: str) -> list[Conflict]:
    """Shared objects among `objects` that exist with other content and are used by another release."""
    found = []
    for obj in objects:
        ref = ObjectRef.of(obj)
        if not is_shared(ref):
            continue
        live = api.get(ref)
        if live is None:
            continue
        others = users(live) - {release}
        labels = (live.get("metadata") or {}).get("labels") or {}
        if not others and SHARED_LABEL not in labels:
            others = {"(not deployed by infer-bot)"}  # someone's own install of the chart: not ours to change
        lines = difference(obj, live)
        if others and lines:
            found.append(Conflict(ref, tuple(sorted(others)), tuple(lines)))
    return found


def release(api: ReleaseApi, ref: ObjectRef, name: str) -> tuple[str | None, tuple[str, ...]]:
    """Stop using a shared object: (uid of it when this was its last user and it is being deleted, else
    None; the releases that still use it)."""
    for _ in range(5):
        live = api.get(ref)
        if live is None:
            return None, ()
        meta = live.get("metadata") or {}
        others = tuple(sorted(users(live) - {name}))
        version = meta.get("resourceVersion")
        try:
            if others:
                patch: dict[str, Any] = {"metadata": {"resourceVersion": version,
                                                      "annotations": {USER_ANNOTATION_PREFIX + name: None}}}
                if (meta.get("labels") or {}).get(RELEASE_LABEL) == name:
                    patch["metadata"]["labels"] = {RELEASE_LABEL: None, REVISION_LABEL: None}
                api.request(f"release {ref.key}", "PATCH", api.path(ref), body=patch, content_type=MERGE_PATCH,
                            retry=False)
                return None, others
            uid = api.delete(ref, preconditions={"resourceVersion": str(version or "")})
            return uid, ()
        except OpsError as exc:
            if exc.status != 409:  # 409: it changed since we read it (another release came or went)
                raise
    raise OpsError(f"`{ref.key}` kept changing while `{name}` stopped using it; run the command again")
