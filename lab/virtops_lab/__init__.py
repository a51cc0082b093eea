"""The virtops.migration lab: real hypervisor hosts on one machine.

Hosts are systemd-nspawn containers booted with systemd as PID 1, each in a
network namespace of its own that the lab wires to two bridges (management and
migration). See lab/README.md.
"""
