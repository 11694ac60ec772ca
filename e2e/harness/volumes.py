"""The node agent's volumes: a PersistentVolume per pending claim, and a pod's mounts as
host directories.

| volume | host directory |
|---|---|
| persistentVolumeClaim | `<volumes>/<namespace>/<claim>`: outlives every pod (a hostPath PV, pre-bound to the claim; the PV controller binds it) |
| configMap, secret | `<pod dir>/volumes/<name>`, one file per key (or per `items`), written at start |
| hostPath | the path itself |
| emptyDir, projected and others | `<pod dir>/volumes/<name>`, empty |
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Callable

from .kube import Api, ApiError
from .pods import Lookup, PodConfigError


class WaitingForVolume(RuntimeError):
    """A claim the pod needs is not bound yet (the kubelet's ContainerCreating)."""


def claim_dir(volumes: Path, namespace: str, claim: str) -> Path:
    return volumes / namespace / claim


def provision_claims(api: Api, volumes: Path, pod: dict, log: Callable[[str], None]) -> None:
    """Creates a PersistentVolume for each of the pod's claims that has none yet."""
    ns = pod["metadata"]["namespace"]
    for volume in pod["spec"].get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if not claim:
            continue
        pvc = api.get_or_none(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        if pvc is None or pvc["spec"].get("volumeName"):
            continue
        directory = claim_dir(volumes, ns, claim)
        directory.mkdir(parents=True, exist_ok=True)
        pv = {"apiVersion": "v1", "kind": "PersistentVolume",
              "metadata": {"name": f"local-{ns}-{claim}"},
              "spec": {
                  "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                  "accessModes": pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": "Retain",
                  "storageClassName": pvc["spec"].get("storageClassName") or "",
                  "hostPath": {"path": str(directory)},
                  "claimRef": {"namespace": ns, "name": claim, "uid": pvc["metadata"]["uid"]},
              }}
        try:
            api.create("/api/v1/persistentvolumes", pv)
            log(f"{ns}/{claim}: provisioned {directory}")
        except ApiError as e:
            if e.status != 409:
                raise


def mount_volumes(pod: dict, container: dict, pod_dir: Path, volumes_dir: Path,
                  lookup: Lookup) -> list[tuple[str, str]]:
    """(mountPath, host directory) of each of the container's mounts, longest path first."""
    ns = pod["metadata"]["namespace"]
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise PodConfigError(f"volumeMount {mount['name']!r} names no volume")
        local = pod_dir / "volumes" / mount["name"]
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            pvc = lookup("persistentvolumeclaims", claim)
            if pvc is None or (pvc.get("status") or {}).get("phase") != "Bound":
                raise WaitingForVolume(f"waiting for PersistentVolumeClaim {claim} to bind")
            local = claim_dir(volumes_dir, ns, claim)
        elif "configMap" in volume or "secret" in volume:
            kind = "configmaps" if "configMap" in volume else "secrets"
            source = volume.get("configMap") or volume["secret"]
            obj = lookup(kind, source.get("name") or source.get("secretName"))
            if obj is None and not source.get("optional"):
                raise PodConfigError(f"{kind[:-1]} of volume {mount['name']} not found")
            local.mkdir(parents=True, exist_ok=True)
            data = (obj or {}).get("data") or {}
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                value = data.get(item["key"], "")
                if kind == "secrets":
                    value = base64.b64decode(value).decode()
                (local / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (local / item["path"]).write_text(value)
        elif "hostPath" in volume:
            local = Path(volume["hostPath"]["path"])
        local.mkdir(parents=True, exist_ok=True)
        if mount.get("subPath"):
            local = local / mount["subPath"]
        mounts.append((mount["mountPath"], str(local)))
    return sorted(mounts, key=lambda m: len(m[0]), reverse=True)
