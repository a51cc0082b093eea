"""The lab's two networks: bridges on the machine, a veth pair per host and network.

Hosts live in network namespaces the lab creates. Lab addresses come from
198.18.0.0/15 and no host has a default route: traffic stays on the bridges.
"""

import os

from . import config
from .util import LabError, output, run

NETS = ("mgmt", "mig", "guest")


def _ip(*args, check=True):
    return run(["ip"] + list(args), check=check, capture=True)


def _link_exists(name, netns=None):
    prefix = ["-n", netns] if netns else []
    return _ip(*(prefix + ["link", "show", "dev", name]), check=False).returncode == 0


BRIDGES = (config.MGMT_BRIDGE, config.MIG_BRIDGE, config.GUEST_BRIDGE)


def _add_address(address, dev, netns=None):
    prefix = ["-n", netns] if netns else []
    address = "%s/%d" % (address, config.PREFIX_LEN)
    if address not in output(["ip"] + prefix + ["-o", "addr", "show", "dev", dev]):
        _ip(*(prefix + ["addr", "add", address, "dev", dev]))


def _add_bridge(name, netns=None):
    prefix = ["-n", netns] if netns else []
    if not _link_exists(name, netns):
        _ip(*(prefix + ["link", "add", name, "type", "bridge"]))
    _ip(*(prefix + ["link", "set", name, "up"]))


def create_bridges():
    for bridge in BRIDGES:
        _add_bridge(bridge)
    _add_address(config.CONTROL_ADDRESS, config.MGMT_BRIDGE)
    _add_address(config.GUEST_CONTROL_ADDRESS, config.GUEST_BRIDGE)


def create_host_links(host):
    """The host's namespace with mgmt0 (addressed) and, on hypervisors, mig0.

    mig0 comes up without an address: giving it one is the migration_network
    role's job, as on a real host whose second NIC is cabled but unconfigured.
    guest0 is a port of the host's guest bridge (vmbr0), which the guests' NICs
    join; the host itself has no address there.
    """
    if host.netns not in list_netns():
        _ip("netns", "add", host.netns)
    _ip("-n", host.netns, "link", "set", "lo", "up")
    links = [("mgmt", config.MGMT_BRIDGE, "mgmt0")]
    if host.mig_address:
        links.append(("mig", config.MIG_BRIDGE, "mig0"))
        links.append(("guest", config.GUEST_BRIDGE, "guest0"))
    for net, bridge, inner in links:
        outer = host.veth(net)
        if not _link_exists(outer):
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", host.netns)
        _ip("link", "set", outer, "master", bridge, "up")
        _ip("-n", host.netns, "link", "set", inner, "up")
    _add_address(host.mgmt_address, "mgmt0", host.netns)
    if host.mig_address:
        _add_bridge(config.GUEST_HOST_BRIDGE, host.netns)
        _ip("-n", host.netns, "link", "set", "guest0", "master", config.GUEST_HOST_BRIDGE)


def list_netns():
    return [line.split()[0] for line in output(["ip", "netns", "list"]).splitlines() if line.strip()]


def lab_links():
    """Every link on the machine whose name marks it as the lab's."""
    names = []
    for line in output(["ip", "-o", "link", "show"]).splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(config.PREFIX):
            names.append(name)
    return names


def remove_all():
    """Remove every namespace, veth and bridge the lab made; return what was removed."""
    removed = []
    for netns in list_netns():
        if netns.startswith(config.PREFIX):
            _ip("netns", "delete", netns, check=False)
            removed.append("netns " + netns)
    # Deleting one end of a veth deletes its peer; bridges go last.
    for name in sorted(lab_links(), key=lambda n: n in BRIDGES):
        if _link_exists(name):
            _ip("link", "delete", name, check=False)
            removed.append("link " + name)
    leftover = lab_links()
    if leftover:
        raise LabError("could not remove links: %s" % ", ".join(leftover))
    return removed


# --- knobs ---------------------------------------------------------------------------


def _check_net(net):
    if net not in NETS:
        raise LabError("unknown network %r (networks: %s)" % (net, ", ".join(NETS)))


def shape(host, rate_mbit, net="mig"):
    """Limit the host's link on a network to rate_mbit in both directions (0: remove the limit)."""
    _check_net(net)
    inner = net + "0"
    targets = [(None, host.veth(net)), (host.netns, inner)]
    for netns, dev in targets:
        tc = ["tc"] + (["-n", netns] if netns else [])
        if rate_mbit:
            run(tc + ["qdisc", "replace", "dev", dev, "root", "tbf",
                      "rate", "%dmbit" % rate_mbit, "burst", "64kb", "latency", "50ms"], capture=True)
        else:
            run(tc + ["qdisc", "del", "dev", dev, "root"], check=False, capture=True)


def set_link(host, up, net="mig"):
    """Cut (up=False) or heal (up=True) the host's link on a network."""
    _check_net(net)
    _ip("link", "set", host.veth(net), "up" if up else "down")


def write_etc_hosts(root):
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", ""]
    for host in config.HOSTS:
        lines.append("%s\t%s %s" % (host.mgmt_address, host.fqdn, host.name))
    lines.append("%s\tcontrol.%s control" % (config.CONTROL_ADDRESS, config.DOMAIN))
    path = os.path.join(root, "etc", "hosts")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
