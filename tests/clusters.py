"""A private Redis Cluster for the failover and chaos tests: 6 nodes (3 masters, 3 replicas,
cluster-node-timeout 2000 ms) started by `scripts/redis-cluster` on free loopback ports, and the
faults those tests inject: kill -9 of a master, waiting for its replica's promotion, restarting
the killed node (from its own config file, so it rejoins as a replica of the promoted one).

The ports come from below the kernel's ephemeral range (CLUSTER_TEST_PORT_BASE, default 7300, and
up in steps of 10 until a run of 6 ports and their bus ports, +10000, is free): a killed node's
port cannot be taken meanwhile by some client's outgoing connection, and two runs on one machine
(or `make test-cluster` on its own base) do not collide; a start that loses a race moves on.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from tests.subprocesses import ROOT

NODES = 6
SCRIPT = str(ROOT / "scripts" / "redis-cluster")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_bases(start: int | None = None, count: int = NODES, tries: int = 200):
    """Bases with `count` free loopback ports above them and their cluster bus ports (+10000)."""
    base = start or int(os.environ.get("CLUSTER_TEST_PORT_BASE", 7300))
    for _ in range(tries):
        ports = [*range(base, base + count), *range(base + 10000, base + 10000 + count)]
        if all(_port_free(port) for port in ports):
            yield base
        base += 10
        if base + 10000 + count > 32768:  # stay below the ephemeral range
            break


def _kill_started(directory: Path) -> None:
    """kill -9 the nodes a failed start left running, by their pid files (never `stop`, which
    would shut down whatever answers on those ports: maybe another run's nodes)."""
    for pidfile in directory.glob("redis-*.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


def cluster_state_ok(answer) -> bool:
    """CLUSTER INFO's answer says cluster_state:ok (redis-py parses it into a dict; raw text else)."""
    if isinstance(answer, dict):
        return answer.get("cluster_state") == "ok"
    text = answer.decode() if isinstance(answer, bytes) else str(answer)
    return "cluster_state:ok" in text


@dataclass
class Killed:
    """A master killed with kill -9: what restarting it takes."""

    node: ClusterNode
    config_file: str
    at: float  # time.monotonic() of the kill
    replica: int | None = None  # the port of its replica at the kill


class PrivateCluster:
    """A 3+3 cluster of our own (always stopped by `stop()`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.base = 0

    # --- life ----------------------------------------------------------------------------------

    def start(self) -> "PrivateCluster":
        for base in free_port_bases():
            env = self._env(base)
            if subprocess.run([SCRIPT, "start"], env=env, timeout=120).returncode == 0:
                self.base = base
                self.wait_replicas_online()
                return self
            _kill_started(self.workdir / f"cluster-{base}")  # lost a race for a port: the next base
        raise RuntimeError("no free run of ports for a private cluster")

    def stop(self) -> None:
        if self.base:
            subprocess.run([SCRIPT, "stop"], env=self._env(self.base), check=False, timeout=60)

    def _env(self, base: int) -> dict:
        return {
            **os.environ,
            "REDIS_CLUSTER_PORT_BASE": str(base),
            "REDIS_CLUSTER_DIR": str(self.workdir / f"cluster-{base}"),
        }

    @property
    def ports(self) -> range:
        return range(self.base, self.base + NODES)

    def startup_nodes(self) -> str:
        """`host:port` of the three nodes first started (masters at first), comma-separated."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])

    def env(self) -> dict:
        """The product's cluster settings (README, "Redis Cluster"): REDIS_URL names one node, the
        master of the first slots at the start, REDIS_CLUSTER_NODES two more."""
        return {
            "REDIS_CLUSTER": "true",
            "REDIS_URL": f"redis://127.0.0.1:{self.base}",
            "REDIS_CLUSTER_NODES": f"127.0.0.1:{self.base + 1},127.0.0.1:{self.base + 2}",
        }

    def client(self) -> RedisCluster:
        startup = [ClusterNode("127.0.0.1", port) for port in self.ports]
        return RedisCluster(startup_nodes=startup, socket_timeout=2.0, socket_connect_timeout=0.3)

    # --- state ---------------------------------------------------------------------------------

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=0.3)

    def _info(self, port: int, section: str) -> dict | None:
        try:
            return self._node(port).info(section)
        except redis.RedisError:
            return None

    def masters(self) -> list[int]:
        """Ports of the nodes that are masters now (and answer)."""
        infos = {port: self._info(port, "replication") for port in self.ports}
        return [port for port, info in infos.items() if info and info["role"] == "master"]

    def master_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot, asked of a node that answers."""
        slot = key_slot(key.encode())
        for port in self.ports:
            try:
                for start, end, master, *_ in self._node(port).execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return int(master[1])
            except redis.RedisError:
                continue
        raise AssertionError(f"no node answers CLUSTER SLOTS for {key}")

    def wait_replicas_online(self, timeout: float = 60.0) -> None:
        """Three masters, each with one replica in sync: a master killed now can be replaced (a
        fresh or restarted replica syncs first; one that has not cannot be promoted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            infos = [self._info(port, "replication") for port in self.ports]
            masters = [info for info in infos if info and info["role"] == "master"]
            if (
                len(masters) == 3
                and all(
                    info.get("connected_slaves") == 1 and info.get("slave0", {}).get("state") == "online"
                    for info in masters
                )
                and self.state_ok()
            ):
                return
            time.sleep(0.2)
        raise AssertionError("the private cluster's replicas never came online")

    def state_ok(self) -> bool:
        """Every node answering says cluster_state:ok (all slots served)."""
        answered = 0
        for port in self.ports:
            try:
                text = self._node(port).execute_command("CLUSTER INFO")
            except redis.RedisError:
                continue
            answered += 1
            if not cluster_state_ok(text):
                return False
        return answered > 0

    # --- faults --------------------------------------------------------------------------------

    def kill(self, port: int) -> Killed:
        """kill -9 the node on `port`."""
        info = self._node(port).info("server")
        replica = self._node(port).info("replication").get("slave0", {}).get("port")
        os.kill(int(info["process_id"]), signal.SIGKILL)
        killed = Killed(ClusterNode("127.0.0.1", port), info["config_file"], time.monotonic(), replica)
        for _ in range(100):  # until the port is closed
            if _port_free(port):
                break
            time.sleep(0.02)
        return killed

    def wait_promoted(self, killed: Killed, timeout: float = 30.0) -> float:
        """Until a replica of the killed master is a master (its slots are served again), then
        until every node says cluster_state:ok; the seconds from the kill to the promotion. (A
        node may report `fail` for a while after the promotion: its rejoin delay.)"""
        deadline = time.monotonic() + timeout
        port = killed.node.port
        promoted = None
        while time.monotonic() < deadline:
            if promoted is None and self._promoted(killed):
                promoted = time.monotonic() - killed.at
            if promoted is not None and self.state_ok():
                return promoted
            time.sleep(0.05)
        raise AssertionError(
            f"no replica of :{port} was promoted within {timeout} s (or no cluster_state:ok)"
        )

    def _promoted(self, killed: Killed) -> bool:
        if killed.replica is not None:  # one quick question to the one node that can take over
            info = self._info(killed.replica, "replication")
            return bool(info) and info["role"] == "master"
        masters = self.masters()
        return len(masters) == 3 and killed.node.port not in masters

    def restart(self, killed: Killed) -> None:
        """Start the killed node again from its config file: it rejoins as a replica; wait until
        every master has a replica in sync again."""
        subprocess.run(["redis-server", killed.config_file], check=True, timeout=30)
        self.wait_replicas_online()
