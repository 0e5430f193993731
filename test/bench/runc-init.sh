#!/bin/busybox sh
# The benchmark's busybox + runc /init (test/bench): what a hand-made
# initramfs does to run one OCI bundle with Debian's runc. It mounts what
# runc needs (proc, sys, devtmpfs, a tmpfs /run for runc's state, cgroup2),
# loads the network card's modules listed in /etc/bench/modules.MACHINE
# (MACHINE from benchmachine= on the kernel command line, which the kernel
# passes to init as an environment variable), brings lo and eth0 up with
# QEMU's address set statically (no DHCP, as the floor and photon-init with
# ip=), and runs the server's bundle with runc on the machine's network.
# The root is the initramfs, which pivot_root cannot leave: --no-pivot.
bb=/bin/busybox
$bb mount -t proc proc /proc
read up rest < /proc/uptime
echo "runc-init: pid1 start uptime ${up}s"
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
$bb mount -t tmpfs -o mode=0755 tmpfs /run
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup
read release < /proc/sys/kernel/osrelease
while read m; do
	$bb insmod "/lib/modules/$release/$m"
done < "/etc/bench/modules.$benchmachine"
$bb ip link set lo up
$bb ip addr add 10.0.2.15/24 dev eth0
$bb ip link set eth0 up
read up rest < /proc/uptime
echo "runc-init: network up uptime ${up}s"
/usr/sbin/runc run --no-pivot --bundle /bundle server
echo "runc-init: runc exited with status $?"
while :; do $bb sleep 3600; done
