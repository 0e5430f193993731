package image

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		want    *ConfigFile
		wantErr string
	}{
		{
			name: "docker config with healthcheck",
			json: `{"architecture":"amd64","os":"linux","config":{
				"User":"1000:1000","Env":["PATH=/bin","A=b"],"Entrypoint":["/app"],"Cmd":["-v"],
				"WorkingDir":"/srv","ExposedPorts":{"8080/tcp":{},"53/udp":{}},"Volumes":{"/data":{},"/cache":{}},
				"StopSignal":"SIGQUIT","Labels":{"k":"v"},
				"Healthcheck":{"Test":["CMD","/app","health"],"Interval":30000000000,"Timeout":5000000000,
					"StartPeriod":1000000000,"StartInterval":2000000000,"Retries":3}},
				"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]}}`,
			want: &ConfigFile{
				Architecture: "amd64", OS: "linux",
				Config: Config{
					User: "1000:1000", Env: []string{"PATH=/bin", "A=b"}, Entrypoint: []string{"/app"}, Cmd: []string{"-v"},
					WorkingDir: "/srv", ExposedPorts: []string{"53/udp", "8080/tcp"}, Volumes: []string{"/cache", "/data"},
					StopSignal: "SIGQUIT", Labels: map[string]string{"k": "v"},
					Healthcheck: &Healthcheck{Test: []string{"CMD", "/app", "health"}, Interval: 30 * time.Second,
						Timeout: 5 * time.Second, StartPeriod: time.Second, StartInterval: 2 * time.Second, Retries: 3},
				},
				DiffIDs: []string{"sha256:aa", "sha256:bb"},
			},
		},
		{
			name: "oci config, arm64 v8, no config section",
			json: `{"architecture":"arm64","variant":"v8","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`,
			want: &ConfigFile{Architecture: "arm64", Variant: "v8", OS: "linux", DiffIDs: []string{}},
		},
		{name: "not json", json: `{`, wantErr: "decode image config"},
		{name: "bad rootfs type", json: `{"rootfs":{"type":"tarballs"}}`, wantErr: `rootfs.type "tarballs"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfigFile([]byte(tt.json))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
