// Package spec holds cloud-defend.spec.yml, the file Elastic Agent reads to learn
// how to run cloud-defend; the test checks it against the agent's schema.
package spec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// specFile mirrors the agent's version 2 component spec (elastic-agent's
// docs/component-specs.md); unknown keys are errors, as a typo would be lost on
// the agent.
type specFile struct {
	Version int `yaml:"version"`
	Inputs  []struct {
		Name        string   `yaml:"name"`
		Description string   `yaml:"description"`
		Platforms   []string `yaml:"platforms"`
		Outputs     []string `yaml:"outputs"`
		Runtime     struct {
			Preventions []struct {
				Condition string `yaml:"condition"`
				Message   string `yaml:"message"`
			} `yaml:"preventions"`
		} `yaml:"runtime"`
		Command struct {
			Args []string `yaml:"args"`
			Log  struct {
				LevelKey   string   `yaml:"level_key"`
				TimeKey    string   `yaml:"time_key"`
				TimeFormat string   `yaml:"time_format"`
				MessageKey string   `yaml:"message_key"`
				IgnoreKeys []string `yaml:"ignore_keys"`
			} `yaml:"log"`
			Timeouts map[string]string `yaml:"timeouts"`
		} `yaml:"command"`
	} `yaml:"inputs"`
}

func TestSpec(t *testing.T) {
	data, err := os.ReadFile("cloud-defend.spec.yml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s specFile
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("spec does not match the agent's schema: %v", err)
	}
	if s.Version != 2 || len(s.Inputs) != 1 {
		t.Fatalf("version %d with %d inputs, want version 2 with one input", s.Version, len(s.Inputs))
	}
	in := s.Inputs[0]
	if in.Name != "cloud_defend/control" || in.Description == "" {
		t.Errorf("input %q, description %q", in.Name, in.Description)
	}
	allowed := []string{"container/amd64", "container/arm64", "darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64"}
	for _, p := range in.Platforms {
		if !slices.Contains(allowed, p) {
			t.Errorf("platform %q is not one the agent knows", p)
		}
	}
	for _, want := range []string{"linux/amd64", "linux/arm64", "container/amd64", "container/arm64"} {
		if !slices.Contains(in.Platforms, want) {
			t.Errorf("platform %s missing", want)
		}
	}
	if !slices.Equal(in.Outputs, []string{"elasticsearch"}) {
		t.Errorf("outputs %v, want [elasticsearch]", in.Outputs)
	}
	if p := in.Runtime.Preventions; len(p) != 1 || p[0].Condition != "${user.root} == false" || p[0].Message != "Elastic Agent must be running as root" {
		t.Errorf("preventions %+v", p)
	}
	if !slices.Equal(in.Command.Args, []string{"--agent-managed"}) {
		t.Errorf("args %v", in.Command.Args)
	}
	for k, v := range in.Command.Timeouts {
		if _, err := time.ParseDuration(v); err != nil || !slices.Contains([]string{"checkin", "restart", "stop"}, k) {
			t.Errorf("timeout %s: %s", k, v)
		}
	}
	// The log keys are what our ECS logs use.
	if l := in.Command.Log; l.LevelKey != "log.level" || l.TimeKey != "@timestamp" || l.MessageKey != "message" {
		t.Errorf("log keys %+v", l)
	}
	if _, err := time.Parse(in.Command.Log.TimeFormat, time.Now().Format(in.Command.Log.TimeFormat)); err != nil {
		t.Errorf("time_format: %v", err)
	}

	// The binary accepts what the agent passes: the spec's args and -E settings.
	// Without a StartUpInfo on stdin it must say so, not misparse its flags.
	bin := filepath.Join(t.TempDir(), "cloud-defend")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/cloud-defend").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append(in.Command.Args, "-E", "path.data=/tmp/x", "-E", "logging.level=debug")...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "StartUpInfo") || strings.Contains(string(out), "flag provided but not defined") {
		t.Errorf("cloud-defend %v with an empty stdin: %v\n%s", in.Command.Args, err, out)
	}
}
