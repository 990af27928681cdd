"""The kubelets: start bound pods after ``ready_delay``, or fail them the way ``failing_images`` says
(image pull back-off, crash loops, OOM kills, missing Secrets), with the Events a real kubelet records."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from bot.sandbox.controller.base import ControllerBase
from bot.sandbox.objects import Obj, is_deleting, make_condition, meta_of, safe_hash, status_of, utc_now

_PULL_FAILURE: Final = "ImagePullBackOff"
_CRASH_FAILURES: Final = frozenset({"CrashLoopBackOff", "OOMKilled"})


def _pod_ref(pod: Mapping[str, Any]) -> str:
    """How kubelet messages name a pod: ``name_namespace(uid)``."""
    meta = meta_of(pod)
    return f"{meta.get('name')}_{meta.get('namespace')}({meta.get('uid')})"


def not_ready_message(containers: list[Obj], names: Iterable[str] | None = None) -> str:
    unready = list(names) if names is not None else [c.get("name", "") for c in containers]
    return f"containers with unready status: [{' '.join(unready)}]"


def container_status(container: Mapping[str, Any], ready: bool, state: Obj, restarts: int = 0) -> Obj:
    return {
        "name": container.get("name", ""),
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": restarts,
        "state": state,
        "lastState": {},
    }


class Kubelet(ControllerBase):
    """Every node's kubelet at once."""

    def _sync_pod(self, namespace: str, name: str) -> None:
        pod = self.api.get("v1", "Pod", namespace, name)
        if pod is None or is_deleting(pod) or not (pod.get("spec") or {}).get("nodeName"):
            return
        uid = meta_of(pod)["uid"]
        if uid in self._next_restart:
            self._restart_tick(pod)
            return
        if status_of(pod).get("phase") != "Pending" or self._pull_failed(pod):
            return
        bound_at = self._bound_at.setdefault(uid, time.monotonic())
        wait = bound_at + self.ready_delay - time.monotonic()
        if wait > 0:
            self._later(wait, ("Pod", namespace, name))
            return
        self._start_pod(pod)

    def _stop_pod(self, namespace: str, name: str) -> None:
        """The containers of a Terminating pod have exited: the kubelet deletes it for good (grace 0)."""
        pod = self.api.get("v1", "Pod", namespace, name)
        if pod is not None and is_deleting(pod):
            self.api.delete("v1", "Pod", namespace, name, grace=0)

    @staticmethod
    def _pull_failed(pod: Mapping[str, Any]) -> bool:
        return any(
            ((s.get("state") or {}).get("waiting") or {}).get("reason") in (_PULL_FAILURE, "ErrImagePull")
            for s in status_of(pod).get("containerStatuses") or []
        )

    def _failure(self, container: Mapping[str, Any]) -> str | None:
        return self.failing_images.get(str(container.get("image", "")))

    def _missing_secret(self, pod: Obj, container: Mapping[str, Any]) -> str | None:
        """The first Secret a container's environment needs that does not exist (the kubelet refuses
        to start it: CreateContainerConfigError), or None."""
        namespace = meta_of(pod).get("namespace") or "default"
        refs = [((e.get("valueFrom") or {}).get("secretKeyRef") or {}) for e in container.get("env") or []]
        refs += [(e.get("secretRef") or {}) for e in container.get("envFrom") or []]
        for ref in refs:
            name = ref.get("name")
            if name and not ref.get("optional") and self.api.get("v1", "Secret", namespace, name) is None:
                return str(name)
        return None

    def _start_pod(self, pod: Obj) -> None:
        meta, now = meta_of(pod), utc_now()
        containers = (pod.get("spec") or {}).get("containers") or []
        missing = {c.get("name"): self._missing_secret(pod, c) for c in containers}
        if any(missing.values()):
            self._config_error(pod, containers, missing)
            return
        statuses = [self._started_status(pod, c, now) for c in containers]
        unready = [s["name"] for s in statuses if not s["ready"]]
        pulling = any(self._failure(c) == _PULL_FAILURE for c in containers)
        status = status_of(pod)
        conditions = status.get("conditions") or []
        ready_state = ("True", "", "")
        if unready:
            ready_state = ("False", "ContainersNotReady", not_ready_message([], unready))
        pod["status"] = {
            **status,
            "phase": "Pending" if pulling else "Running",
            "podIP": status.get("podIP") or str(next(self._pod_ips)),
            "conditions": [
                make_condition(conditions, "PodReadyToStartContainers", "True", "", ""),
                make_condition(conditions, "Initialized", "True", "", ""),
                make_condition(conditions, "Ready", *ready_state),
                make_condition(conditions, "ContainersReady", *ready_state),
                make_condition(conditions, "PodScheduled", "True", "", ""),
            ],
            "containerStatuses": statuses,
        }
        pod["status"]["podIPs"] = [{"ip": pod["status"]["podIP"]}]
        self.api.put(pod)
        for container in containers:
            self._container_events(pod, container)
        if any(self._failure(c) in _CRASH_FAILURES for c in containers):
            self._next_restart[meta["uid"]] = time.monotonic() + self.restart_backoff
            self._later(self.restart_backoff, ("Pod", meta.get("namespace") or "", meta["name"]))

    def _config_error(self, pod: Obj, containers: list[Obj], missing: Mapping[Any, str | None]) -> None:
        """Containers wait in CreateContainerConfigError; the kubelet retries until the Secret exists."""
        meta = meta_of(pod)
        statuses = []
        for c in containers:
            secret = missing.get(c.get("name"))
            state = ({"waiting": {"reason": "CreateContainerConfigError", "message": f'secret "{secret}" not found'}}
                     if secret else {"waiting": {"reason": "ContainerCreating"}})
            statuses.append(container_status(c, ready=False, state=state))
        if statuses != status_of(pod).get("containerStatuses"):
            pod["status"] = {**status_of(pod), "phase": "Pending", "containerStatuses": statuses}
            self.api.put(pod)
            for c in containers:
                if missing.get(c.get("name")):
                    message = f'Error: secret "{missing[c.get("name")]}" not found'
                    field_path = f"spec.containers{{{c.get('name')}}}"
                    self._recorder.record(pod, "Warning", "Failed", message, "kubelet", field_path)
        self._later(max(self.ready_delay, 0.5), ("Pod", meta.get("namespace") or "", meta["name"]))

    def _started_status(self, pod: Obj, container: Mapping[str, Any], now: str) -> Obj:
        failure = self._failure(container)
        image = container.get("image", "")
        if failure == _PULL_FAILURE:
            state = {"waiting": {"reason": _PULL_FAILURE, "message": f'Back-off pulling image "{image}"'}}
            return container_status(container, ready=False, state=state)
        if failure in _CRASH_FAILURES:
            status = container_status(container, ready=False, state={}, restarts=1)
            return self._crashed(pod, status, failure or "", now)
        state = {"running": {"startedAt": now}}
        status = container_status(container, ready=True, state=state)
        status["containerID"] = f"containerd://{safe_hash([meta_of(pod)['uid'], container.get('name')], 32)}"
        return status

    @staticmethod
    def _crashed(pod: Obj, status: Obj, failure: str, now: str) -> Obj:
        """A container status after another crash: waiting in back-off, last run terminated."""
        oom = failure == "OOMKilled"
        backoff = min(10 * 2 ** max(status["restartCount"] - 1, 0), 300)
        message = f"back-off {backoff}s restarting failed container={status['name']} pod={_pod_ref(pod)}"
        status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        status["lastState"] = {
            "terminated": {
                "exitCode": 137 if oom else 1,
                "reason": "OOMKilled" if oom else "Error",
                "startedAt": now,
                "finishedAt": now,
            }
        }
        status["started"] = False
        return status

    def _container_events(self, pod: Obj, container: Mapping[str, Any]) -> None:
        name, image = container.get("name", ""), container.get("image", "")
        field_path = f"spec.containers{{{name}}}"
        failure = self._failure(container)
        if failure == _PULL_FAILURE:
            reference = (
                f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
            )
            events = [
                ("Normal", "Pulling", f'Pulling image "{image}"'),
                ("Warning", "Failed", f'Failed to pull image "{image}": rpc error: code = NotFound desc = {reference}'),
                ("Warning", "Failed", "Error: ErrImagePull"),
                ("Normal", "BackOff", f'Back-off pulling image "{image}"'),
                ("Warning", "Failed", f"Error: {_PULL_FAILURE}"),
            ]
        else:
            events = [
                ("Normal", "Pulled", f'Container image "{image}" already present on machine'),
                ("Normal", "Created", f"Created container: {name}"),
                ("Normal", "Started", f"Started container {name}"),
            ]
            if failure in _CRASH_FAILURES:
                events.append(("Warning", "BackOff", self._backoff_message(pod, name)))
        for event_type, reason, message in events:
            self._recorder.record(pod, event_type, reason, message, "kubelet", field_path)

    @staticmethod
    def _backoff_message(pod: Obj, container: str) -> str:
        return f"Back-off restarting failed container {container} in pod {_pod_ref(pod)}"

    def _restart_tick(self, pod: Obj) -> None:
        meta = meta_of(pod)
        uid, key = meta["uid"], ("Pod", meta.get("namespace") or "", meta["name"])
        wait = self._next_restart[uid] - time.monotonic()
        if wait > 0:
            self._later(wait, key)
            return
        containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        restarts = 0
        for status in status_of(pod).get("containerStatuses") or []:
            failure = self._failure(containers.get(status.get("name")) or {})
            if failure in _CRASH_FAILURES:
                status["restartCount"] = int(status.get("restartCount") or 0) + 1
                self._crashed(pod, status, failure or "", utc_now())
                restarts = max(restarts, status["restartCount"])
                self._recorder.record(
                    pod,
                    "Warning",
                    "BackOff",
                    self._backoff_message(pod, status["name"]),
                    "kubelet",
                    f"spec.containers{{{status['name']}}}",
                )
        self.api.put(pod)
        delay = self.restart_backoff * 2 ** min(restarts, 5)
        self._next_restart[uid] = time.monotonic() + delay
        self._later(delay, key)

    def pod_log(self, pod: Mapping[str, Any], container: str | None) -> str | None:
        """What ``pods/log`` shows; None while the container has never started."""
        spec_containers = (pod.get("spec") or {}).get("containers") or []
        chosen = next((c for c in spec_containers if container in (None, c.get("name"))), None)
        if chosen is None:
            return None
        statuses = {s.get("name"): s for s in status_of(pod).get("containerStatuses") or []}
        status = statuses.get(chosen.get("name")) or {}
        if "running" not in (status.get("state") or {}) and not (status.get("lastState") or {}).get("terminated"):
            return None
        text = self.image_logs.get(str(chosen.get("image", "")), "")
        if not text and self._failure(chosen) == "CrashLoopBackOff":
            return "Error: the server process exited with status 1\n"
        return text
