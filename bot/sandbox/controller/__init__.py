"""Stand-ins for kube-controller-manager, kube-scheduler and the kubelets inside the API emulator.

The controller reacts to every committed write (``notify``), reconciles on the emulator's event
loop and writes back through the same API the tests use, so clients observe the usual sequence:
a Deployment gets a ReplicaSet, the ReplicaSet gets Pending pods, the scheduler binds them (or
records ``FailedScheduling``), a kubelet starts them after ``ready_delay`` and the Deployment's
status follows. Delays are small and configurable so tests stay fast yet see intermediate states.

Reconciles never await between reading and writing, so on the single loop they cannot interleave
with request handlers; they only ever write when something changed, so they converge.

Pods the scheduler cannot place go to Karpenter (``karpenter``: NodePool → NodeClaim → Node) when
the cluster has NodePools. The parts live in their own modules (``workloads``, ``scheduler``,
``kubelet``, ``karpenter``, ``events``) and meet in
:class:`~bot.sandbox.controller.loop.Controller`. The operators (bot/sandbox/operators.py) get the
cluster API as an argument and share bot/sandbox/objects.py with the controller, so the controller
depends on them and never the other way round.
"""

from bot.sandbox.controller.loop import Controller
from bot.sandbox.objects import ClusterAPI, parse_quantity, pod_requests

__all__ = ["ClusterAPI", "Controller", "parse_quantity", "pod_requests"]
