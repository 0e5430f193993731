// Package aci is the image source for appc Application Container Images
// (rkt's format, "aci:PATH" in a manifest): a tar archive holding an image
// manifest named "manifest" and the root filesystem under "rootfs/",
// uncompressed or compressed with gzip, bzip2 or xz.
//
// The whole ACI is one layer. Its digest is the image ID appc defines, the
// SHA-512 of the uncompressed tar, written "sha512:<hex>" (appc writes
// "sha512-<hex>"). Layer.Open returns that uncompressed tar, so the store's
// digest check while unpacking is the check of the image ID, and
// Layer.PathPrefix "rootfs/" makes the store skip the manifest and unpack
// the rootfs at the image's root. Resolve reads the file once to find the
// manifest, check every entry's name and compute the ID; Open decompresses
// it again.
//
// The image manifest (appc spec v0.8.11) is decoded here rather than with
// github.com/appc/spec/schema: that package adds about 230 KB to the static
// binary (pflag, inf.v0, go-semver, go4.org, regexps) for a dozen fields.
// The same checks are made: acKind "ImageManifest", acVersion and name set,
// names and labels valid AC identifiers, os/arch labels known, environment
// names valid and unique, workingDirectory absolute. In addition the os and
// arch labels, when present, must be linux and this machine's architecture.
// The tests check the ACIs they build with appc's own actool.
//
// The app section maps to image.Config:
//
//	exec               Entrypoint (Cmd empty)
//	user, group        User "user:group"
//	workingDirectory   WorkingDir
//	environment        Env "NAME=value"
//	ports              ExposedPorts "port/protocol", one per port of a count
//	mountPoints        Volumes (their paths)
//	annotations        Labels (the image manifest's annotations)
//
// Isolators are ignored: the container manifest sets resource limits and
// capabilities. What photon-init cannot honour is an error rather than
// silently dropped: dependencies on other images, pathWhitelist, event
// handlers (pre-start, post-stop), supplementaryGIDs, socket-activated
// ports, and a user or group given as a file path ("/etc/x", appc's
// "owner of this file" form).
package aci
