"""Names, addresses and paths of the lab: the one place they are decided."""

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


HOSTS = (
    Host("hv1", MGMT_NET + ".11", MIG_NET + ".11", "hypervisors"),
    Host("hv2", MGMT_NET + ".12", MIG_NET + ".12", "hypervisors"),
    Host("hv3", MGMT_NET + ".13", MIG_NET + ".13", "hypervisors"),
    Host("storage", MGMT_NET + ".20", None, "storage_hosts"),
)
STORAGE_HOST = "storage"


def host(name):
    for candidate in HOSTS:
        if candidate.name == name:
            return candidate
    raise KeyError("no lab host named %r (hosts: %s)" % (name, ", ".join(h.name for h in HOSTS)))
