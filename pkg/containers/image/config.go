package image

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ConfigFile is a decoded OCI image config or Docker image config blob (the
// two share their JSON shape; Docker adds Healthcheck): the platform it is
// built for, the part photon-init honours and the layers' DiffIDs.
type ConfigFile struct {
	// Architecture, OS and Variant name the platform ("amd64", "linux",
	// "" or "v8").
	Architecture string
	OS           string
	Variant      string
	// Config is the container configuration.
	Config Config
	// DiffIDs are rootfs.diff_ids: the digests of the uncompressed layer
	// tars, lowest first.
	DiffIDs []string
}

// ociConfigFile is the JSON shape of an OCI image config, with Docker's
// Healthcheck extension inside "config".
type ociConfigFile struct {
	Architecture string       `json:"architecture"`
	OS           string       `json:"os"`
	Variant      string       `json:"variant,omitempty"`
	Config       dockerConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// dockerConfig is ocispec.ImageConfig plus Docker's Healthcheck.
type dockerConfig struct {
	ocispec.ImageConfig
	Healthcheck *dockerHealthcheck `json:"Healthcheck,omitempty"`
}

// dockerHealthcheck is Docker's HealthConfig: durations in nanoseconds.
type dockerHealthcheck struct {
	Test          []string      `json:"Test,omitempty"`
	Interval      time.Duration `json:"Interval,omitempty"`
	Timeout       time.Duration `json:"Timeout,omitempty"`
	StartPeriod   time.Duration `json:"StartPeriod,omitempty"`
	StartInterval time.Duration `json:"StartInterval,omitempty"`
	Retries       int           `json:"Retries,omitempty"`
}

// ParseConfigFile decodes an OCI or Docker image config blob. It is what a
// Source uses for the config of an OCI layout, a docker-save archive or a
// registry image.
func ParseConfigFile(data []byte) (*ConfigFile, error) {
	var f ociConfigFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode image config: %w", err)
	}
	if f.RootFS.Type != "" && f.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image config: rootfs.type %q is not \"layers\"", f.RootFS.Type)
	}
	cfg := ConfigFromOCI(f.Config.ImageConfig)
	if h := f.Config.Healthcheck; h != nil {
		cfg.Healthcheck = &Healthcheck{
			Test:          slices.Clone(h.Test),
			Interval:      h.Interval,
			Timeout:       h.Timeout,
			StartPeriod:   h.StartPeriod,
			StartInterval: h.StartInterval,
			Retries:       h.Retries,
		}
	}
	return &ConfigFile{
		Architecture: f.Architecture,
		OS:           f.OS,
		Variant:      f.Variant,
		Config:       cfg,
		DiffIDs:      f.RootFS.DiffIDs,
	}, nil
}

// ConfigFromOCI converts the "config" section of an OCI image config to
// Config. Exposed ports and volumes become sorted lists. Docker's
// Healthcheck is not part of ocispec.ImageConfig: ParseConfigFile reads it
// from the JSON.
func ConfigFromOCI(c ocispec.ImageConfig) Config {
	cfg := Config{
		User:       c.User,
		Env:        slices.Clone(c.Env),
		Entrypoint: slices.Clone(c.Entrypoint),
		Cmd:        slices.Clone(c.Cmd),
		WorkingDir: c.WorkingDir,
		StopSignal: c.StopSignal,
	}
	if len(c.ExposedPorts) > 0 {
		cfg.ExposedPorts = slices.Sorted(maps.Keys(c.ExposedPorts))
	}
	if len(c.Volumes) > 0 {
		cfg.Volumes = slices.Sorted(maps.Keys(c.Volumes))
	}
	if len(c.Labels) > 0 {
		cfg.Labels = maps.Clone(c.Labels)
	}
	return cfg
}
