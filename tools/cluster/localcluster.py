"""A Redis Cluster of one's own on 127.0.0.1 (Debian's redis-server and redis-cli): 3 masters
and 3 replicas, for the failover trials and the store benchmark."""
import os
import signal
import socket
import subprocess
import time


def free_port():
    """A port p with p + 10000 (the cluster bus) free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            continue
    raise SystemExit("no free port pair")


def cli(port, *args, timeout=10):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=timeout).stdout


class Cluster:
    def __init__(self, folder, node_timeout_ms):
        self.ports, self.procs = [], {}
        for i in range(6):
            p = free_port()
            d = os.path.join(folder, f"node-{p}")
            os.makedirs(d)
            self.procs[p] = subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--dir", d, "--cluster-enabled", "yes",
                 "--cluster-config-file", os.path.join(d, "nodes.conf"), "--cluster-node-timeout", str(node_timeout_ms),
                 "--appendonly", "yes", "--save", "", "--repl-diskless-sync-delay", "0", "--cluster-allow-reads-when-down", "yes", "--logfile", os.path.join(d, "log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.ports.append(p)
        for p in self.ports:
            self.wait(lambda: cli(p, "ping").strip() == "PONG", f"node {p} up")
        out = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                              "--cluster-replicas", "1", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise SystemExit(out.stdout + out.stderr)
        self.wait(self.healthy, "cluster healthy")

    def wait(self, check, what, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            if check():
                return
            time.sleep(0.1)
        raise SystemExit(f"timed out waiting for {what}")

    def alive(self):
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def healthy(self):
        for p in self.alive():
            if "cluster_state:ok" not in cli(p, "cluster", "info"):
                return False
            rep = cli(p, "info", "replication")
            if "role:slave" in rep and "master_link_status:up" not in rep:
                return False
        return True

    def masters(self):
        out = cli(self.alive()[0], "cluster", "nodes")
        return [int(l.split()[1].split("@")[0].split(":")[1]) for l in out.splitlines()
                if "master" in l.split()[2] and "fail" not in l.split()[2]]

    def kill(self, port):
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait()

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
