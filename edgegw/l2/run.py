"""``edgegw l2``: follow the gateway's admin API and keep the announcements in step with it.

Theory of operation
-------------------
Once a second `follow` asks ``/api/status`` what the gateway holds, reads the MetalLB resources
under DIR (only when a file changed), lets `announcer.plan` decide, and hands the `diff` to an
`Actuator`, which carries it out: the real one adds the address to ``lo`` and tells the
interface speakers to take or release it; tests pass a fake.

When the gateway does not answer, the last known addresses stay announced for a grace period
(30 s by default). A gateway restart, whether a crash that systemd restarts or an upgrade,
comes back within seconds holding the same addresses (they are kept in its state directory),
so withdrawing at once would only flap the LAN: neighbours would see the address vanish and
reappear, and connections retried in the gap would be refused by our own kernel. After the
grace period the gateway is taken to be gone and everything is withdrawn. On cancellation
(SIGTERM) everything is withdrawn, shielded so that the cleanup itself is not cancelled.

Under ``--cluster`` a `Session` joins the nodes in etcd. The addresses `plan` would announce
here are this node's *eligible* ones; the session decides which of them this node owns, and
only those are announced. The session calls back on every change (a takeover, a lost lease,
the health deadline), and the follower re-plans at once, without waiting for the next poll.
On SIGTERM the speaker stops answering first and the lease is revoked after, so the next node
takes over at once and never overlaps. The grace period for a silent gateway shrinks to 3 s
under ``--cluster``: another node's gateway serves the same addresses, so handing them over
beats announcing a gateway that does not answer (and a node that returns takes nothing back).
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NoReturn, Protocol

import trio

from edgegw import systemd
from edgegw.cluster.options import ClusterOptions
from edgegw.cluster.session import Session
from edgegw.l2.announcer import (
    Action,
    AddLocal,
    Announcements,
    Release,
    Take,
    diff,
    plan,
    withdraw_all,
)
from edgegw.l2.host import LocalAddresses
from edgegw.l2.sources import ConfigDirWatcher, StatusUnavailable, fetch_status, held_addresses
from edgegw.l2.speaker import InterfaceInfo, InterfaceSpeaker
from edgegw.logsetup import quiet_libraries

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
GRACE_PERIOD = 30.0
CLUSTER_GRACE_PERIOD = 3.0
ARP_IGNORE = Path("/proc/sys/net/ipv4/conf/all/arp_ignore")
FETCH_TIMEOUT = 5.0


class Actuator(Protocol):
    """Carries out one planned action."""

    async def apply(self, action: Action) -> None: ...


@dataclass(slots=True)
class HostActuator:
    """The real actuator: ``lo`` addresses plus one speaker per interface."""

    speakers: Mapping[str, InterfaceSpeaker]
    local: LocalAddresses = field(default_factory=LocalAddresses)

    async def apply(self, action: Action) -> None:
        if isinstance(action, AddLocal):
            await self.local.add(action.address)
        elif isinstance(action, Take):
            self.speakers[action.interface].take(action.address)
        elif isinstance(action, Release):
            self.speakers[action.interface].release(action.address)
        else:
            await self.local.remove(action.address)


@dataclass(slots=True)
class Follower:
    """The state between two polls: what is announced and when the gateway last answered."""

    config_dir: Path
    interfaces: Sequence[str]
    admin: str
    actuator: Actuator
    grace: float = GRACE_PERIOD
    current: Announcements = field(default_factory=dict)
    held: frozenset[str] = frozenset()
    last_answer: float = -math.inf
    session: Session | None = None
    _watcher: ConfigDirWatcher | None = None
    _lock: trio.Lock = field(default_factory=trio.Lock)

    async def step(self) -> None:
        """Poll once and carry out whatever changed."""
        await self._refresh_held()
        await self.reconcile()

    async def reconcile(self) -> None:
        """Plan from what is known now (held addresses, config, cluster) and carry it out."""
        async with self._lock:
            if self._watcher is None:
                self._watcher = ConfigDirWatcher(self.config_dir)
            config = self._watcher.current()
            decision = plan(self.held, config.pools, config.advertisements, self.interfaces)
            wanted = self._owned(decision.announcements)
            await self._apply(diff(self.current, wanted))
            self.current = wanted

    def _owned(self, announcements: Announcements) -> Announcements:
        """Under ``--cluster``, only the eligible addresses this node owns."""
        if self.session is None:
            return announcements
        eligible = frozenset(str(a) for found in announcements.values() for a in found)
        self.session.set_eligible(eligible)
        owned = self.session.announced()
        kept = {name: frozenset(a for a in found if str(a) in owned)
                for name, found in announcements.items()}  # fmt: skip
        return {name: found for name, found in kept.items() if found}

    async def _refresh_held(self) -> None:
        try:
            with trio.fail_after(FETCH_TIMEOUT):
                status = await fetch_status(self.admin)
            held = held_addresses(status)
        except (StatusUnavailable, trio.TooSlowError) as exc:
            if trio.current_time() - self.last_answer > self.grace and self.held:
                log.warning("gateway silent for %.0f s (%s); withdrawing", self.grace, exc)
                self.held = frozenset()
            return
        if held != self.held:
            log.info("gateway holds %s", ", ".join(sorted(held)) or "nothing")
        self.held, self.last_answer = held, trio.current_time()

    async def _apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            log.info("%s", action)
            try:
                await self.actuator.apply(action)
            except Exception:  # one failed address must not stop the others
                log.exception("cannot carry out %s", action)

    async def withdraw(self) -> None:
        """Let go of everything; shielded, as it runs while being cancelled.

        Under ``--cluster`` the lease is revoked as soon as the speakers stopped answering,
        before the slower removal of the addresses from ``lo``, so the next node takes over
        without waiting for it.
        """
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            async with self._lock:
                actions = withdraw_all(self.current)
                await self._apply([a for a in actions if isinstance(a, Release)])
                if self.session is not None:
                    await self.session.revoke()
                await self._apply([a for a in actions if not isinstance(a, Release)])
                self.current = {}


async def follow(
    follower: Follower,
    *,
    poll_interval: float = POLL_INTERVAL,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Poll forever; on cancellation withdraw every announcement before returning."""
    try:
        await follower.step()
        task_status.started()
        async with trio.open_nursery() as nursery:
            if follower.session is not None:
                nursery.start_soon(_follow_cluster, follower, follower.session)
            while True:
                await trio.sleep(poll_interval)
                await follower.step()
    finally:
        await follower.withdraw()


async def _follow_cluster(follower: Follower, session: Session) -> NoReturn:
    """Re-plan whenever the session reports a change (coalescing bursts of them)."""
    changed = trio.Event()

    def wake() -> None:
        changed.set()

    session.on_change = wake
    while True:
        await changed.wait()
        changed = trio.Event()
        await follower.reconcile()


async def serve_l2(
    config_dir: Path,
    interfaces: Sequence[str],
    admin: str,
    *,
    grace: float = GRACE_PERIOD,
    cluster: ClusterOptions | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run the speakers on ``interfaces`` and follow the gateway at ``admin`` until cancelled.

    Raises:
        OSError: an interface does not exist, or no CAP_NET_RAW (PermissionError).
    """
    infos = [InterfaceInfo.lookup(name) for name in interfaces]
    local = LocalAddresses()
    await local.remove_leftovers()
    speakers = {info.name: InterfaceSpeaker(info) for info in infos}
    actuator = HostActuator(speakers, local)
    if cluster is not None:
        grace = min(grace, CLUSTER_GRACE_PERIOD)
        _check_arp_ignore()
    follower = Follower(config_dir, interfaces, admin, actuator, grace)
    if cluster is None:
        await _serve(follower, speakers.values(), task_status)
    async with cluster.client() as client:
        follower.session = Session(client, cluster.node, cluster.lease_ttl)
        try:
            await _serve(follower, speakers.values(), task_status)
        finally:  # the speaker has stopped answering: hand the addresses over at once
            with trio.CancelScope(shield=True), trio.move_on_after(cluster.lease_ttl):
                await follower.session.revoke()


def _check_arp_ignore(path: Path = ARP_IGNORE) -> None:
    """Warn when the kernel itself answers ARP for addresses on ``lo``.

    With several nodes that matters: a speaker killed with -9 leaves its addresses on ``lo``,
    and with ``arp_ignore=0`` the kernel keeps answering for them after another node took over.
    """
    try:
        value = path.read_text().strip()
    except OSError:
        return
    if value == "0":
        log.warning(
            "net.ipv4.conf.all.arp_ignore is 0: this kernel answers ARP for the addresses on lo "
            "too, also after a crash of this speaker; set it to 1 on every node"
        )


async def _serve(
    follower: Follower,
    speakers: Iterable[InterfaceSpeaker],
    task_status: trio.TaskStatus[None],
) -> NoReturn:
    async with trio.open_nursery() as nursery:
        for speaker in speakers:
            await nursery.start(speaker.serve)
        if follower.session is not None:
            await nursery.start(follower.session.serve)
        await nursery.start(follow, follower)
        task_status.started()
        await trio.sleep_forever()
    raise AssertionError("unreachable")


async def _main(args: argparse.Namespace) -> int:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            serve = partial(serve_l2, cluster=ClusterOptions.from_args(args))
            await nursery.start(serve, args.config, args.interface, args.admin)
            await nursery.start(systemd.serve_watchdog)
            systemd.ready(f"announcing on {', '.join(args.interface)}")
            async for signum in signals:
                log.info("%s: withdrawing and stopping", signal.Signals(signum).name)
                systemd.stopping()
                nursery.cancel_scope.cancel()
                break
    return 0


def main(args: argparse.Namespace) -> int:
    """``edgegw l2 -c DIR --interface IFACE [--admin ADDR]``; returns the exit code."""
    level = str(getattr(args, "log_level", "info")).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    try:
        return trio.run(_main, args)
    except ValueError as exc:
        log.error("edgegw l2: %s", exc)
    except PermissionError as exc:
        log.error("edgegw l2 needs CAP_NET_RAW and CAP_NET_ADMIN: %s", exc)
    except OSError as exc:
        log.error("edgegw l2: %s", exc)
    return 1
