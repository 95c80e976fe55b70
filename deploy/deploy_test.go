// Package deploy holds what users apply to a cluster; its test checks the
// manifests the way the API server would read them.
package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/internal/agenttest"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/requirements"
)

// objects decodes every manifest strictly (unknown fields are errors, as
// kubectl's server-side field validation makes them) into its k8s.io/api type.
func objects(t *testing.T) map[string][]any {
	t.Helper()
	files, _ := filepath.Glob("kubernetes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests")
	}
	out := map[string][]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---\n") {
			var head struct{ APIVersion, Kind string }
			if err := sigsyaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var obj any
			switch head.APIVersion + "/" + head.Kind {
			case "v1/ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1/Secret":
				obj = &corev1.Secret{}
			case "v1/ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "apps/v1/DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "rbac.authorization.k8s.io/v1/ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
				obj = &rbacv1.ClusterRoleBinding{}
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i, head.APIVersion, head.Kind)
			}
			if err := sigsyaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, head.Kind, err)
			}
			out[filepath.Base(f)] = append(out[filepath.Base(f)], obj)
		}
	}
	return out
}

func TestManifests(t *testing.T) {
	objs := objects(t)
	var accounts []string
	for _, o := range objs["rbac.yaml"] {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			accounts = append(accounts, o.Namespace+"/"+o.Name)
		case *rbacv1.ClusterRole:
			var pods bool
			for _, r := range o.Rules {
				pods = pods || slices.Contains(r.Resources, "pods") && slices.Contains(r.Verbs, "watch")
				if slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
					t.Errorf("ClusterRole %s grants more than reading: %v", o.Name, r.Verbs)
				}
			}
			if !pods {
				t.Error("the ClusterRole does not let the pod informer watch pods")
			}
		}
	}
	daemonsets := 0
	for file, list := range objs {
		for _, o := range list {
			switch o := o.(type) {
			case *appsv1.DaemonSet:
				daemonsets++
				checkDaemonSet(t, file, o, accounts)
			case *corev1.ConfigMap:
				checkConfigMap(t, file, o)
			}
		}
	}
	if daemonsets != 3 {
		t.Errorf("%d DaemonSets, want 3 (cloud-defend alone, Elastic Agent standalone, Fleet-managed)", daemonsets)
	}
}

// checkDaemonSet holds a DaemonSet to what cloud-defend needs on a node
// (docs/deploy.md, ../shared/docs/AGENT.md).
func checkDaemonSet(t *testing.T, file string, ds *appsv1.DaemonSet, accounts []string) {
	spec := ds.Spec.Template.Spec
	if !slices.Contains(accounts, ds.Namespace+"/"+spec.ServiceAccountName) {
		t.Errorf("%s: service account %s/%s is not in rbac.yaml", file, ds.Namespace, spec.ServiceAccountName)
	}
	if !spec.HostPID || !spec.HostNetwork {
		t.Errorf("%s: hostPID %v hostNetwork %v, want both", file, spec.HostPID, spec.HostNetwork)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", file, len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.Capabilities == nil {
		t.Fatalf("%s: security context %+v: must run as root with capabilities", file, sc)
	}
	// Exactly the one list: a manifest that forgets one, or adds one the code
	// does not use, fails.
	var want []corev1.Capability
	for _, c := range requirements.Capabilities() {
		want = append(want, corev1.Capability(c.Name))
	}
	if !slices.Equal(sc.Capabilities.Add, want) {
		t.Errorf("%s: capabilities.add %v, want requirements.Capabilities: %v", file, sc.Capabilities.Add, want)
	}
	if len(sc.Capabilities.Drop) != 0 {
		t.Errorf("%s: capabilities.drop %v", file, sc.Capabilities.Drop)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("%s: NODE_NAME must come from spec.nodeName", file)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if p := env["HOSTFS_PROC_PATH"].Value; p == "" || mounts[p].Name == "" {
		t.Errorf("%s: HOSTFS_PROC_PATH %q is not a mount", file, p)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for path, host := range map[string]string{env["HOSTFS_PROC_PATH"].Value: "/proc", "/sys/fs/bpf": "/sys/fs/bpf",
		"/sys/kernel/security": "/sys/kernel/security", "/sys/fs/cgroup": "/sys/fs/cgroup", "/boot": "/boot"} {
		m, ok := mounts[path]
		if !ok {
			t.Errorf("%s: nothing mounted at %s", file, path)
			continue
		}
		if v := vols[m.Name]; v.HostPath == nil || v.HostPath.Path != host {
			t.Errorf("%s: %s is not the host's %s", file, path, host)
		}
	}
	if m := mounts["/sys/fs/bpf"]; m.ReadOnly {
		t.Errorf("%s: /sys/fs/bpf must be writable", file)
	}
	for _, m := range c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("%s: mount %s names no volume", file, m.Name)
		}
	}
}

// checkConfigMap parses the policies the manifests carry with our own parser,
// the agent's configuration the way the component reads its input unit.
func checkConfigMap(t *testing.T, file string, cm *corev1.ConfigMap) {
	if pol, ok := cm.Data["policy.yaml"]; ok {
		if _, _, err := policy.Parse(file+": policy.yaml", []byte(pol)); err != nil {
			t.Errorf("%v", err)
		}
	}
	agentYML, ok := cm.Data["elastic-agent.yml"]
	if !ok {
		return
	}
	var cfg struct {
		Outputs map[string]map[string]any
		Inputs  []map[string]any
	}
	if err := yaml.Unmarshal([]byte(agentYML), &cfg); err != nil {
		t.Fatalf("%s: elastic-agent.yml: %v", file, err)
	}
	if cfg.Outputs["default"]["type"] != "elasticsearch" {
		t.Errorf("%s: default output %v", file, cfg.Outputs["default"])
	}
	n := 0
	for _, in := range cfg.Inputs {
		if in["type"] != "cloud_defend/control" {
			continue
		}
		n++
		var streams []map[string]any
		for _, s := range in["streams"].([]any) {
			streams = append(streams, s.(map[string]any))
		}
		src := map[string]any{}
		for k, v := range in {
			if k != "streams" {
				src[k] = v
			}
		}
		parsed, err := component.ParseInput("cloud_defend/control-default", agenttest.Config(t, "cloud_defend/control", 1, src, streams...))
		if err != nil {
			t.Errorf("%s: the component refuses the input: %v", file, err)
			continue
		}
		if parsed.Policy == nil || parsed.HeartbeatPeriod != 30*time.Minute || parsed.MetricsPeriod != 24*time.Hour {
			t.Errorf("%s: input parsed as %+v", file, parsed)
		}
	}
	if n != 1 {
		t.Errorf("%s: %d cloud_defend/control inputs", file, n)
	}
}
