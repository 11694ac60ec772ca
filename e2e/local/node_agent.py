"""The node agent: scheduler, kubelet, volume provisioner and DNS for the test namespaces.

Run by the suite's `node_agent` fixture inside the session's namespaces (see
harness/netns.py), with the admin kubeconfig. It

- registers a Node (`--node`), keeps its Lease renewed, and binds every pending pod of
  the namespaces labelled `--namespace-label` to it (a pod whose nodeSelector the node
  does not match stays Pending, `PodScheduled=False/Unschedulable`);
- provisions a PersistentVolume for each pending claim those pods use: a directory under
  `--work-dir`/volumes/<ns>/<claim> that outlives every pod (the PV controller binds it);
- runs each bound pod's (single) container as a local process: the image is mapped to a
  local binary (`--image SUBSTRING=PATH`), command/args/env as the kubelet builds them
  (harness/pods.py), volume mount paths and wildcard listen addresses rewritten, one
  address per pod (`--pod-cidr`, local to the session's loopback), restarted with back-off when it exits
  (`restartPolicy: Always`), killed and restarted on a failed liveness/startup probe;
- reports Ready from the pod's readiness probe (gRPC health, TCP or HTTP), writes pod
  status (phase, podIP, conditions, containerStatuses with restartCount and last state);
- on deletion sends SIGTERM, SIGKILL after the grace period, then removes the pod;
- publishes DNS names in the namespace's /etc/hosts from Services and EndpointSlices, as
  CoreDNS would: `<hostname>.<service>.<ns>.svc[.cluster.local]` for endpoints of
  headless Services, `<service>.<ns>.svc` for ready endpoints (a ClusterIP Service name
  maps to a ready endpoint: there is no kube-proxy, so its port must equal its target).

Timing: probe periods and initial delays are multiplied by `--probe-scale` (default 0.2,
so a 5 s period probes every second) and restart back-off is 1 s doubling to 20 s;
thresholds, timeouts and grace periods are the pod's own.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# e2e/, where the harness package is.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import dns, netns, pods, volumes  # noqa: E402
from harness.kube import Api, ApiError  # noqa: E402
from harness.procs import PidFile, _die_with_parent  # noqa: E402

LOOP_S = 0.3
LEASE_S = 40
BACKOFF_CAP_S = 20.0


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class PodWorker(threading.Thread):
    """Runs one pod's container for as long as the pod is bound here."""

    def __init__(self, agent: "Agent", pod: dict, ip: str):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['name']}", daemon=True)
        self.agent, self.pod, self.ip = agent, pod, ip
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.uid = meta["uid"]
        self.dir = agent.work / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid[:8]}"
        self.lock = threading.Lock()
        self.gone = threading.Event()  # the pod vanished from the API (force delete)
        self.proc: subprocess.Popen | None = None
        self.proc_started_at = ""
        self.restarts = 0
        self.ever_started = False
        self.ready = self.started = False
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.next_start = 0.0
        self.probes: dict[str, pods.Probe] = {}
        self.transitions: dict[str, tuple[str, str]] = {}
        self.written: str = ""
        self.start_time = pods.now_rfc3339()

    def update(self, pod: dict) -> None:
        with self.lock:
            self.pod = pod

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.agent.stopping.is_set():
                with self.lock:
                    pod = self.pod
                if self.gone.is_set():
                    self.kill(pod["spec"].get("terminationGracePeriodSeconds", 30))
                    return
                if pod["metadata"].get("deletionTimestamp"):
                    self.terminate(pod)
                    return
                self.step(pod)
                self.write_status(pod)
                time.sleep(0.2)
        except Exception as e:  # noqa: BLE001 - logged; the pod is left as it is
            log(f"{self.key}: worker failed: {type(e).__name__}: {e}")
        finally:
            self.kill(10)

    def step(self, pod: dict) -> None:
        now = time.monotonic()
        if self.proc is None:
            if now >= self.next_start:
                self.start_container(pod)
            return
        code = self.proc.poll()
        if code is not None:
            self.exited(code, "Completed" if code == 0 else "Error")
            return
        for kind in ("startup", "readiness", "liveness"):
            probe = self.probes.get(kind)
            if probe is None or not probe.due(now):
                continue
            if kind != "startup" and not self.started:
                continue
            if kind == "startup" and self.started:
                continue
            outcome = probe.run(self.ip, now)
            if kind == "startup" and outcome == "success":
                self.started = True
                for other in ("readiness", "liveness"):
                    if other in self.probes:
                        self.probes[other].start(now)
            elif kind == "readiness" and outcome is not None:
                if self.ready != (outcome == "success"):
                    log(f"{self.key}: ready={outcome == 'success'} {probe.last_error}")
                self.ready = outcome == "success"
            elif kind in ("startup", "liveness") and outcome == "failure":
                log(f"{self.key}: {kind} probe failed ({probe.last_error}): restarting")
                self.kill(pod["spec"].get("terminationGracePeriodSeconds", 30))
                self.exited(self.proc.returncode if self.proc else 137, "Error")
                return
        if "startup" not in self.probes:
            self.started = True
        if "readiness" not in self.probes and self.started:
            self.ready = True

    def start_container(self, pod: dict) -> None:
        try:
            argv, env, cwd = self.agent.command(pod, self.ip, self.dir)
        except pods.PodConfigError as e:
            self.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            self.next_start = time.monotonic() + 2
            return
        except volumes.WaitingForVolume as e:
            self.state = {"waiting": {"reason": "ContainerCreating", "message": str(e)}}
            self.next_start = time.monotonic() + 0.5
            return
        name = pod["metadata"]["name"]
        log_path = self.agent.log_dir / f"{pod['metadata']['namespace']}_{name}_{self.uid[:8]}" \
            f"_{self.restarts}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, start_new_session=True,
            )
        self.agent.pids.record(self.proc.pid, f"pod {self.key}")
        log(f"{self.key}: started pid {self.proc.pid} on {self.ip}: {' '.join(argv)}")
        self.ever_started = True
        self.started = self.ready = False
        self.proc_started_at = pods.now_rfc3339()
        self.state = {"running": {"startedAt": self.proc_started_at}}
        container = pod["spec"]["containers"][0]
        self.probes = pods.probes(container, self.agent.probe_scale)
        now = time.monotonic()
        for kind, probe in self.probes.items():
            if kind == "startup" or "startup" not in self.probes:
                probe.start(now)

    def exited(self, code: int, reason: str) -> None:
        log(f"{self.key}: container exited with {code}")
        self.last_state = {"terminated": {
            "exitCode": code, "reason": reason, "startedAt": self.proc_started_at,
            "finishedAt": pods.now_rfc3339()}}
        self.proc = None
        self.ready = self.started = False
        delay = min(BACKOFF_CAP_S, 2.0 ** self.restarts)
        self.restarts += 1
        self.next_start = time.monotonic() + delay
        self.state = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                  f"back-off {delay:.0f}s restarting failed container"}}

    def kill(self, grace_s: float) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log(f"{self.key}: still running after {grace_s}s: SIGKILL")
            proc.kill()
            proc.wait(timeout=10)

    def terminate(self, pod: dict) -> None:
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds",
                         pod["spec"].get("terminationGracePeriodSeconds", 30))
        log(f"{self.key}: deleted: SIGTERM, grace {grace}s")
        started = time.monotonic()
        self.kill(grace)
        code = self.proc.returncode if self.proc else None
        log(f"{self.key}: stopped with {code} after {time.monotonic() - started:.1f}s")
        self.proc = None
        try:
            self.agent.api.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    # --- status --------------------------------------------------------------------------
    def condition(self, type_: str, ok: bool, reason: str = "") -> dict:
        status = "True" if ok else "False"
        previous = self.transitions.get(type_)
        if previous is None or previous[0] != status:
            self.transitions[type_] = (status, pods.now_rfc3339())
        c = {"type": type_, "status": status, "lastProbeTime": None,
             "lastTransitionTime": self.transitions[type_][1]}
        if reason and not ok:
            c["reason"] = reason
        return c

    def write_status(self, pod: dict) -> None:
        container = pod["spec"]["containers"][0]
        scheduled = [c for c in (pod.get("status") or {}).get("conditions") or []
                     if c["type"] == "PodScheduled"]
        status = {
            "phase": "Running" if self.ever_started else "Pending",
            "hostIP": self.agent.host_ip, "hostIPs": [{"ip": self.agent.host_ip}],
            "podIP": self.ip, "podIPs": [{"ip": self.ip}],
            "startTime": self.start_time,
            "conditions": scheduled + [
                self.condition("PodReadyToStartContainers", True),
                self.condition("Initialized", True),
                self.condition("ContainersReady", self.ready, "ContainersNotReady"),
                self.condition("Ready", self.ready, "ContainersNotReady"),
            ],
            "containerStatuses": [{
                "name": container["name"], "image": container.get("image", ""),
                "imageID": "", "containerID":
                    f"local://{self.proc.pid}" if self.proc is not None else "",
                "ready": self.ready, "started": self.started,
                "restartCount": self.restarts, "state": self.state,
                "lastState": self.last_state,
            }],
        }
        text = json.dumps(status, sort_keys=True)
        if text == self.written:
            return
        meta = pod["metadata"]
        try:
            self.agent.api.merge_patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                {"metadata": {"uid": self.uid}, "status": status})
            self.written = text
        except ApiError as e:
            if e.status not in (404, 409):
                log(f"{self.key}: status write failed: {e}")


class Agent:
    def __init__(self, args: argparse.Namespace):
        self.api = Api.from_kubeconfig(Path(args.kubeconfig))
        self.node = args.node
        self.work = Path(args.work_dir)
        self.log_dir = Path(args.log_dir)
        self.hosts = netns.Hosts(Path(args.hosts_dir))
        self.pids = PidFile(Path(args.pid_file))
        self.images = [tuple(i.split("=", 1)) for i in args.image]
        self.probe_scale = args.probe_scale
        self.label = args.namespace_label
        self.stopping = threading.Event()
        self.workers: dict[str, PodWorker] = {}
        self.ips = 0
        self.pod_network = ipaddress.ip_network(args.pod_cidr)
        self.host_ip = str(self.pod_network[1])  # the node's own address
        self.published: list | None = None
        self.last_lease = 0.0

    # --- node ----------------------------------------------------------------------------
    def register(self) -> None:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": {
            "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64"}}}
        try:
            self.api.create("/api/v1/nodes", node)
        except ApiError as e:
            if e.status != 409:
                raise
        now = pods.now_rfc3339()
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "node agent is posting ready status",
                 "lastHeartbeatTime": now, "lastTransitionTime": now}
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"}
        self.api.merge_patch(f"/api/v1/nodes/{self.node}/status", {"status": {
            "conditions": [ready], "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.node}],
            "capacity": capacity, "allocatable": capacity,
            "nodeInfo": {"kubeletVersion": "v1.36.2-runnel-node-agent"},
        }})
        self.renew_lease()

    def renew_lease(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        lease = self.api.get_or_none(path)
        if lease is None:
            self.api.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node}, "spec": {
                    "holderIdentity": self.node, "leaseDurationSeconds": LEASE_S,
                    "renewTime": now}})
        else:
            self.api.merge_patch(path, {"spec": {"renewTime": now}})
        self.last_lease = time.monotonic()

    # --- one pass ------------------------------------------------------------------------
    def sync(self) -> None:
        if time.monotonic() - self.last_lease > 10:
            self.renew_lease()
        namespaces = [n["metadata"]["name"] for n in self.api.get(
            "/api/v1/namespaces", labelSelector=self.label)["items"]]
        seen = set()
        for ns in namespaces:
            for pod in self.api.get(f"/api/v1/namespaces/{ns}/pods")["items"]:
                seen.add(pod["metadata"]["uid"])
                self.handle(pod)
        for uid, worker in list(self.workers.items()):
            if uid not in seen:
                worker.gone.set()
            if not worker.is_alive():
                del self.workers[uid]
        self.publish_dns(namespaces)

    def handle(self, pod: dict) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if uid in self.workers:
            self.workers[uid].update(pod)
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        volumes.provision_claims(self.api, self.work / "volumes", pod, log)
        if not spec.get("nodeName"):
            if meta.get("deletionTimestamp"):
                return
            self.bind(pod)
            return
        if spec["nodeName"] != self.node:
            return
        if meta.get("deletionTimestamp"):  # deleted before it ever ran here
            self.api.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                            {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
            return
        worker = PodWorker(self, pod, self.allocate_ip())
        self.workers[uid] = worker
        worker.start()

    def bind(self, pod: dict) -> None:
        meta = pod["metadata"]
        labels = {"kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux"}
        selector = pod["spec"].get("nodeSelector") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            return  # stays Pending, as with a scheduler that finds no node
        self.api.create(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}})
        log(f"{meta['namespace']}/{meta['name']}: bound to {self.node}")

    def allocate_ip(self) -> str:
        """The next unused address of the pod range (never reused within a run)."""
        self.ips += 1
        return str(self.pod_network[256 + self.ips])

    def command(self, pod: dict, ip: str, pod_dir: Path):
        """argv, environment and working directory of the pod's container."""
        meta, spec = pod["metadata"], pod["spec"]
        ns = meta["namespace"]
        if len(spec["containers"]) != 1 or spec.get("initContainers"):
            raise pods.PodConfigError("the node agent runs pods of exactly one container")
        container = spec["containers"][0]
        image = container.get("image", "")
        binary = next((path for needle, path in self.images if needle in image), None)
        if binary is None:
            raise pods.PodConfigError(f"image {image!r} is not mapped to a local binary")

        def lookup(kind: str, name: str):
            return self.api.get_or_none(f"/api/v1/namespaces/{ns}/{kind}/{name}")

        mounts = volumes.mount_volumes(pod, container, pod_dir, self.work / "volumes", lookup)
        with_ip = dict(pod, status={**(pod.get("status") or {}), "podIP": ip,
                                    "hostIP": self.host_ip})
        env = pods.container_env(with_ip, container, lookup)
        command = container.get("command") or []
        if command and Path(command[0]).name != Path(binary).name:
            raise pods.PodConfigError(f"command {command[0]!r} is not {Path(binary).name}")
        args = [pods.expand(a, env) for a in command[1:] + (container.get("args") or [])]
        args = [pods.rewrite_wildcard(pods.rewrite_paths(a, mounts), ip) for a in args]
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOSTNAME": spec.get("hostname") or meta["name"], **env}
        cwd = pods.rewrite_paths(container.get("workingDir") or "/", mounts)
        if not Path(cwd).is_dir():
            cwd = str(pod_dir)
        return [binary, *args], full_env, cwd

    def publish_dns(self, namespaces: list[str]) -> None:
        entries = dns.names(self.api, namespaces) + [(self.host_ip, [self.node])]
        if entries != self.published:
            self.hosts.publish(entries)
            self.published = entries

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self.register()
        log(f"node {self.node} registered; pods of namespaces with label {self.label}")
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as e:  # noqa: BLE001 - the API may hiccup; try again
                log(f"sync failed: {type(e).__name__}: {e}")
            self.stopping.wait(LOOP_S)
        log("stopping: terminating every pod")
        for worker in self.workers.values():
            worker.join(timeout=70)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", default="runnel-local-node")
    parser.add_argument("--namespace-label", required=True, help="label selector")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--hosts-dir", required=True)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--image", action="append", default=[], help="SUBSTRING=BINARY")
    parser.add_argument("--pod-cidr", default="10.244.0.0/16",
                        help="addresses local to this network namespace")
    parser.add_argument("--probe-scale", type=float, default=0.2)
    Agent(parser.parse_args()).run()


if __name__ == "__main__":
    main()
