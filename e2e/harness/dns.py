"""The names CoreDNS would answer for the node agent's namespaces, from Services and
EndpointSlices:

| name | address |
|---|---|
| `<hostname>.<service>.<ns>.svc[.cluster.local]` | an endpoint of a headless Service that has a hostname and is ready (or published not-ready) |
| `<service>.<ns>.svc[.cluster.local]`, headless | every ready endpoint |
| `<service>.<ns>.svc[.cluster.local]`, ClusterIP | one ready endpoint: there is no kube-proxy, so the Service's port must equal its target port |
"""

from __future__ import annotations

from .kube import Api


def _ready(endpoint: dict) -> bool:
    return bool((endpoint.get("conditions") or {}).get("ready"))


def names(api: Api, namespaces: list[str]) -> list[tuple[str, list[str]]]:
    """(address, names) pairs, sorted, for /etc/hosts."""
    found: dict[str, list[str]] = {}
    for ns in namespaces:
        services = api.get(f"/api/v1/namespaces/{ns}/services")["items"]
        slices = api.get(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices")["items"]
        by_service: dict[str, list[dict]] = {}
        for s in slices:
            owner = (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            by_service.setdefault(owner, []).extend(s.get("endpoints") or [])
        for svc in services:
            name = svc["metadata"]["name"]
            endpoints = by_service.get(name, [])
            ready = sorted(e["addresses"][0] for e in endpoints if _ready(e))
            fqdn = f"{name}.{ns}.svc"
            if svc["spec"].get("clusterIP") == "None":
                for e in endpoints:
                    if e.get("hostname") and _ready(e):
                        host = f"{e['hostname']}.{fqdn}"
                        found.setdefault(e["addresses"][0], []).extend(
                            [host, host + ".cluster.local"])
                chosen = ready
            else:
                chosen = ready[:1]
            for ip in chosen:
                found.setdefault(ip, []).extend([fqdn, fqdn + ".cluster.local"])
    return sorted((ip, sorted(set(n))) for ip, n in found.items())
