// Package image is photon-init's image store and its local image sources:
// it turns an image reference into read-only layer directories that stack
// as overlay lowerdirs, plus the image's configuration.
//
// # References
//
// ParseReference tells apart oci:PATH[:TAG] (an OCI image layout
// directory), oci-archive:PATH[:TAG] (the same as a tar), docker-archive:
// PATH[:NAME:TAG|:@N] (a "docker save" archive, legacy or Docker 25's
// OCI-layout form), aci:PATH (package aci), rootfs:PATH (a plain root
// filesystem directory), and registry references, which are everything
// else ("host:5000/app:1.0", "x:tag", "x@sha256:...", optionally
// "docker://..."), parsed and normalised as Docker does (ParseNamed: the
// grammar of github.com/distribution/reference, by hand, since that package
// compiles its regular expressions at every start of the binary) and pulled
// by package registry. A multi-platform image (an index) is
// resolved to the manifest for the store's Platform (DefaultPlatform: linux,
// runtime.GOARCH, its variant), in layouts as in registries
// (SelectManifest, ResolveDescriptor).
//
// # Sources and how other packages plug in
//
// A Source resolves a reference to its config and layer blobs (Resolved);
// the store does the unpacking. The oci:, oci-archive: and docker-archive:
// sources are built in. Sources for the other transports are registered
// by the caller with WithSource(transport, SourceFunc): package registry
// and package aci import this package (for Source, Layer, ConfigFromOCI,
// ParseConfigFile, ResolveDescriptor), so this one never imports them and
// there is no cycle. A registry source needs only a BlobOpener over HTTP:
// ResolveDescriptor does the index → manifest → config → layers walk.
//
// # Store layout (root normally /var/lib/photon)
//
//	layers/ALG/HEX/fs          one layer, unpacked, an overlay lowerdir
//	layers/ALG/HEX/layer.json  its LayerRecord (digest, DiffID, opaque dirs, pending fixups)
//	images/HEX.json            an ImageRecord per reference (HEX = sha256 of the reference)
//	locks/KEY.lock             flock files
//
// A layer is unpacked once per blob digest, into layers/ALG/HEX.partial,
// and renamed into place only when the tree is complete and the blob's
// digest, size and DiffID are verified; the layer.json inside it is the
// mark of completeness. A failure removes the partial directory; one left
// by a crash is removed by the next unpack of that layer. Records are
// written atomically (temporary file, fsync, rename, directory fsync).
// Work on one layer or record is serialised within the process (a
// context-aware lock per key) and between processes sharing the store
// (flock on locks/KEY.lock), so concurrent Gets of images sharing layers
// unpack each layer once.
//
// Get returns the recorded image when every layer is present (no source is
// consulted, so images preloaded into an initramfs by "photon-init build
// --image" need no source at boot), else it pulls: resolve, unpack what is
// missing, record. Pull always resolves again.
//
// # Applying layers
//
// Layers are applied with containerd's archive package
// (github.com/containerd/containerd/v2/pkg/archive: about 0.3 MiB of the
// static binary together with this package), each into its own empty
// directory with whiteouts converted to overlayfs form
// (archive.OverlayConvertWhiteout, as containerd's overlayfs snapshotter
// does): a ".wh.NAME" becomes a 0/0 character device NAME, ".wh..wh..opq"
// sets trusted.overlay.opaque=y on its directory (the store also lists
// opaque directories in layer.json, for Flatten and for initramfs stores).
// containerd resolves every path and symlink inside the layer root and
// keeps ownership, modes, xattrs (not trusted.*), hardlinks and device
// nodes. Before it, this package's own filter refuses entries whose names
// or hardlink targets leave the root ("../"), entries below a symlink
// made by the same layer (a write through a symlink), and whiteouts that
// escape, with an error rather than containerd's silent confinement.
//
// Decompression is pure Go, detected from the blob's first bytes and
// checked against the media type: gzip and zstd (klauspost/compress),
// bzip2 (standard library), xz (ulikunitz/xz) or none. containerd's own
// compression package is not used: it may run unpigz as a child process,
// which PID 1 must not create outside its reaper. A layer's uncompressed
// stream, and the sum of its entries' declared sizes, are bounded
// (WithMaxLayerSize, default 16 GiB): a decompression bomb fails with
// ErrLayerTooLarge and leaves nothing behind.
//
// # Machines without overlayfs
//
// Flatten copies an image's layers, lowest first, into one directory,
// honouring the overlay whiteouts and opaque directories.
package image
