"""Names, addresses and paths of the lab: the one place they are decided."""

import json
import os
from dataclasses import dataclass
from typing import Optional

# Runtime state (overlays, PIDs, SSH key) and the cache of slow-to-build parts
# (base root file system, guest images). Both live outside any checkout, so
# that a second clone (CI) reuses the cache and can tear down a lab that
# another clone left behind.
STATE_DIR = os.environ.get("VIRTOPS_LAB_STATE", "/var/lib/virtops-lab")
CACHE_DIR = os.environ.get("VIRTOPS_LAB_CACHE", "/var/cache/virtops-lab")
STATE_FILE = os.path.join(STATE_DIR, "state.json")
HOSTS_DIR = os.path.join(STATE_DIR, "hosts")
SSH_DIR = os.path.join(STATE_DIR, "ssh")
SSH_KEY = os.path.join(SSH_DIR, "id_ed25519")
KNOWN_HOSTS = os.path.join(SSH_DIR, "known_hosts")

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB_DIR = os.path.join(REPO_DIR, "lab")
INVENTORY = os.path.join(REPO_DIR, "inventories", "lab", "hosts.yml")

# Everything the lab creates in the machine's network stack starts with this,
# so that `down` can find leftovers even without a state file.
PREFIX = "vo-"
DOMAIN = "lab.test"

# 198.18.0.0/15 is reserved for network benchmark tests (RFC 2544): nothing
# outside the lab uses it, and no lab host has a route out of its subnet.
MGMT_BRIDGE = PREFIX + "mgmt"
MIG_BRIDGE = PREFIX + "mig"
MGMT_NET = "198.18.0"
MIG_NET = "198.18.1"
PREFIX_LEN = 24
CONTROL_ADDRESS = MGMT_NET + ".1"
# The guests' network: a bridge on every hypervisor (GUEST_HOST_BRIDGE, inside its
# namespace), each joined by a veth to one bridge on the machine, as hosts' trunk
# ports join one VLAN. The control node has an address on it; guests get theirs from
# `labctl guest define`, and answer a TCP echo on GUEST_ECHO_PORT.
GUEST_BRIDGE = PREFIX + "guest"
GUEST_HOST_BRIDGE = "vmbr0"
GUEST_NET = "198.18.2"
GUEST_CONTROL_ADDRESS = GUEST_NET + ".1"
GUEST_FIRST, GUEST_LAST = 10, 250
GUEST_ECHO_PORT = 7

# The package mirror: Debian's apt-cacher-ng, run by the lab on the control
# node's management address, its cache kept with the lab's other caches. The
# hosts' apt goes through it; it is the only way out of the lab, and only to
# Debian's archive.
MIRROR_PORT = 3142
MIRROR_URL = "http://%s:%d" % (CONTROL_ADDRESS, MIRROR_PORT)
MIRROR_CACHE = os.path.join(CACHE_DIR, "apt-cacher-ng")
MIRROR_STATE = os.path.join(STATE_DIR, "mirror")

# Where guest kernels and initramfs are visible inside every host: the same
# path on every host, as direct kernel boot needs for migration.
GUEST_MOUNT = "/var/lib/virtops-lab/guest"
# Shared disk images live on the storage host and are exported over NBD.
STORAGE_IMAGES = "/srv/images"
NBD_FIRST_PORT = 10809


# Hypervisor generations a host can run: a Debian release, its libvirt and QEMU.
# debian12 is the default: the whole suite is known to pass on it; debian13 is
# chosen per host (labctl up --releases hv3=debian13).
RELEASES = {
    "debian12": {"suite": "bookworm", "libvirt": "9.0", "qemu": "7.2"},
    # systemd 257 refuses cgroup v1: its containers get the unified hierarchy alone.
    "debian13": {"suite": "trixie", "libvirt": "11.3", "qemu": "10.0",
                 "nspawn_env": {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}},
}
DEFAULT_RELEASE = "debian12"


def parse_releases(text):
    """{host: release} from "hv1=debian12 hv3=debian13" (spaces or commas between)."""
    chosen = {}
    for item in text.replace(",", " ").split():
        name, sep, release = item.partition("=")
        if not sep:
            raise ValueError("%r: expected HOST=RELEASE" % item)
        host(name)
        if release not in RELEASES:
            raise ValueError("%r: no release %r (releases: %s)" % (item, release, ", ".join(sorted(RELEASES))))
        chosen[name] = release
    return chosen


@dataclass(frozen=True)
class Host:
    name: str
    mgmt_address: str
    mig_address: Optional[str]
    group: str

    @property
    def fqdn(self):
        return "%s.%s" % (self.name, DOMAIN)

    @property
    def netns(self):
        return PREFIX + self.name

    @property
    def machine(self):
        return PREFIX + self.name

    def veth(self, net):
        """Name of the machine-side end of the host's link to a network."""
        return "%s%s-%s" % (PREFIX, self.name, net)

    @property
    def dir(self):
        return os.path.join(HOSTS_DIR, self.name)

    @property
    def root(self):
        return os.path.join(self.dir, "root")


DEFAULT_HYPERVISORS = 3
MAX_HYPERVISORS = 200
STORAGE_HOST = "storage"


def make_hosts(hypervisors=DEFAULT_HYPERVISORS):
    """hv1 ... hvN and the storage host. hvN is .10+N on both networks, skipping the storage host's .20."""
    if not 1 <= hypervisors <= MAX_HYPERVISORS:
        raise ValueError("between 1 and %d hypervisors, not %d" % (MAX_HYPERVISORS, hypervisors))
    made = []
    for number in range(1, hypervisors + 1):
        last = 10 + number if number < 10 else 11 + number
        made.append(Host("hv%d" % number, "%s.%d" % (MGMT_NET, last), "%s.%d" % (MIG_NET, last), "hypervisors"))
    made.append(Host(STORAGE_HOST, MGMT_NET + ".20", None, "storage_hosts"))
    return tuple(made)


def _recorded_hypervisors():
    """How many hypervisors the running lab has (its state file), else the default."""
    try:
        with open(STATE_FILE) as handle:
            return int(json.load(handle).get("hypervisor_count") or DEFAULT_HYPERVISORS)
    except (OSError, ValueError, TypeError):
        return DEFAULT_HYPERVISORS


# The lab's hosts: those of the running lab; `labctl up --hosts N` sets them anew.
HOSTS = make_hosts(_recorded_hypervisors())


def host(name):
    for candidate in HOSTS:
        if candidate.name == name:
            return candidate
    raise KeyError("no lab host named %r (hosts: %s)" % (name, ", ".join(h.name for h in HOSTS)))
