// Package blockdev finds the machine's block devices and tells what they
// hold: it lists disks and their partitions from sysfs (/sys/block), reads
// their superblocks and partition tables in Go, and waits for a device named
// by LABEL=, UUID=, PARTUUID=, PARTLABEL= or a path to appear.
//
// # Superblocks
//
// Probe recognises, at the offsets util-linux's libblkid documents:
//
//	type    where                        label            UUID
//	ext2/3/4  superblock at 1 KiB, 0xEF53  s_volume_name    s_uuid
//	xfs     "XFSB" at 0                  sb_fname         sb_uuid
//	btrfs   "_BHRfS_M" at 64 KiB + 64    label            fsid
//	vfat    boot sector BPB, "FAT..."     volume label     serial (XXXX-XXXX)
//	swap    "SWAPSPACE2" at page end     volume name      uuid
//
// ext2, ext3 and ext4 are told apart by their feature flags as libblkid does
// (a journal makes ext3; features ext3 lacks make ext4). A FAT label is
// read from the boot sector (mkfs.vfat -n and fatlabel write it there as
// well as in the root directory).
//
// # Partition tables
//
// ReadPartitions reads a GPT (header CRC-checked, 512- or 4096-byte
// sectors) or an MBR with its logical partitions, giving each partition its
// number as the kernel numbers it and its PARTUUID: the GPT partition's
// unique GUID, or for an MBR "SSSSSSSS-NN", the disk signature and the
// partition number in hex, as the kernel and libblkid form it.
//
// # Why not a library
//
// The one maintained Go prober, siderolabs/go-blockdevice's blkid, has no
// btrfs and no MBR partition table, and brings zap and several other
// modules; the formats needed here are small and stable, so they are read
// directly.
package blockdev
