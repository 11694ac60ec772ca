"""A switched network of a test's own for its brokers, built inside the session's
private network namespace (see conftest.py), and partitions drawn on it.

    session namespace: pytest and its Kafka clients
      rn<k>br  10.99.<k>.1/24     a Linux bridge: the switch
        ├─ rn<k>p0 ══ veth ══ eth0 10.99.<k>.10   namespace rn<k>b0: broker 0
        ├─ rn<k>p1 ══ veth ══ eth0 10.99.<k>.11   namespace rn<k>b1: broker 1
        └─ ...

Partitions are cut at the switch, by nft rules of the bridge family in the session
namespace: frames between two ports are dropped in the bridge's forward hook, frames
between a port and the session's own address in its input/output hooks. The brokers'
kernels see nothing: no link goes down, no route disappears, no error comes back; what
they send simply never arrives, as across a partitioned switch. TCP retransmits,
connects hang until the caller's timeout, and on `heal` the same connections resume.
ARP frames still pass: were they dropped too, a sender's kernel would give up neighbour
resolution after ~3 s and answer EHOSTUNREACH, a quick error rather than silence.
(A veth set down is not silent: the broker's route goes away and sends fail with
ENETUNREACH; `tc netem loss` and nft rules in the broker's own namespace act on the
sender's queue, where a drop can reach the sending socket as an error.)

The ruleset is rewritten in one nft transaction on every change, from the cuts held here.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap


class NetworkError(RuntimeError):
    pass


def run(*argv: str, stdin: str | None = None) -> str:
    """Runs an ip/nft command; its stderr becomes the error when it fails."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def missing_tools() -> list[str]:
    """The commands the network needs that are not installed, with their Debian packages."""
    needed = {"unshare": "util-linux", "ip": "iproute2", "nft": "nftables"}
    return [f"{tool} ({package})" for tool, package in needed.items() if shutil.which(tool) is None]


class Network:
    """The switch, one namespace per broker and the cuts between them.

    `index` keeps two networks of one test apart (names and subnet 10.99.<index>.0/24).
    Not thread-safe: cut and heal from the test's thread.
    """

    def __init__(self, index: int, n: int):
        assert 0 <= index < 200 and 0 < n <= 100, (index, n)
        self.index = index
        self.n = n
        self.bridge = f"rn{index}br"
        self.client_address = f"10.99.{index}.1"
        self.addresses = [f"10.99.{index}.{10 + i}" for i in range(n)]
        self.namespaces = [f"rn{index}b{i}" for i in range(n)]
        self.ports = [f"rn{index}p{i}" for i in range(n)]  # the bridge's ends of the veths
        self.table = f"runnel{index}"
        self.cut_off: set[int] = set()              # cut from every other broker
        self.cut_from_clients: set[int] = set()     # and from the session's clients
        self.one_way: set[tuple[int, int]] = set()  # (i, j): what i sends j is lost
        self.created = False

    def prefix(self, i: int) -> list[str]:
        """The command prefix that runs a program in broker i's namespace (exec, no fork)."""
        return ["ip", "netns", "exec", self.namespaces[i]]

    # --- life cycle -------------------------------------------------------------------
    def create(self) -> "Network":
        self.created = True  # from here on, destroy() has something to undo
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.client_address}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for i in range(self.n):
            ns = self.namespaces[i]
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", self.ports[i], "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            run("ip", "link", "set", self.ports[i], "master", self.bridge, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.addresses[i]}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
        self._apply()
        return self

    def destroy(self) -> list[str]:
        """Deletes the rules, the namespaces (and with them the veths) and the bridge.
        Tries every step; returns what could not be removed (empty when all is gone)."""
        if not self.created:
            return []
        errors = []
        steps = [("nft", "delete", "table", "bridge", self.table)]
        steps += [("ip", "netns", "delete", ns) for ns in self.namespaces]
        steps += [("ip", "link", "delete", port) for port in self.ports]
        steps += [("ip", "link", "delete", self.bridge)]
        for step in steps:
            try:
                run(*step)
            except NetworkError as e:
                errors.append(str(e))
        self.created = False
        left = self.leftovers()
        return left and [*left, *errors]

    def leftovers(self) -> list[str]:
        """This network's namespaces, links and nft table that still exist."""
        names = set(run("ip", "netns", "list").split())
        links = {line.split(":")[1].strip().split("@")[0]
                 for line in run("ip", "-o", "link", "show").splitlines()}
        tables = set(run("nft", "list", "tables").split())
        return ([f"netns {ns}" for ns in self.namespaces if ns in names]
                + [f"link {link}" for link in [*self.ports, self.bridge] if link in links]
                + ([f"nft table bridge {self.table}"] if self.table in tables else []))

    # --- partitions -------------------------------------------------------------------
    def cut(self, i: int, *, clients: bool = False) -> None:
        """Broker i no longer reaches any other broker nor they it. The session's own
        clients still reach it (to watch it from inside the cut) unless `clients`."""
        self.cut_off.add(i)
        if clients:
            self.cut_from_clients.add(i)
        self._apply()

    def heal(self, i: int) -> None:
        """Undoes every cut that involves broker i."""
        self.cut_off.discard(i)
        self.cut_from_clients.discard(i)
        self.one_way = {(a, b) for a, b in self.one_way if i not in (a, b)}
        self._apply()

    def cut_between(self, i: int, j: int, *, one_way: bool = False) -> None:
        """What broker i sends broker j is lost, and unless `one_way` also what j sends
        i; both keep reaching everyone else (a partial partition)."""
        assert i != j
        self.one_way.add((i, j))
        if not one_way:
            self.one_way.add((j, i))
        self._apply()

    def heal_all(self) -> None:
        self.cut_off.clear()
        self.cut_from_clients.clear()
        self.one_way.clear()
        self._apply()

    def _apply(self) -> None:
        # "!= arp": every frame but ARP, see the module docs.
        drop = 'ether type != arp drop'
        forward = [f'iifname "{self.ports[i]}" {drop}' for i in sorted(self.cut_off)]
        forward += [f'oifname "{self.ports[i]}" {drop}' for i in sorted(self.cut_off)]
        forward += [f'iifname "{self.ports[i]}" oifname "{self.ports[j]}" {drop}'
                    for i, j in sorted(self.one_way)]
        into = [f'iifname "{self.ports[i]}" {drop}' for i in sorted(self.cut_from_clients)]
        out = [f'oifname "{self.ports[i]}" {drop}' for i in sorted(self.cut_from_clients)]

        def chain(name: str, rules: list[str]) -> str:
            body = "\n".join([f"type filter hook {name} priority filter; policy accept;"] + rules)
            return f"chain {name} {{\n{textwrap.indent(body, '    ')}\n}}"

        chains = "\n".join(chain(name, rules)
                           for name, rules in (("forward", forward), ("input", into),
                                               ("output", out)))
        # Declaring the table first makes the delete valid when it does not exist yet:
        # the whole file is one transaction, so no frame sees a half-written ruleset.
        script = (f"table bridge {self.table}\ndelete table bridge {self.table}\n"
                  f"table bridge {self.table} {{\n{textwrap.indent(chains, '    ')}\n}}\n")
        run("nft", "-f", "-", stdin=script)

    def describe(self) -> str:
        """The cuts in force, for messages."""
        return (f"cut off {sorted(self.cut_off)}, from clients {sorted(self.cut_from_clients)}, "
                f"one-way {sorted(self.one_way)}")
