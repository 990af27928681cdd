"""Roles, channel allow-lists and approval counts (pure logic)."""

from __future__ import annotations

from bot.config import ClusterConfig, Config, Roles
from bot.policy import GroupCache, Policy, needs_admin


def policy(groups: dict[str, list[str]] | None = None, **cluster) -> tuple[Policy, ClusterConfig]:
    c = ClusterConfig(name="prod", **cluster)
    cfg = Config(roles=Roles(admin=["UADMIN"], approver=["UAPP", "SAPPROVERS"], operator=["UOP"]), clusters=[c])
    fetched: list[str] = []

    def fetch(group: str) -> list[str]:
        fetched.append(group)
        if groups is None:
            raise RuntimeError("slack is down")
        return groups.get(group, [])

    return Policy(cfg, GroupCache(fetch)), c


def test_roles_rank_and_unknown_users_are_viewers():
    p, c = policy({})
    assert [p.role_of(u) for u in ("UADMIN", "UAPP", "UOP", "USTRANGER")] == ["admin", "approver", "operator",
                                                                               "viewer"]
    assert p.check("UOP", "C1", c, "operator", "scale").allowed
    denied = p.check("USTRANGER", "C1", c, "operator", "scale")
    assert not denied.allowed and "needs the *operator* role" in denied.reason and "yours is *viewer*" in denied.reason
    assert "`roles.operator`" in denied.reason
    assert p.check("UADMIN", "C1", c, "approver", "approve").allowed


def test_user_group_membership_grants_the_role():
    p, _ = policy({"SAPPROVERS": ["UGROUPIE"]})
    assert p.role_of("UGROUPIE") == "approver"


def test_an_unreachable_slack_denies_group_roles_instead_of_failing():
    p, _ = policy(None)
    assert p.role_of("UGROUPIE") == "viewer"


def test_channel_allow_list():
    p, c = policy({}, channels=["CPROD"])
    assert p.check("UOP", "CPROD", c, "operator", "scale").allowed
    denied = p.check("UOP", "CDEV", c, "operator", "scale")
    assert not denied.allowed and "<#CPROD>" in denied.reason


def test_destroy_always_needs_two_approvals():
    p, c = policy({}, approvals=0)
    assert p.approvals_needed(c, "scale") == 0
    assert p.approvals_needed(c, "destroy") == 2


def test_a_destroy_needs_an_admin_among_its_approvers_and_a_scale_does_not():
    p, _ = policy({})
    assert needs_admin("destroy") and not needs_admin("scale") and not needs_admin("provision")
    assert p.is_admin("UADMIN") and not p.is_admin("UAPP") and not p.is_admin("USTRANGER")
