// Package container runs one container with libcontainer (runc's library),
// in photon-init's own process: no runc binary, no daemon.
//
// # From manifest to container
//
// Create combines a manifest (pkg/containers/manifest) with an unpacked
// image (pkg/containers/image) into an OCI runtime spec, writes it as
// DataDir/containers/NAME/config.json for inspection (in the background,
// at a low CPU priority, once the container runs; see
// Container.ConfigPath), and converts it with runc's specconv, so that the
// container gets exactly runc's semantics and runtime-tools' runtimetest
// can check the same config.json inside it.
//
// The process follows Docker's rules: a manifest entrypoint replaces the
// image's Entrypoint and drops its Cmd unless the manifest also gives a
// command; a command replaces Cmd. The environment is PATH (DefaultPath
// when neither sets one) and HOSTNAME, then the image's Env, then the
// runtime's NOTIFY_SOCKET (and WATCHDOG_USEC, WATCHDOG_PID, see below),
// then the manifest's entries overriding by key (an entry without "="
// removes the key), then HOME from the user's passwd entry (else "/");
// TERM is not set, since containers get pipes, not a terminal.
// working_dir, user and stop_signal override the image's; a user name or
// group name is resolved in the image's /etc/passwd and /etc/group (inside
// the container's root, symlinks included); a missing working directory is
// created. The image's volumes become anonymous volumes unless the
// manifest mounts something at the same path.
//
// # Isolation
//
// Each container has its own mount, PID, IPC, UTS and cgroup namespaces,
// and a network namespace as its network_mode says (see Networks). The
// hostname is the manifest's hostname, else the container's name.
//
// # Networks
//
// network_mode bridge (also an unset network_mode: the default, as in
// Compose) gives the container a network namespace of its own on the
// machine's container bridge (photon0, 10.88.0.0/16 unless
// Options.Network says otherwise): eth0 with an address that the
// container's name keeps across restarts (kept on disk under
// DataDir/ipam), a default route through the bridge, outbound NAT, and
// its published ports (manifest ports with a host port) forwarded from
// the machine's addresses and from the machine itself. "none" gives a
// namespace with only lo, up. Both are named namespaces
// (NetnsDir/NAME), made by Create and joined by libcontainer through their
// path, so the network is up before the container's first process runs;
// Destroy removes the namespace, the veth pair and the port rules (the
// address stays reserved until Remove). "container:NAME" joins the
// namespace of the container NAME, which must have been created first,
// and takes its host name; "host" shares the machine's network. The
// package pkg/net/containernet does the work.
//
// Containers on the bridge find each other by name through /etc/hosts:
// each bridged container's hosts file lists its own address with its host
// name and name, and every other bridged container's address with its
// name, its host name and the names of the containers sharing its
// namespace. The files are rewritten in place (the same inode, which is
// what the container has bind-mounted) whenever a bridged container is
// created or destroyed. There is no DNS server on the bridge: /etc/hosts
// needs no process, works with every libc and static binary, and the set
// of names changes only when photon-init itself creates or destroys a
// container. Names are not visible to containers with host networking.
//
// Capabilities are Docker's default set (the 14 of moby's oci package) with
// cap_add and cap_drop applied as Docker does (ALL in either). Docker's
// masked paths and read-only paths apply (those the kernel has),
// and no_new_privileges is set. /dev is a small tmpfs with runc's standard
// nodes (null, zero, full, random, urandom, tty, ptmx via /dev/pts) and
// /dev/pts, /dev/shm (64 MiB) and /dev/mqueue; /proc; /sys and the cgroup
// tree read-only. A privileged container gets every capability that
// photon-init itself holds, every host
// device, writable /sys and cgroup tree, and none of the masks,
// no_new_privileges or seccomp.
//
// # Seccomp
//
// A binary built with the "seccomp" build tag (CGO and libseccomp)
// applies Docker's default profile (github.com/moby/profiles/seccomp,
// converted by specconv) to every container that is not privileged;
// SeccompEnabled tells which kind this binary is. The release build
// (make, bin/photon-init) has the tag: Debian's libseccomp-dev ships a
// static libseccomp.a, linked into the static binary (about 0.8 MB with
// the profile). A build without the tag applies no seccomp filter, and
// capabilities, namespaces, masked paths and no_new_privileges are then
// the isolation.
//
// The profile is compiled to its BPF program in photon-init, once per
// distinct profile (it depends on the capabilities), and each container's
// init loads that program instead of compiling the profile with libseccomp
// itself, which was the largest part of a container's start (third_party/runc
// patches libcontainer for it). The program of Docker's default profile
// with the default capabilities is built into the binary
// (seccomp_builtin_amd64.bpf, checked against a fresh compile by
// TestBuiltinSeccompProgram), so the first container does not compile
// either. The program is the one libcontainer would have compiled:
// the same rules, architectures (x86_64, x86 and x32 on amd64) and
// -ENOSYS handling of unknown system calls.
//
// # Resources
//
// Cgroups are handled by libcontainer's cgroupfs driver: cgroup v2 where
// the unified hierarchy is mounted on /sys/fs/cgroup, v1 where only that
// exists, each container in Options.CgroupParent/NAME. mem_limit sets
// memory.max (v1: memory.limit_in_bytes; swap is not limited separately),
// cpus sets cpu.max to cpus×100ms per 100ms, pids_limit sets pids.max.
// ulimits become the first process's rlimits (without them it inherits
// photon-init's); sysctls are written in the container's namespaces (net.*
// only with its own network namespace); devices are created in the
// container's /dev and allowed in its device cgroup.
//
// # Files on the host
//
//	StateDir/NAME/               libcontainer's state (state.json)
//	NotifyDir/NAME/notify.sock   the sd_notify socket (tmpfs, /run/photon/notify)
//	DataDir/containers/NAME/
//	    rootfs/                  the root filesystem (overlay mount point)
//	    upper/ work/             the overlay's writable layer
//	    hostname hosts resolv.conf   bind-mounted on /etc/...
//	    config.json              the OCI spec
//	    layer.json               what the writable layer was made from
//	    volumes/                 anonymous volumes (target path escaped)
//	VolumesDir/NAME/             named volumes, created on first use
//	LogDir/NAME.log              the container's output (pkg/containers/logs)
//	NetnsDir/NAME                its network namespace (bridge, none; /run/photon/netns)
//	DataDir/ipam/BRIDGE.json     the bridge's addresses, by container name
//
// The root filesystem is an overlay: the image's layers (lowest first in
// image.Image.Layers, given to overlayfs highest first) under the
// container's upper directory. Where overlayfs is missing (not in
// /proc/filesystems, or the mount fails with ENODEV, EINVAL or EOPNOTSUPP)
// the layers are flattened into rootfs/ instead (image.Flatten), with a
// warning. The
// writable layer survives Destroy, so a container re-created from the same
// manifest and image finds its files again, as a restarted Docker container
// does; a changed manifest or image starts from a fresh layer (anonymous
// volumes stay, as Compose keeps them), and Runtime.Remove discards both
// on request. A new named or anonymous volume
// is filled with what the image has at its target, as in Docker; a missing
// host directory of a bind mount is created.
//
// /etc/hosts (loopback names and the hostname on 127.0.1.1, or on its
// address for a bridged container, see Networks), /etc/hostname
// and /etc/resolv.conf (a copy of Options.ResolvConf, empty when it does
// not exist) are generated and bind-mounted, writable as in Docker.
//
// When photon-init's root is the initramfs itself (the namespace's root
// mount, which has no parent), pivot_root(2) fails with EINVAL; Create
// detects that and has libcontainer enter the root with MS_MOVE and chroot
// instead (NoPivotRoot).
//
// # Processes
//
// libcontainer re-executes /proc/self/exe (a sealed copy of it) as
// "ARGV0 init" to set up the container: the binary (and a test binary)
// must call libcontainer.Init when its first argument is "init" and link
// libcontainer's nsenter. Every container process is created inside
// reaper.Exclusive and waited for by its owner, which then releases its pid
// (see pkg/boot/reaper). Output goes through pipes to a logs.Sink; stdin
// is /dev/null.
//
// Exec starts a further process in a running container (libcontainer's
// setns process: the container's namespaces, cgroup, capabilities,
// no_new_privileges, rlimits and seccomp profile; its environment plus the
// caller's entries, its working directory, its user or another), created
// through the reaper like the first one. Its stdio are pipes to the
// caller's io.Reader and io.Writers (one pipe when stdout and stderr are
// the same writer, so that combined output keeps its order) or a new
// terminal of the container's devpts, whose master comes back through
// libcontainer's console socket (runc's exec --tty protocol) with a Resize
// method; TERM=xterm is then set unless the container sets TERM. Run is
// Exec for health checks: argv, combined output (the first 4 KiB, as
// Docker keeps), and at its timeout the process and its descendants
// (found through the cgroup and their parent pids) are killed.
//
// # Readiness: sd_notify
//
// Every container gets a notify socket (package notify), cheap and
// harmless to a container that never writes to it; Docker has no such
// thing, and podman offers it only with --sdnotify=container, but a
// service_ready dependency needs it, and a manifest key to switch it on
// would be one more thing to forget. The socket is
// NotifyDir/NAME/notify.sock on the host (a tmpfs), mode 0666 in a
// directory of mode 0755 so that a process of any uid can send; that
// directory alone is bind-mounted read-only (and nosuid, nodev, noexec)
// on /run/photon/notify, so the container reaches only its own socket,
// through its own mount namespace, and NOTIFY_SOCKET is
// /run/photon/notify/notify.sock (photon-init's own path, so nothing an
// image has under /run/systemd is shadowed). A user mount on that
// directory wins, and the container then gets no socket and no
// NOTIFY_SOCKET. With a watchdog (manifest watchdog > 0) the environment
// also has WATCHDOG_USEC and WATCHDOG_PID=1: the first process is PID 1
// of the container's own PID namespace, so sd_watchdog_enabled(3) is true
// there and false in processes started by Exec, which inherit the
// variables. The socket listens from Create on, so that no READY=1 sent
// early is lost, and is closed when the first process has exited.
// Notifications delivers the messages without ever blocking the reader.
//
// # Exits and OOM kills
//
// Exit reports the exit code, the killing signal, how many of the
// container's processes the kernel's OOM killer killed during the run
// (the memory cgroup's oom_kill count, from start to exit) and whether the
// first process was one of them: it died of a SIGKILL that photon-init did
// not send while that count rose. While the container runs, OOMEvents
// reports each kill, the first process's or a child's: on cgroup v2
// memory.events is watched with inotify, on cgroup v1 an eventfd is
// registered for memory.oom_control (whose notification precedes the
// kill, so the count is read until it moves). Both descriptors are
// non-blocking and go through Go's poller: no thread is parked per
// container. libcontainer's own NotifyOOM was not used: on v2 it reports
// every later change of memory.events once a kill has happened, its
// goroutine blocks for good on an unread channel, it cannot be stopped
// before the cgroup goes, and it parks a thread in a blocking read per
// container.
package container
