#!/usr/bin/env python3
"""Inspects an image that scripts/image-check.sh built, without running a container.

Compares the image's config (`podman image inspect`) with the runtime part of the release
Dockerfile (labels, ENV, EXPOSE, USER, ENTRYPOINT of its last stage), unpacks the layers
of a `podman save --format docker-archive` tar and checks the entrypoint binary there: a
static ELF (no PT_INTERP), executable, answering `--version` with the workspace version
when run directly. Bounds the image size.

Prints one summary line on success; exits 1 with one line per problem otherwise.
"""
import argparse
import json
import os
import shlex
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile

PT_INTERP = 3


def release_runtime(dockerfile):
    """The LABEL/ENV/EXPOSE/USER/ENTRYPOINT instructions of the Dockerfile's last stage."""
    lines, cur = [], ""
    with open(dockerfile) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if cur and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            lines.append(cur + line)
            cur = ""
    stage = []
    for line in lines:
        word = line.split(None, 1)[0].upper()
        if word == "FROM":
            stage = []
        else:
            stage.append(line)
    out = {"labels": {}, "env": {}, "expose": set(), "user": None, "entrypoint": None}
    for line in stage:
        word, _, rest = line.strip().partition(" ")
        word = word.upper()
        if word in ("LABEL", "ENV"):
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                out["labels" if word == "LABEL" else "env"][key] = value
        elif word == "EXPOSE":
            for port in rest.split():
                out["expose"].add(port if "/" in port else port + "/tcp")
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "ENTRYPOINT":
            out["entrypoint"] = json.loads(rest)
    return out


def elf_interp(path):
    """True if the ELF file has a PT_INTERP program header (needs a dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        if head[4] != 2 or head[5] != 1:
            raise ValueError("not a 64-bit little-endian ELF file")
        phoff = struct.unpack_from("<Q", head, 0x20)[0]
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(
        struct.unpack_from("<I", table, i * phentsize)[0] == PT_INTERP for i in range(phnum)
    )


def unpack(archive, dest):
    """Applies the archive's layers in order into dest; returns {path: TarInfo} of the result."""
    members = {}
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer), mode="r:*") as tar:
                for m in tar.getmembers():
                    name = os.path.normpath("/" + m.name)
                    base = os.path.basename(name)
                    if base.startswith(".wh."):
                        gone = os.path.join(os.path.dirname(name), base[4:])
                        for k in [k for k in members if k == gone or k.startswith(gone + "/")]:
                            del members[k]
                        continue
                    members[name] = m
                kw = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
                tar.extractall(dest, numeric_owner=True, **kw)
    return members


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--inspect", required=True)
    p.add_argument("--archive", required=True)
    p.add_argument("--release-dockerfile", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--max-mb", type=float, required=True)
    a = p.parse_args()

    problems = []
    bad = problems.append
    with open(a.inspect) as f:
        image = json.load(f)[0]
    config = image.get("Config") or {}
    want = release_runtime(a.release_dockerfile)
    rel = os.path.relpath(a.release_dockerfile)

    # --- config against the release Dockerfile ------------------------------------------
    user = config.get("User") or ""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        bad(f"user is {user!r}, not numeric uid:gid (Kubernetes' runAsNonRoot needs a number)")
    elif int(uid) == 0:
        bad(f"user is {user!r}: the image runs as root")
    if user != want["user"]:
        bad(f"user is {user!r}, {rel} says {want['user']!r}")
    entrypoint = config.get("Entrypoint") or []
    if entrypoint != want["entrypoint"]:
        bad(f"entrypoint is {entrypoint}, {rel} says {want['entrypoint']}")
    ports = set((config.get("ExposedPorts") or {}).keys())
    if ports != want["expose"]:
        bad(f"exposed ports are {sorted(ports)}, {rel} says {sorted(want['expose'])}")
    labels = config.get("Labels") or image.get("Labels") or {}
    for key, value in want["labels"].items():
        if labels.get(key) != value:
            bad(f"label {key} is {labels.get(key)!r}, {rel} says {value!r}")
    if labels.get("org.opencontainers.image.version") != a.version:
        bad(f"label org.opencontainers.image.version is "
            f"{labels.get('org.opencontainers.image.version')!r}, not {a.version!r}")
    env = dict(e.partition("=")[::2] for e in config.get("Env") or [])
    for key, value in want["env"].items():
        if env.get(key) != value:
            bad(f"ENV {key} is {env.get(key)!r}, {rel} says {value!r}")

    # --- the unpacked filesystem --------------------------------------------------------
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(a.archive))) as root:
        members = unpack(a.archive, root)
        if entrypoint:
            path = entrypoint[0]
            m = members.get(path)
            host = os.path.join(root, path.lstrip("/"))
            if m is None or not m.isfile():
                bad(f"entrypoint {path} is not a regular file in the image's layers")
            else:
                if not m.mode & 0o111:
                    bad(f"entrypoint {path} is not executable (mode {m.mode:o})")
                if uid.isdigit() and m.uid == int(uid) or m.mode & 0o022:
                    bad(f"entrypoint {path} is writable by the runtime user "
                        f"(owner {m.uid}, mode {m.mode:o})")
                try:
                    if elf_interp(host):
                        bad(f"entrypoint {path} is dynamically linked (has PT_INTERP): "
                            "a scratch image has no loader or libc")
                except ValueError as e:
                    bad(f"entrypoint {path}: {e}")
                env_run = {"PATH": "/usr/bin:/bin", "KUBECONFIG": "/nonexistent"}
                try:
                    r = subprocess.run([host, "--version"], env=env_run, capture_output=True,
                                       text=True, timeout=10)
                    out = (r.stdout + r.stderr).strip()
                    if r.returncode != 0:
                        bad(f"'{path} --version' from the unpacked image exited "
                            f"{r.returncode}: {out}")
                    elif a.version not in out:
                        bad(f"'{path} --version' from the unpacked image printed {out!r}, "
                            f"without the version {a.version}")
                except (OSError, subprocess.TimeoutExpired) as e:
                    bad(f"'{path} --version' from the unpacked image did not run: {e}")
        data_dir = want["env"].get("RUNNEL_DATA_DIR")
        if data_dir:
            m = members.get(data_dir)
            if m is None or not m.isdir():
                bad(f"the data directory {data_dir} (RUNNEL_DATA_DIR) is not in the image")
            elif uid.isdigit() and m.uid != int(uid):
                bad(f"the data directory {data_dir} belongs to uid {m.uid}, "
                    f"not the runtime user {uid}")
        if uid.isdigit():
            passwd = os.path.join(root, "etc/passwd")
            uids = set()
            if os.path.isfile(passwd):
                with open(passwd) as f:
                    uids = {ln.split(":")[2] for ln in f if ln.count(":") >= 6}
            if uid not in uids:
                bad(f"/etc/passwd in the image has no entry for uid {uid}")

    size_mb = image.get("Size", 0) / 1e6
    if size_mb > a.max_mb:
        bad(f"the image is {size_mb:.1f} MB, over the bound of {a.max_mb:g} MB "
            "(raise it in scripts/image-check.sh only if the growth is meant)")

    if problems:
        for line in problems:
            print(f"image-check: {a.name}: {line}", file=sys.stderr)
        return 1
    print(f"image-check: {a.name}: {size_mb:.1f} MB (bound {a.max_mb:g} MB), user {user}, "
          f"entrypoint {entrypoint[0]} static, answers --version {a.version}, "
          f"ports {' '.join(sorted(ports))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
