package pkg_test

// These tests hold the Fleet integration package (cloud_defend/) to the rules of
// package-spec 3.0 that apply to it (elastic-package and package-spec are not
// available here, so the rules are encoded below: the spec's JSON schemas for
// manifests, changelog, fields and pipelines, its folder layout, and its semantic
// validators for versions, changelog links, required and unique fields, ECS
// imports and templates), and to what cloud-defend itself expects: the policy
// default parses with our policy parser, the rendered stream templates are read
// by our agent component the way Fleet hands them over, and the documents in the
// sample events and the README are declared field by field.
//
// Decoding is strict: a key the spec does not define at that place (or that the
// package does not use, for field definitions) is an error, so a typo cannot
// slip through as an ignored setting.
//
// `go test ./package -run README -update` rewrites the generated parts of
// docs/README.md (the field tables and example events).

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/internal/agenttest"
	"github.com/cloud-defend/cloud-defend/internal/ruletest"
	pkg "github.com/cloud-defend/cloud-defend/package"
	"github.com/cloud-defend/cloud-defend/policy"
	"github.com/cloud-defend/cloud-defend/throttle"
)

var update = flag.Bool("update", false, "rewrite the generated parts of docs/README.md")

// ---------------------------------------------------------------------------
// The package-spec 3.0.0 schemas, as Go structs decoded with KnownFields(true).

type manifest struct {
	FormatVersion           string           `yaml:"format_version"`
	Name                    string           `yaml:"name"`
	Title                   string           `yaml:"title"`
	Description             string           `yaml:"description"`
	Version                 string           `yaml:"version"`
	Source                  *source          `yaml:"source"`
	Type                    string           `yaml:"type"`
	Categories              []string         `yaml:"categories"`
	Conditions              *conditions      `yaml:"conditions"`
	PolicyTemplatesBehavior string           `yaml:"policy_templates_behavior"`
	PolicyTemplates         []policyTemplate `yaml:"policy_templates"`
	Icons                   []image          `yaml:"icons"`
	Screenshots             []image          `yaml:"screenshots"`
	Vars                    []variable       `yaml:"vars"`
	Owner                   *owner           `yaml:"owner"`
	Agent                   *agentDecl       `yaml:"agent"`
	Elasticsearch           *struct {
		Privileges *struct {
			Cluster []string `yaml:"cluster"`
		} `yaml:"privileges"`
	} `yaml:"elasticsearch"`
}

type source struct {
	License string `yaml:"license"`
}

type conditions struct {
	Kibana *struct {
		Version string `yaml:"version"`
	} `yaml:"kibana"`
	Elastic *struct {
		Subscription string   `yaml:"subscription"`
		Capabilities []string `yaml:"capabilities"`
	} `yaml:"elastic"`
	Agent *struct {
		Version string `yaml:"version"`
	} `yaml:"agent"`
}

type image struct {
	Src      string `yaml:"src"`
	Title    string `yaml:"title"`
	Size     string `yaml:"size"`
	Type     string `yaml:"type"`
	DarkMode *bool  `yaml:"dark_mode"`
}

type owner struct {
	GitHub string `yaml:"github"`
	Type   string `yaml:"type"`
}

type agentDecl struct {
	Privileges *struct {
		Root *bool `yaml:"root"`
	} `yaml:"privileges"`
}

type policyTemplate struct {
	Name        string     `yaml:"name"`
	Title       string     `yaml:"title"`
	Description string     `yaml:"description"`
	Categories  []string   `yaml:"categories"`
	DataStreams []string   `yaml:"data_streams"`
	Inputs      []input    `yaml:"inputs"`
	Multiple    *bool      `yaml:"multiple"`
	Icons       []image    `yaml:"icons"`
	Screenshots []image    `yaml:"screenshots"`
	Vars        []variable `yaml:"vars"`
}

type input struct {
	Type         string     `yaml:"type"`
	Title        string     `yaml:"title"`
	Description  string     `yaml:"description"`
	TemplatePath string     `yaml:"template_path"`
	InputGroup   string     `yaml:"input_group"`
	Multi        *bool      `yaml:"multi"`
	Vars         []variable `yaml:"vars"`
}

type variable struct {
	Name        string   `yaml:"name"`
	Type        string   `yaml:"type"`
	Title       string   `yaml:"title"`
	Description string   `yaml:"description"`
	Multi       *bool    `yaml:"multi"`
	Required    *bool    `yaml:"required"`
	Secret      *bool    `yaml:"secret"`
	ShowUser    *bool    `yaml:"show_user"`
	Options     []option `yaml:"options"`
	Default     any      `yaml:"default"`
}

type option struct {
	Value string `yaml:"value"`
	Text  string `yaml:"text"`
}

type dataStreamManifest struct {
	Dataset         string     `yaml:"dataset"`
	Title           string     `yaml:"title"`
	Release         string     `yaml:"release"`
	ILMPolicy       string     `yaml:"ilm_policy"`
	DatasetIsPrefix *bool      `yaml:"dataset_is_prefix"`
	Type            string     `yaml:"type"`
	Hidden          *bool      `yaml:"hidden"`
	Streams         []stream   `yaml:"streams"`
	Agent           *agentDecl `yaml:"agent"`
	Elasticsearch   *dsElastic `yaml:"elasticsearch"`
	Categories      []string   `yaml:"categories"`
}

type stream struct {
	Input        string     `yaml:"input"`
	Title        string     `yaml:"title"`
	Description  string     `yaml:"description"`
	TemplatePath string     `yaml:"template_path"`
	Vars         []variable `yaml:"vars"`
	Enabled      *bool      `yaml:"enabled"`
}

type dsElastic struct {
	IndexMode     string `yaml:"index_mode"`
	IndexTemplate *struct {
		Settings *struct {
			Analysis           any  `yaml:"analysis"`
			Index              any  `yaml:"index"`
			NumberOfShards     *int `yaml:"number_of_shards"`
			AutoExpandReplicas any  `yaml:"auto_expand_replicas"`
			MaxResultWindow    *int `yaml:"max_result_window"`
			RefreshInterval    any  `yaml:"refresh_interval"`
		} `yaml:"settings"`
		Mappings *struct {
			DateDetection      *bool            `yaml:"date_detection"`
			Dynamic            any              `yaml:"dynamic"`
			DynamicDateFormats []string         `yaml:"dynamic_date_formats"`
			DynamicTemplates   []map[string]any `yaml:"dynamic_templates"`
		} `yaml:"mappings"`
		IngestPipeline *struct {
			Name string `yaml:"name"`
		} `yaml:"ingest_pipeline"`
		DataStream *struct {
			Hidden *bool `yaml:"hidden"`
		} `yaml:"data_stream"`
	} `yaml:"index_template"`
	Privileges *struct {
		Indices []string `yaml:"indices"`
	} `yaml:"privileges"`
	SourceMode       string `yaml:"source_mode"`
	DynamicDataset   *bool  `yaml:"dynamic_dataset"`
	DynamicNamespace *bool  `yaml:"dynamic_namespace"`
}

type changelogEntry struct {
	Version string `yaml:"version"`
	Changes []struct {
		Description string `yaml:"description"`
		Type        string `yaml:"type"`
		Link        string `yaml:"link"`
	} `yaml:"changes"`
}

type pipeline struct {
	Description string           `yaml:"description"`
	Processors  []map[string]any `yaml:"processors"`
	OnFailure   []map[string]any `yaml:"on_failure"`
}

type buildManifest struct {
	Dependencies struct {
		ECS *struct {
			Reference      string `yaml:"reference"`
			ImportMappings *bool  `yaml:"import_mappings"`
		} `yaml:"ecs"`
	} `yaml:"dependencies"`
}

// ---------------------------------------------------------------------------
// Enumerations and patterns of package-spec 3.0.0.

var (
	// definitions/version: semantic versioning with optional pre-release and build.
	semverRe = regexp.MustCompile(`^([0-9]+)\.([0-9]+)\.([0-9]+)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+)?$`)
	// The package name and the data stream folder names.
	packageNameRe    = regexp.MustCompile(`^[a-z0-9_]+$`)
	dataStreamNameRe = regexp.MustCompile(`^([a-z0-9]{2}|[a-z0-9][a-z0-9_]+[a-z0-9])$`)
	ownerGitHubRe    = regexp.MustCompile(`^(([a-zA-Z0-9-_]+)|([a-zA-Z0-9-_]+\/[a-zA-Z0-9-_]+))$`)
	fieldNameRe      = regexp.MustCompile(`^[\-*_\/@A-Za-z0-9]+(\.[\-*_\/@A-Za-z0-9]+)*$`)
	fieldFileRe      = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]+[a-z0-9]\.yml$`)
	// Variables whose name looks like a secret must say whether they are one (3.0.2+).
	secretNameRe = regexp.MustCompile(`(access_key|api_key|passphrase|password|secret|token)`)

	categories = set("advanced_analytics_ueba", "analytics_engine", "application_observability", "app_search",
		"asset_inventory", "auditd", "authentication", "aws", "azure", "big_data", "cdn_security", "cloud",
		"cloudsecurity_cdr", "config_management", "connector", "connector_client", "connector_package",
		"containers", "content_source", "crawler", "credential_management", "crm", "custom", "custom_logs",
		"database_security", "datastore", "dns_security", "edr_xdr", "elasticsearch_sdk", "elastic_stack",
		"email_security", "enterprise_search", "firewall_security", "google_cloud", "iam", "ids_ips",
		"infrastructure", "java_observability", "kubernetes", "language_client", "languages", "load_balancer",
		"message_queue", "misconfiguration_workflow", "monitoring", "native_search", "network",
		"network_security", "notification", "observability", "opentelemetry", "os_system", "process_manager",
		"productivity", "productivity_security", "proxy_security", "sdk_search", "security", "siem",
		"stream_processing", "support", "threat_intel", "ticketing", "version_control", "virtualization",
		"vpn_security", "vulnerability_management", "vulnerability_workflow", "web",
		"web_application_firewall", "websphere", "workplace_search")
	subscriptions = set("basic", "gold", "platinum", "enterprise")
	capabilities  = set("apm", "enterprise_search", "observability", "security", "serverless_search", "uptime")
	licenses      = set("Apache-2.0", "Elastic-2.0")
	ownerTypes    = set("elastic", "partner", "community")
	varTypes      = set("bool", "email", "integer", "password", "select", "text", "textarea", "time_zone", "url", "yaml")
	dsTypes       = set("metrics", "logs", "synthetics", "traces", "profiles")
	changeTypes   = set("breaking-change", "bugfix", "enhancement")
	fieldTypes    = set("aggregate_metric_double", "alias", "histogram", "constant_keyword", "text", "match_only_text",
		"keyword", "long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "date",
		"date_nanos", "boolean", "binary", "integer_range", "float_range", "long_range", "double_range",
		"date_range", "ip_range", "group", "geo_point", "object", "ip", "nested", "flattened", "wildcard",
		"version", "unsigned_long", "geo_shape")
	numericTypes = set("histogram", "aggregate_metric_double", "long", "integer", "short", "byte", "double",
		"float", "half_float", "scaled_float", "unsigned_long")
	metricTypes = set("counter", "gauge")
	units       = set("byte", "percent", "d", "h", "m", "s", "ms", "micros", "nanos")
	processors  = set("append", "attachment", "bytes", "circle", "community_id", "convert", "csv", "date",
		"date_index_name", "dissect", "dot_expander", "drop", "fail", "fingerprint", "foreach", "geoip", "grok",
		"gsub", "html_strip", "inference", "join", "json", "kv", "lowercase", "network_direction", "pipeline",
		"redact", "registered_domain", "remove", "rename", "script", "set", "sort", "split", "trim",
		"uppercase", "urldecode", "uri_parts", "user_agent")
	// Pre-release tags the spec accepts (validate_prerelease.go).
	prereleaseRe = regexp.MustCompile(`^(next|SNAPSHOT|(beta|rc|preview)(([0-9]|[.-][0-9A-Za-z])([0-9A-Za-z-.]*[0-9A-Za-z])?)?)$`)
)

func set(s ...string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

// The data streams this package must have, with their types.
var wantStreams = map[string]string{
	"alerts": "logs", "file": "logs", "network": "logs", "process": "logs", "heartbeat": "metrics", "metrics": "metrics",
}

const inputType = "cloud_defend/control"

// ---------------------------------------------------------------------------
// Helpers.

func fsys() fs.FS { return pkg.FS() }

func decode(t *testing.T, name string, v any) bool {
	t.Helper()
	if err := pkg.DecodeYAML(fsys(), name, v); err != nil {
		t.Errorf("%v", err)
		return false
	}
	return true
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	var m manifest
	if !decode(t, "manifest.yml", &m) {
		t.FailNow()
	}
	return m
}

func readDataStream(t *testing.T, ds string) dataStreamManifest {
	t.Helper()
	var m dataStreamManifest
	if !decode(t, path.Join("data_stream", ds, "manifest.yml"), &m) {
		t.FailNow()
	}
	return m
}

func exists(name string) bool {
	_, err := fs.Stat(fsys(), name)
	return err == nil
}

func isSemver(v string) bool { return semverRe.MatchString(v) }

// semverLess compares major.minor.patch, then a version with a pre-release below
// the same one without.
func semverLess(a, b string) bool {
	ma, mb := semverRe.FindStringSubmatch(a), semverRe.FindStringSubmatch(b)
	for i := 1; i <= 3; i++ {
		x, _ := strconv.Atoi(ma[i])
		y, _ := strconv.Atoi(mb[i])
		if x != y {
			return x < y
		}
	}
	switch {
	case ma[4] == mb[4]:
		return false
	case ma[4] == "":
		return false
	case mb[4] == "":
		return true
	}
	return ma[4] < mb[4]
}

// configurationVar returns the policy template input's `configuration` variable.
func configurationVar(t *testing.T, m manifest) variable {
	t.Helper()
	for _, pt := range m.PolicyTemplates {
		for _, in := range pt.Inputs {
			if in.Type != inputType {
				continue
			}
			for _, v := range in.Vars {
				if v.Name == "configuration" {
					return v
				}
			}
		}
	}
	t.Fatalf("manifest.yml: no var configuration on input %s", inputType)
	return variable{}
}

func streamVar(t *testing.T, ds, name string) variable {
	t.Helper()
	for _, s := range readDataStream(t, ds).Streams {
		for _, v := range s.Vars {
			if v.Name == name {
				return v
			}
		}
	}
	t.Fatalf("data stream %s: no stream var %s", ds, name)
	return variable{}
}

// ---------------------------------------------------------------------------
// Layout.

// TestLayout walks the package and accepts only the files package-spec places in
// an integration package, and checks the required ones are there.
func TestLayout(t *testing.T) {
	ds := `data_stream/([a-z0-9]{2}|[a-z0-9][a-z0-9_]+[a-z0-9])/`
	allowed := []*regexp.Regexp{
		regexp.MustCompile(`^manifest\.yml$`),
		regexp.MustCompile(`^changelog\.yml$`),
		regexp.MustCompile(`^(NOTICE|LICENSE)\.txt$`),
		regexp.MustCompile(`^validation\.yml$`),
		regexp.MustCompile(`^docs/[^/]+\.md$`),
		regexp.MustCompile(`^docs/knowledge_base/[^/]+\.md$`),
		regexp.MustCompile(`^img/[^/]+\.(svg|png|jpg|jpeg)$`),
		regexp.MustCompile(`^_dev/build/build\.yml$`),
		regexp.MustCompile(`^_dev/build/docs/[^/]+\.md$`),
		regexp.MustCompile(`^kibana/(dashboard|visualization|search|map|lens)/cloud_defend-[^/]+\.json$`),
		regexp.MustCompile(`^kibana/(index_pattern|security_rule|csp_rule_template|ml_module|tag|osquery_pack_asset|osquery_saved_query)/[^/]+\.json$`),
		regexp.MustCompile(`^kibana/tags\.yml$`),
		regexp.MustCompile(`^` + ds + `manifest\.yml$`),
		regexp.MustCompile(`^` + ds + `fields/[a-z0-9][a-z0-9_-]+[a-z0-9]\.yml$`),
		regexp.MustCompile(`^` + ds + `agent/stream/[^/]+\.yml\.hbs$`),
		regexp.MustCompile(`^` + ds + `elasticsearch/(ingest_pipeline|ilm)/[^/]+\.(yml|json)$`),
		regexp.MustCompile(`^` + ds + `sample_event(_[a-z0-9]+)?\.json$`),
		regexp.MustCompile(`^` + ds + `(routing_rules|lifecycle)\.yml$`),
		regexp.MustCompile(`^` + ds + `(_dev|test)/.+$`),
	}
	n := 0
	err := fs.WalkDir(fsys(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		if strings.HasSuffix(p, "-ecs.json") || strings.HasSuffix(p, "-ECS.json") {
			t.Errorf("%s: the -ecs.json suffix is forbidden for Kibana assets", p)
		}
		if strings.HasPrefix(p, "data_stream/integration/") {
			t.Errorf("%s: a data stream may not be named integration (Fleet's own pipeline)", p)
		}
		for _, re := range allowed {
			if re.MatchString(p) {
				info, err := d.Info()
				if err != nil {
					return err
				}
				if strings.HasSuffix(p, "manifest.yml") && info.Size() > 5<<20 {
					t.Errorf("%s: larger than 5MB", p)
				}
				if strings.HasSuffix(p, ".hbs") && info.Size() > 2<<20 {
					t.Errorf("%s: larger than 2MB", p)
				}
				return nil
			}
		}
		t.Errorf("%s: package-spec does not allow this file here", p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the package is empty")
	}
	for _, f := range []string{"manifest.yml", "changelog.yml", "docs/README.md"} {
		if !exists(f) {
			t.Errorf("%s is required", f)
		}
	}
	got := pkg.DataStreams()
	var want []string
	for ds := range wantStreams {
		want = append(want, ds)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("data streams %v, want %v", got, want)
	}
	for _, ds := range got {
		if !dataStreamNameRe.MatchString(ds) {
			t.Errorf("data stream %q: bad name", ds)
		}
		for _, f := range []string{"manifest.yml", "elasticsearch/ingest_pipeline/default.yml", "sample_event.json"} {
			if !exists(path.Join("data_stream", ds, f)) {
				t.Errorf("data stream %s: %s missing", ds, f)
			}
		}
		files, _ := fs.ReadDir(fsys(), path.Join("data_stream", ds, "fields"))
		if len(files) == 0 {
			t.Errorf("data stream %s: fields/ needs at least one file", ds)
		}
		for _, f := range files {
			if !fieldFileRe.MatchString(f.Name()) {
				t.Errorf("data stream %s: fields/%s: bad file name", ds, f.Name())
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Manifests.

func checkVars(t *testing.T, where string, vars []variable) {
	t.Helper()
	seen := map[string]bool{}
	for _, v := range vars {
		w := fmt.Sprintf("%s: var %q", where, v.Name)
		if v.Name == "" || v.Type == "" {
			t.Errorf("%s: name and type are required", w)
		}
		if seen[v.Name] {
			t.Errorf("%s: defined twice", w)
		}
		seen[v.Name] = true
		if !varTypes[v.Type] {
			t.Errorf("%s: type %q is not one of the spec's variable types", w, v.Type)
		}
		if v.Type == "select" && len(v.Options) == 0 {
			t.Errorf("%s: a select needs options", w)
		}
		if v.Type != "select" && v.Options != nil {
			t.Errorf("%s: options are only for select", w)
		}
		for _, o := range v.Options {
			if o.Value == "" || o.Text == "" {
				t.Errorf("%s: options need value and text", w)
			}
		}
		if (secretNameRe.MatchString(v.Name) && !strings.HasSuffix(v.Name, "_file") && !strings.HasSuffix(v.Name, "_url") ||
			v.Type == "password") && v.Secret == nil {
			t.Errorf("%s: looks like a secret: set secret", w)
		}
		if err := checkDefault(v.Default); err != nil {
			t.Errorf("%s: default: %v", w, err)
		}
		if v.Type == "yaml" && v.Default != nil {
			s, ok := v.Default.(string)
			var doc any
			if !ok {
				t.Errorf("%s: a yaml var's default is a string of YAML", w)
			} else if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
				t.Errorf("%s: default is not YAML: %v", w, err)
			}
		}
		if v.Required != nil && *v.Required && v.Default == nil && (v.ShowUser != nil && !*v.ShowUser) {
			t.Errorf("%s: required, hidden and without default: nobody can set it", w)
		}
	}
}

// checkDefault enforces input_variable_value: string, integer, boolean, null, or
// arrays of those.
func checkDefault(v any) error {
	switch x := v.(type) {
	case nil, string, int, bool:
		return nil
	case []any:
		for _, e := range x {
			if err := checkDefault(e); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%T is not a string, integer, boolean, null or array", v)
	}
}

func checkImages(t *testing.T, where string, imgs []image, titleRequired bool) {
	t.Helper()
	for _, im := range imgs {
		if im.Src == "" {
			t.Errorf("%s: src is required", where)
			continue
		}
		if titleRequired && im.Title == "" {
			t.Errorf("%s: %s: title is required", where, im.Src)
		}
		if !strings.HasPrefix(im.Src, "/") {
			t.Errorf("%s: %s: src is a path from the package root, starting with /", where, im.Src)
			continue
		}
		p := strings.TrimPrefix(im.Src, "/")
		b, err := fs.ReadFile(fsys(), p)
		if err != nil {
			t.Errorf("%s: %s: %v", where, im.Src, err)
			continue
		}
		if strings.HasSuffix(p, ".svg") {
			if im.Type != "" && im.Type != "image/svg+xml" {
				t.Errorf("%s: %s: type %q for an SVG", where, im.Src, im.Type)
			}
			dec := xml.NewDecoder(bytes.NewReader(b))
			for {
				_, err := dec.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Errorf("%s: %s: not well-formed XML: %v", where, im.Src, err)
					break
				}
			}
		}
	}
}

func TestManifest(t *testing.T) {
	m := readManifest(t)
	if !isSemver(m.FormatVersion) || !strings.HasPrefix(m.FormatVersion, "3.") {
		t.Errorf("format_version %q: want a 3.x version", m.FormatVersion)
	}
	if m.FormatVersion != "3.0.0" {
		// The structs above encode 3.0.0; a newer format may use keys they reject
		// and must be checked against the newer spec first.
		t.Errorf("format_version %q: this test encodes package-spec 3.0.0; update it with the format", m.FormatVersion)
	}
	if m.Name != pkg.Name || !packageNameRe.MatchString(m.Name) {
		t.Errorf("name %q: want %q (the folder's name)", m.Name, pkg.Name)
	}
	if m.Title == "" || m.Description == "" {
		t.Error("title and description are required")
	}
	if !isSemver(m.Version) {
		t.Errorf("version %q is not semver", m.Version)
	} else if pre := semverRe.FindStringSubmatch(m.Version)[4]; pre != "" {
		if strings.HasPrefix(m.Version, "0.") {
			t.Errorf("version %s: versions below 1.0.0 are technical previews and take no pre-release tag", m.Version)
		}
		if !prereleaseRe.MatchString(pre) {
			t.Errorf("version %s: pre-release tag %q is not next, SNAPSHOT, or beta/rc/preview[N]", m.Version, pre)
		}
	}
	if m.Type != "integration" {
		t.Errorf("type %q: want integration", m.Type)
	}
	if m.Source == nil || !licenses[m.Source.License] {
		t.Errorf("source.license: want one of Apache-2.0, Elastic-2.0")
	}
	for _, c := range m.Categories {
		if !categories[c] {
			t.Errorf("category %q is not one of the spec's", c)
		}
	}
	for _, c := range []string{"security", "containers", "kubernetes"} {
		if !slices.Contains(m.Categories, c) {
			t.Errorf("categories %v: want %s", m.Categories, c)
		}
	}
	if m.Conditions == nil || m.Conditions.Kibana == nil || m.Conditions.Kibana.Version == "" {
		t.Error("conditions.kibana.version is required (the Kibana versions with the Defend for Containers UI)")
	} else {
		for _, c := range strings.Split(m.Conditions.Kibana.Version, "||") {
			c = strings.TrimSpace(c)
			if !regexp.MustCompile(`^[\^~]?(>=)?[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(c) {
				t.Errorf("conditions.kibana.version: %q is not a version constraint", c)
			}
		}
	}
	if e := m.Conditions.Elastic; e != nil {
		if e.Subscription != "" && !subscriptions[e.Subscription] {
			t.Errorf("conditions.elastic.subscription %q", e.Subscription)
		}
		seen := map[string]bool{}
		for _, c := range e.Capabilities {
			if !capabilities[c] || seen[c] {
				t.Errorf("conditions.elastic.capabilities: %q unknown or repeated", c)
			}
			seen[c] = true
		}
	}
	if m.Owner == nil || !ownerGitHubRe.MatchString(m.Owner.GitHub) || !ownerTypes[m.Owner.Type] {
		t.Errorf("owner: github (a team or org/team) and type (elastic, partner, community) are required in 3.x")
	}
	if m.Agent == nil || m.Agent.Privileges == nil || m.Agent.Privileges.Root == nil || !*m.Agent.Privileges.Root {
		t.Error("agent.privileges.root: cloud-defend runs only as root (the agent refuses it otherwise); say so")
	}
	checkImages(t, "icons", m.Icons, false)
	checkImages(t, "screenshots", m.Screenshots, true)
	checkVars(t, "manifest.yml", m.Vars)
	switch b := m.PolicyTemplatesBehavior; {
	case len(m.PolicyTemplates) <= 1 && b != "" && b != "all":
		t.Errorf("policy_templates_behavior %q: with one policy template only all is allowed", b)
	case b != "" && b != "all" && b != "combined_policy" && b != "individual_policies":
		t.Errorf("policy_templates_behavior %q", b)
	}
	if len(m.PolicyTemplates) != 1 {
		t.Fatalf("%d policy templates, want 1", len(m.PolicyTemplates))
	}
	pt := m.PolicyTemplates[0]
	if pt.Name == "" || pt.Title == "" || pt.Description == "" {
		t.Error("policy template: name, title and description are required")
	}
	checkImages(t, "policy template icons", pt.Icons, false)
	checkImages(t, "policy template screenshots", pt.Screenshots, true)
	checkVars(t, "policy template "+pt.Name, pt.Vars)
	for _, c := range pt.Categories {
		if !categories[c] {
			t.Errorf("policy template category %q is not one of the spec's", c)
		}
	}
	for _, ds := range pt.DataStreams {
		if !exists(path.Join("data_stream", ds, "manifest.yml")) {
			t.Errorf("policy template data_streams: %q is not a data stream of the package", ds)
		}
	}
	if len(pt.Inputs) != 1 || pt.Inputs[0].Type != inputType {
		t.Fatalf("policy template inputs %+v: want the one input %s", pt.Inputs, inputType)
	}
	in := pt.Inputs[0]
	if in.Title == "" || in.Description == "" {
		t.Error("input: title and description are required")
	}
	if in.InputGroup != "" && in.InputGroup != "logs" && in.InputGroup != "metrics" {
		t.Errorf("input_group %q", in.InputGroup)
	}
	if in.TemplatePath != "" && !exists(path.Join("agent/input", in.TemplatePath)) {
		t.Errorf("input template_path %s: no agent/input/%s", in.TemplatePath, in.TemplatePath)
	}
	checkVars(t, "input "+in.Type, in.Vars)
	if len(in.Vars) != 1 {
		t.Errorf("input vars: want only configuration, have %d", len(in.Vars))
	}
	v := configurationVar(t, m)
	if v.Type != "yaml" || v.Required == nil || !*v.Required {
		t.Errorf("var configuration: want type yaml, required")
	}
}

// TestDefaultPolicy: the configuration default is the policy cloud-defend embeds
// as its default, and our parser accepts it without a warning.
func TestDefaultPolicy(t *testing.T) {
	v := configurationVar(t, readManifest(t))
	def, ok := v.Default.(string)
	if !ok || def == "" {
		t.Fatalf("var configuration: default %v is not a YAML string", v.Default)
	}
	p, warnings, err := policy.Parse("package default", []byte(def))
	if err != nil {
		t.Fatalf("the default policy does not parse: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("the default policy has a warning: %s", w)
	}
	var got, want any
	if err := yaml.Unmarshal([]byte(def), &got); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(policy.DefaultYAML, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the package's default policy differs from policy/default.yaml:\n%s\nwant\n%s", def, policy.DefaultYAML)
	}
	if p.Blocks(policy.File) || p.Blocks(policy.Process) {
		t.Error("the default policy must not block")
	}
}

func TestChangelog(t *testing.T) {
	m := readManifest(t)
	var entries []changelogEntry
	if !decode(t, "changelog.yml", &entries) {
		return
	}
	if len(entries) == 0 {
		t.Fatal("changelog.yml has no entries")
	}
	if entries[0].Version != m.Version {
		t.Errorf("the first changelog entry is %s, the manifest's version %s", entries[0].Version, m.Version)
	}
	seen := map[string]bool{}
	for i, e := range entries {
		if !isSemver(e.Version) {
			t.Errorf("changelog %q: not semver", e.Version)
			continue
		}
		if seen[e.Version] {
			t.Errorf("changelog %s: repeated", e.Version)
		}
		seen[e.Version] = true
		if i > 0 && !semverLess(e.Version, entries[0].Version) {
			t.Errorf("changelog %s: not below the first entry %s", e.Version, entries[0].Version)
		}
		if len(e.Changes) == 0 {
			t.Errorf("changelog %s: no changes", e.Version)
		}
		for _, c := range e.Changes {
			if c.Description == "" || c.Link == "" || !changeTypes[c.Type] {
				t.Errorf("changelog %s: %+v: description, link and type (breaking-change, bugfix, enhancement) are required", e.Version, c)
			}
			if strings.Contains(c.Link, "github.com") {
				n, err := strconv.Atoi(path.Base(c.Link))
				if err != nil || n <= 0 {
					t.Errorf("changelog %s: %s: a GitHub link must end in an issue or PR number", e.Version, c.Link)
				}
			}
		}
	}
}

func TestDataStreamManifests(t *testing.T) {
	m := readManifest(t)
	inputs := map[string]bool{}
	for _, pt := range m.PolicyTemplates {
		for _, in := range pt.Inputs {
			inputs[in.Type] = true
		}
	}
	used := map[string]bool{}
	for _, ds := range pkg.DataStreams() {
		dm := readDataStream(t, ds)
		w := "data stream " + ds
		if dm.Title == "" {
			t.Errorf("%s: title is required", w)
		}
		if !dsTypes[dm.Type] || dm.Type != wantStreams[ds] {
			t.Errorf("%s: type %q, want %q", w, dm.Type, wantStreams[ds])
		}
		if dm.Dataset != "" && dm.Dataset != pkg.Name+"."+ds {
			t.Errorf("%s: dataset %q: cloud-defend writes to %s.%s", w, dm.Dataset, pkg.Name, ds)
		}
		if dm.Release != "" && dm.Release != "experimental" && dm.Release != "beta" {
			t.Errorf("%s: release %q", w, dm.Release)
		}
		if dm.ILMPolicy != "" {
			prefix := dm.Type + "-" + pkg.Name + "." + ds + "-"
			if !strings.HasPrefix(dm.ILMPolicy, prefix) || !exists(path.Join("data_stream", ds, "elasticsearch/ilm", strings.TrimPrefix(dm.ILMPolicy, prefix)+".json")) {
				t.Errorf("%s: ilm_policy %q must start with %s and be defined in elasticsearch/ilm/", w, dm.ILMPolicy, prefix)
			}
		}
		for _, c := range dm.Categories {
			if !categories[c] {
				t.Errorf("%s: category %q", w, c)
			}
		}
		if e := dm.Elasticsearch; e != nil {
			if e.IndexMode != "" && e.IndexMode != "time_series" {
				t.Errorf("%s: index_mode %q", w, e.IndexMode)
			}
			if e.SourceMode != "" && e.SourceMode != "default" && e.SourceMode != "synthetic" {
				t.Errorf("%s: source_mode %q", w, e.SourceMode)
			}
			if it := e.IndexTemplate; it != nil && it.Mappings != nil {
				switch d := it.Mappings.Dynamic.(type) {
				case nil, bool:
				case string:
					if d != "strict" && d != "runtime" {
						t.Errorf("%s: mappings.dynamic %q", w, d)
					}
				default:
					t.Errorf("%s: mappings.dynamic %v", w, d)
				}
			}
		}
		if len(dm.Streams) != 1 {
			t.Errorf("%s: %d streams, want 1 (of input %s)", w, len(dm.Streams), inputType)
		}
		for _, s := range dm.Streams {
			if s.Input == "" || s.Title == "" || s.Description == "" {
				t.Errorf("%s: a stream needs input, title and description", w)
			}
			if !inputs[s.Input] {
				t.Errorf("%s: stream input %q is not an input of the policy templates", w, s.Input)
			}
			used[s.Input] = true
			tp := s.TemplatePath
			if tp == "" {
				tp = "stream.yml.hbs"
			}
			if !exists(path.Join("data_stream", ds, "agent/stream", tp)) {
				t.Errorf("%s: template %s not found in agent/stream/", w, tp)
			}
			checkVars(t, w, s.Vars)
		}
	}
	for in := range inputs {
		if !used[in] {
			t.Errorf("input %s feeds no data stream", in)
		}
	}
	// The alerts data stream is read by the detection engine; its mapping is
	// exactly the declared fields.
	alerts := readDataStream(t, "alerts")
	if e := alerts.Elasticsearch; e == nil || e.IndexTemplate == nil || e.IndexTemplate.Mappings == nil ||
		e.IndexTemplate.Mappings.Dynamic != false {
		t.Error("data stream alerts: elasticsearch.index_template.mappings.dynamic must be false")
	}
}

// TestPeriods: the metrics streams' period defaults are durations cloud-defend
// reads, and the defaults it assumes when the stream says nothing.
func TestPeriods(t *testing.T) {
	for ds, want := range map[string]time.Duration{
		"heartbeat": component.DefaultHeartbeatPeriod, "metrics": component.DefaultMetricsPeriod,
	} {
		v := streamVar(t, ds, "period")
		s, ok := v.Default.(string)
		if !ok {
			t.Errorf("%s: period default %v is not a string", ds, v.Default)
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d != want {
			t.Errorf("%s: period default %q: want %v (component.Default*Period)", ds, s, want)
		}
	}
}

func TestBuildManifest(t *testing.T) {
	var b buildManifest
	if !decode(t, "_dev/build/build.yml", &b) {
		return
	}
	if b.Dependencies.ECS == nil || b.Dependencies.ECS.Reference != "git@v"+pkg.ECSVersion {
		t.Errorf("_dev/build/build.yml: dependencies.ecs.reference must be git@v%s (the ECS the fields import, pkg.ECSTypes)", pkg.ECSVersion)
	}
}

// ---------------------------------------------------------------------------
// Fields.

// TestFieldDefinitions checks every field definition against fields.spec.yml and
// the semantic rules (unique names, required fields, ECS imports).
func TestFieldDefinitions(t *testing.T) {
	var build buildManifest
	hasECS := pkg.DecodeYAML(fsys(), "_dev/build/build.yml", &build) == nil && build.Dependencies.ECS != nil
	for _, ds := range pkg.DataStreams() {
		ffs, err := pkg.FieldFiles(ds)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, ff := range ffs {
			checkFields(t, ff.Path, "", ff.Fields, hasECS)
		}
		defs, err := pkg.Definitions(ds)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(defs) > 2048 {
			t.Errorf("data stream %s: %d fields, the limit is 2048", ds, len(defs))
		}
		byName := map[string]pkg.Definition{}
		for _, d := range defs {
			byName[d.Name] = d
		}
		for name, typ := range map[string]string{
			"data_stream.type": "constant_keyword", "data_stream.dataset": "constant_keyword",
			"data_stream.namespace": "constant_keyword", "@timestamp": "date",
		} {
			d, ok := byName[name]
			if !ok || d.Type != typ || d.ECS {
				t.Errorf("data stream %s: %s must be declared (not imported) with type %s", ds, name, typ)
			}
		}
		if d, ok := byName["event.dataset"]; ok && d.Type == "constant_keyword" && d.Value != pkg.Name+"."+ds {
			t.Errorf("data stream %s: event.dataset's constant value %q", ds, d.Value)
		}
		if d, ok := byName["event.module"]; ok && d.Type == "constant_keyword" && d.Value != pkg.Name {
			t.Errorf("data stream %s: event.module's constant value %q", ds, d.Value)
		}
	}
}

func checkFields(t *testing.T, file, prefix string, fields []pkg.Field, hasECS bool) {
	t.Helper()
	for _, f := range fields {
		name := f.Name
		if prefix != "" {
			name = prefix + "." + name
		}
		w := file + ": " + name
		if !fieldNameRe.MatchString(f.Name) {
			t.Errorf("%s: bad field name", w)
		}
		if f.Type != "" && !fieldTypes[f.Type] {
			t.Errorf("%s: type %q is not one of the spec's field types", w, f.Type)
		}
		if f.External != "" {
			if f.External != "ecs" {
				t.Errorf("%s: external %q: only ecs", w, f.External)
			}
			if !hasECS {
				t.Errorf("%s: imported from ECS but _dev/build/build.yml declares no ecs dependency", w)
			}
			if _, ok := pkg.ECSTypes[name]; !ok {
				t.Errorf("%s: not an ECS %s field (or missing from pkg.ECSTypes)", w, pkg.ECSVersion)
			}
			if prefix != "" {
				t.Errorf("%s: import ECS fields by their full name at the top level", w)
			}
		} else {
			if f.Type == "" {
				t.Errorf("%s: a field that is not imported needs a type", w)
			}
			if f.Description == "" {
				t.Errorf("%s: describe the field (it is documented in the README)", w)
			}
			if ecsType, ok := pkg.ECSTypes[name]; ok && f.Type != ecsType &&
				!(f.Type == "constant_keyword" && ecsType == "keyword") {
				t.Errorf("%s: ECS %s defines it as %s, not %s: import it with external: ecs", w, pkg.ECSVersion, ecsType, f.Type)
			}
		}
		if len(f.Fields) > 0 && f.Type != "group" && f.Type != "nested" {
			t.Errorf("%s: only group and nested fields have sub-fields", w)
		}
		if f.Type == "group" && len(f.Fields) == 0 {
			t.Errorf("%s: an empty group", w)
		}
		if f.Type == "group" && (f.Unit != "" || f.MetricType != "") {
			t.Errorf("%s: a group cannot have unit or metric_type", w)
		}
		if f.DateFormat != "" && f.Type != "date" {
			t.Errorf("%s: date_format is for date fields only", w)
		}
		if f.MetricType != "" {
			if !metricTypes[f.MetricType] {
				t.Errorf("%s: metric_type %q", w, f.MetricType)
			}
			if !numericTypes[f.Type] && f.External == "" {
				t.Errorf("%s: metric_type on a %s field", w, f.Type)
			}
		}
		if f.Unit != "" && !units[f.Unit] {
			t.Errorf("%s: unit %q", w, f.Unit)
		}
		if f.ObjectType != "" && f.Type != "object" {
			t.Errorf("%s: object_type needs type object", w)
		}
		if f.Type == "object" && f.ObjectType == "" {
			t.Errorf("%s: an object field needs object_type (3.0.0)", w)
		}
		if f.Value != "" && f.Type != "constant_keyword" {
			t.Errorf("%s: value is for constant_keyword fields", w)
		}
		if f.Type == "alias" && f.Path == "" || f.Path != "" && f.Type != "alias" {
			t.Errorf("%s: path goes with type alias", w)
		}
		for _, n := range f.Normalize {
			if n != "array" {
				t.Errorf("%s: normalize %q", w, n)
			}
		}
		checkFields(t, file, name, f.Fields, hasECS)
	}
}

// TestFieldsContract: the fields EVENTS.md says our documents carry, and those
// the encoder writes, are declared in the data streams that receive them, with
// the types consumers rely on.
func TestFieldsContract(t *testing.T) {
	common := strings.Fields(`@timestamp event.ingested ecs.version agent.id agent.type agent.version
		event.id event.kind event.module event.dataset event.created
		data_stream.type data_stream.dataset data_stream.namespace
		cloud.provider cloud.region cloud.availability_zone cloud.account.id cloud.account.name
		cloud.project.id cloud.project.name cloud.instance.id cloud.instance.name
		host.architecture host.boot.id host.id host.ip host.hostname host.mac host.name host.pid_ns_ino
		host.os.family host.os.full host.os.kernel host.os.name host.os.platform host.os.type host.os.version
		error.message`)
	events := strings.Fields(`event.category event.type event.action event.outcome user.id group.id
		container.id container.runtime container.image.name container.image.tag container.security_context.privileged
		orchestrator.type orchestrator.cluster.id orchestrator.cluster.name orchestrator.namespace
		orchestrator.resource.ip orchestrator.resource.name orchestrator.resource.type orchestrator.resource.parent.type
		orchestrator.resource.label orchestrator.resource.annotation
		cloud_defend.matched_selectors cloud_defend.package_policy_id cloud_defend.package_policy_revision
		cloud_defend.hook_point cloud_defend.trace_point cloud_defend.blocked cloud_defend.detected_in_user_space
		cloud_defend.executable_layer
		process.pid process.entity_id process.executable process.name process.args process.args_count
		process.command_line process.start process.end process.exit_code process.working_directory
		process.interactive process.tty.char_device.major process.tty.char_device.minor
		process.user.id process.group.id process.real_user.id process.real_group.id
		process.previous.args process.previous.executable
		process.entry_leader.entry_meta.type`)
	for _, rel := range []string{"parent", "group_leader", "session_leader", "entry_leader"} {
		for _, f := range strings.Fields(`pid entity_id executable name args start interactive working_directory
			user.id group.id real_user.id real_group.id`) {
			events = append(events, "process."+rel+"."+f)
		}
		if rel != "parent" {
			events = append(events, "process."+rel+".same_as_process")
		}
	}
	files := strings.Fields(`file.path file.name file.extension file.mode file.target_path`)
	// The fields of Elastic Defend's network events (logs-endpoint.events.network)
	// our network documents carry.
	network := strings.Fields(`network.transport network.type network.direction
		source.ip source.port source.address destination.ip destination.port destination.address cloud_defend.operation`)
	want := map[string][]string{
		"alerts":    slices.Concat(common, events, files, network, []string{"message"}),
		"file":      slices.Concat(common, events, files),
		"network":   slices.Concat(common, events, network),
		"process":   slices.Concat(common, events),
		"heartbeat": slices.Concat(common, strings.Fields(`cloud_defend.block_action_enabled cloud_defend.package_policy_id cloud_defend.package_policy_revision`)),
		"metrics": slices.Concat(common, strings.Fields(`cloud_defend.package_policy_id cloud_defend.package_policy_revision
			cloud_defend.metrics.events cloud_defend.metrics.dropped cloud_defend.metrics.queued
			cloud_defend.metrics.spooled cloud_defend.metrics.shipped cloud_defend.metrics.ring_drops
			cloud_defend.metrics.docs_published cloud_defend.metrics.docs_acked cloud_defend.metrics.docs_rejected
			cloud_defend.metrics.docs_dropped cloud_defend.metrics.queue_pending cloud_defend.metrics.spool_bytes
			cloud_defend.metrics.processes_tracked cloud_defend.metrics.memory_rss_bytes`)),
	}
	types := map[string]string{
		"@timestamp": "date", "event.ingested": "date", "event.created": "date", "process.start": "date",
		"process.end": "date", "process.entry_leader.start": "date", "process.pid": "long", "process.exit_code": "long",
		"process.interactive": "boolean", "process.parent.interactive": "boolean",
		"process.entry_leader.same_as_process": "boolean", "process.session_leader.same_as_process": "boolean",
		"process.group_leader.same_as_process": "boolean", "container.security_context.privileged": "boolean",
		"process.args": "keyword", "process.command_line": "wildcard", "process.entity_id": "keyword",
		"process.parent.entity_id": "keyword", "process.entry_leader.entity_id": "keyword",
		"host.ip": "ip", "orchestrator.resource.ip": "ip", "host.os.type": "keyword", "container.id": "keyword",
		"user.id": "keyword", "message": "match_only_text", "event.module": "constant_keyword",
		"orchestrator.resource.label": "keyword", "orchestrator.resource.annotation": "keyword",
		"cloud_defend.matched_selectors": "keyword", "cloud_defend.package_policy_id": "keyword",
		"cloud_defend.package_policy_revision": "short", "cloud_defend.hook_point": "keyword",
		"cloud_defend.blocked": "boolean", "cloud_defend.detected_in_user_space": "boolean",
		"cloud_defend.block_action_enabled": "boolean", "cloud_defend.metrics.events": "long",
		"data_stream.dataset": "constant_keyword",
		"source.ip":           "ip", "destination.ip": "ip", "source.port": "long", "destination.port": "long",
		"network.transport": "keyword", "network.type": "keyword", "network.direction": "keyword",
	}
	for ds, names := range want {
		got, err := pkg.Fields(ds)
		if err != nil {
			t.Errorf("Fields(%s): %v", ds, err)
			continue
		}
		for _, n := range names {
			typ, ok := got[n]
			if !ok {
				t.Errorf("data stream %s: %s is not declared", ds, n)
				continue
			}
			if w, ok := types[n]; ok && typ != w {
				t.Errorf("data stream %s: %s is %s, want %s", ds, n, typ, w)
			}
		}
	}
	if _, err := pkg.Fields("nope"); err == nil {
		t.Error("Fields of an unknown data stream: no error")
	}
}

// TestRuleFields: every field a prebuilt detection rule for Defend for
// Containers reads is declared in each of our data streams the rule reads.
func TestRuleFields(t *testing.T) {
	dir := ruletest.ContractDir(t, "integrations_cloud_defend")
	rules, _ := fs.Glob(os.DirFS(dir), "*.toml")
	if len(rules) == 0 {
		t.Skipf("no detection rules in %s", dir)
	}
	queryRe := regexp.MustCompile(`(?s)\nquery = '''\n?(.*?)'''`)
	indexRe := regexp.MustCompile(`(?m)^index = \[(.*)\]$`)
	quotedRe := regexp.MustCompile(`"([^"]*)"`)
	tripleRe := regexp.MustCompile(`(?s)""".*?"""`)
	stringRe := regexp.MustCompile(`"(\\.|[^"\\])*"`)
	fieldRe := regexp.MustCompile(`(^|[^\w."*/-])([a-z_@][a-z0-9_]*(?:\.[a-z0-9_]+)+)`)
	fields := map[string]map[string]string{}
	for _, ds := range pkg.DataStreams() {
		f, err := pkg.Fields(ds)
		if err != nil {
			t.Fatal(err)
		}
		fields[ds] = f
	}
	for _, r := range rules {
		b, err := os.ReadFile(path.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		q, idx := queryRe.FindSubmatch(b), indexRe.FindSubmatch(b)
		if q == nil || idx == nil {
			t.Errorf("%s: no query or index", r)
			continue
		}
		query := stringRe.ReplaceAllString(tripleRe.ReplaceAllString(string(q[1]), `""`), `""`)
		var read []string
		for _, p := range quotedRe.FindAllSubmatch(idx[1], -1) {
			for ds := range fields {
				if matchIndex(string(p[1]), "logs-"+pkg.Name+"."+ds+"-default") && !slices.Contains(read, ds) {
					read = append(read, ds)
				}
			}
		}
		// An EQL stage (`process where …`, `file where …`) reads only the
		// documents of its category; the text before the first stage (a
		// sequence's join fields) and KQL queries read every stream.
		stages := stageRe.FindAllStringSubmatchIndex(query, -1)
		segment := func(from, to int, category string) {
			for _, m := range fieldRe.FindAllStringSubmatchIndex(query[from:to], -1) {
				end := from + m[1]
				if end < len(query) && strings.ContainsRune("*/-", rune(query[end])) {
					continue
				}
				name := query[from+m[4] : from+m[5]]
				if category == "any" {
					// Elasticsearch answers a query over several data streams
					// when a field is mapped in at least one of them (an any
					// stage tests event.category itself).
					found := false
					for _, ds := range read {
						_, ok := fields[ds][name]
						found = found || ok
					}
					if !found {
						t.Errorf("%s reads %s from %v, which do not declare it", r, name, read)
					}
					continue
				}
				for _, ds := range read {
					if !slices.Contains(categoryStreams[category], ds) {
						continue
					}
					if _, ok := fields[ds][name]; !ok {
						t.Errorf("%s reads %s from %s, which does not declare it", r, name, ds)
					}
				}
			}
		}
		if len(stages) == 0 {
			segment(0, len(query), "any")
			continue
		}
		segment(0, stages[0][0], "any")
		for i, st := range stages {
			to := len(query)
			if i+1 < len(stages) {
				to = stages[i+1][0]
			}
			segment(st[1], to, query[st[2]:st[3]])
		}
	}
}

var stageRe = regexp.MustCompile(`\b(process|file|network|any)\s+where\b`)

// categoryStreams are the data streams holding documents of an event category.
var categoryStreams = map[string][]string{
	"process": {"process", "alerts"}, "file": {"file", "alerts"}, "network": {"network", "alerts"},
}

func matchIndex(pattern, index string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$"
	return regexp.MustCompile(re).MatchString(index)
}

// ---------------------------------------------------------------------------
// Ingest pipelines.

func TestIngestPipelines(t *testing.T) {
	for _, ds := range pkg.DataStreams() {
		dir := path.Join("data_stream", ds, "elasticsearch/ingest_pipeline")
		entries, _ := fs.ReadDir(fsys(), dir)
		for _, e := range entries {
			p := path.Join(dir, e.Name())
			if !strings.HasSuffix(p, ".yml") {
				t.Errorf("%s: write pipelines in YAML", p)
				continue
			}
			b, _ := fs.ReadFile(fsys(), p)
			if !bytes.HasPrefix(b, []byte("---\n")) {
				t.Errorf("%s: a YAML pipeline starts with the document marker ---", p)
			}
			var pl pipeline
			if !decode(t, p, &pl) {
				continue
			}
			fields, err := pkg.Fields(ds)
			if err != nil {
				t.Fatal(err)
			}
			sets := checkProcessors(t, p, pl.Processors, fields)
			failSets := checkProcessors(t, p, pl.OnFailure, fields)
			if e.Name() != "default.yml" {
				continue
			}
			if sets["event.ingested"] != "{{{_ingest.timestamp}}}" {
				t.Errorf("%s: must set event.ingested to {{{_ingest.timestamp}}}", p)
			}
			if v, ok := sets["ecs.version"]; ok && v != pkg.ECSVersion {
				t.Errorf("%s: sets ecs.version %q, the package's ECS is %s", p, v, pkg.ECSVersion)
			}
			if v, ok := sets["event.dataset"]; ok && v != pkg.Name+"."+ds {
				t.Errorf("%s: sets event.dataset %q", p, v)
			}
			if ds == "alerts" || ds == "process" {
				for f, want := range map[string]string{"ecs.version": pkg.ECSVersion, "agent.type": "cloud-defend", "event.module": pkg.Name} {
					if sets[f] != want {
						t.Errorf("%s: must set %s to %s (as the upstream pipelines do)", p, f, want)
					}
				}
			}
			if failSets["event.kind"] != "pipeline_error" {
				t.Errorf("%s: on_failure must set event.kind to pipeline_error", p)
			}
			if _, ok := failSets["error.message"]; !ok {
				t.Errorf("%s: on_failure must set or append error.message", p)
			}
		}
		if len(entries) == 0 {
			t.Errorf("data stream %s: no ingest pipeline", ds)
		}
	}
}

// checkProcessors checks processors against the spec (one known processor per
// item) and returns the fields set or appended, with their values.
func checkProcessors(t *testing.T, file string, procs []map[string]any, fields map[string]string) map[string]string {
	t.Helper()
	sets := map[string]string{}
	for i, p := range procs {
		if len(p) != 1 {
			t.Errorf("%s: processor %d: one processor per item, have %d keys", file, i, len(p))
			continue
		}
		for name, body := range p {
			if !processors[name] {
				t.Errorf("%s: processor %d: unknown processor %q", file, i, name)
				continue
			}
			cfg, ok := body.(map[string]any)
			if !ok {
				t.Errorf("%s: processor %d (%s): its settings must be an object", file, i, name)
				continue
			}
			if name == "foreach" {
				if sub, ok := cfg["processor"].(map[string]any); ok {
					checkProcessors(t, file, []map[string]any{sub}, fields)
				}
			}
			if name != "set" && name != "append" {
				continue
			}
			f, _ := cfg["field"].(string)
			if f == "" {
				t.Errorf("%s: processor %d (%s): no field", file, i, name)
				continue
			}
			if _, ok := fields[f]; !ok {
				t.Errorf("%s: processor %d sets %s, which the data stream does not declare", file, i, f)
			}
			sets[f] = fmt.Sprint(cfg["value"])
		}
	}
	return sets
}

// ---------------------------------------------------------------------------
// Stream templates, rendered as Fleet does and read by our component.

var hbsRe = regexp.MustCompile(`\{\{+[^}]*\}+\}`)
var hbsVarRe = regexp.MustCompile(`^\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}$`)

// render substitutes the template's {{var}} references. Only plain variable
// references are allowed (no helpers or blocks: Fleet's handlebars would accept
// them, but this package has no use for them and this test does not evaluate
// them). A yaml variable's value is inserted as is: Fleet replaces a yaml
// variable at the root of a template by the variable's YAML.
func render(t *testing.T, file string, tmpl string, vars map[string]string) string {
	t.Helper()
	return hbsRe.ReplaceAllStringFunc(tmpl, func(ref string) string {
		m := hbsVarRe.FindStringSubmatch(ref)
		if m == nil {
			t.Errorf("%s: %s: only {{variable}} references are supported", file, ref)
			return ""
		}
		v, ok := vars[m[1]]
		if !ok {
			t.Errorf("%s: %s: no such variable on the stream or its input", file, ref)
		}
		return v
	})
}

// streamConfigs renders every data stream's template with the variables'
// defaults (the configuration given, or its default) and returns the streams
// as Fleet sends them to the agent: the rendered YAML plus id and data_stream.
func streamConfigs(t *testing.T, configuration string) []map[string]any {
	t.Helper()
	m := readManifest(t)
	inputVars := map[string]string{}
	for _, v := range m.PolicyTemplates[0].Inputs[0].Vars {
		inputVars[v.Name] = fmt.Sprint(v.Default)
	}
	if configuration != "" {
		inputVars["configuration"] = configuration
	}
	var out []map[string]any
	for _, ds := range pkg.DataStreams() {
		dm := readDataStream(t, ds)
		for _, s := range dm.Streams {
			vars := map[string]string{}
			for k, v := range inputVars {
				vars[k] = v
			}
			for _, v := range s.Vars {
				vars[v.Name] = fmt.Sprint(v.Default)
			}
			tp := s.TemplatePath
			if tp == "" {
				tp = "stream.yml.hbs"
			}
			file := path.Join("data_stream", ds, "agent/stream", tp)
			b, err := fs.ReadFile(fsys(), file)
			if err != nil {
				t.Fatal(err)
			}
			rendered := render(t, file, string(b), vars)
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(rendered), &cfg); err != nil {
				t.Fatalf("%s renders to invalid YAML: %v\n%s", file, err, rendered)
			}
			if cfg == nil {
				cfg = map[string]any{}
			}
			for _, k := range []string{"id", "data_stream"} {
				if _, ok := cfg[k]; ok {
					t.Errorf("%s: renders %s, which Fleet sets", file, k)
				}
			}
			cfg["id"] = fmt.Sprintf("%s-%s.%s-0b5e8f42", inputType, pkg.Name, ds)
			cfg["data_stream"] = map[string]any{"dataset": pkg.Name + "." + ds, "type": dm.Type}
			out = append(out, jsonRoundTrip(t, cfg))
		}
	}
	return out
}

// jsonRoundTrip turns YAML-decoded values into what structpb accepts.
func jsonRoundTrip(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func fleetInput() map[string]any {
	return map[string]any{
		"id": "cloud_defend/control-cloud_defend-4c9cbba0", "type": inputType, "name": "cloud_defend-1",
		"revision": 3, "use_output": "default", "package_policy_id": "4c9cbba0-c812-11ed-a8dd-91ec403e4f03",
		"data_stream": map[string]any{"namespace": "default"},
		"meta":        map[string]any{"package": map[string]any{"name": pkg.Name, "version": "0.1.0"}},
	}
}

func TestStreamTemplatesFleet(t *testing.T) {
	streams := streamConfigs(t, "")
	in, err := component.ParseInput("cloud_defend/control-default-cloud_defend/control-cloud_defend-4c9cbba0",
		agenttest.Config(t, inputType, 3, fleetInput(), streams...))
	if err != nil {
		t.Fatalf("the component refuses the input the package makes: %v", err)
	}
	if in.Policy == nil || len(in.Warnings) > 0 {
		t.Errorf("policy %v, warnings %v", in.Policy, in.Warnings)
	}
	if in.PackagePolicyID != "4c9cbba0-c812-11ed-a8dd-91ec403e4f03" || in.Namespace != "default" {
		t.Errorf("input metadata %q %q", in.PackagePolicyID, in.Namespace)
	}
	if in.HeartbeatPeriod != component.DefaultHeartbeatPeriod || in.MetricsPeriod != component.DefaultMetricsPeriod {
		t.Errorf("periods %v %v", in.HeartbeatPeriod, in.MetricsPeriod)
	}
	// The package's alert throttle defaults are the daemon's.
	if in.AlertRate != throttle.DefaultRate || in.AlertBurst != throttle.DefaultBurst {
		t.Errorf("alert throttle %v a second, %d at once; want the defaults %v, %d", in.AlertRate, in.AlertBurst, throttle.DefaultRate, throttle.DefaultBurst)
	}
	var got, want any
	if err := yaml.Unmarshal(in.PolicyYAML, &got); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(policy.DefaultYAML, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the component read the policy as\n%s", in.PolicyYAML)
	}
}

// TestStreamTemplatesCustomPolicy renders a user's policy (with version: and a
// blocking response) and a changed period, and the component reads them.
func TestStreamTemplatesCustomPolicy(t *testing.T) {
	custom := `version: "1"
process:
  selectors:
    - name: shells
      operation: [exec]
      processName: [bash, sh]
      sessionLeaderInteractive: true
  responses:
    - match: [shells]
      actions: [alert, block]
`
	streams := streamConfigs(t, custom)
	for _, s := range streams {
		switch s["data_stream"].(map[string]any)["dataset"] {
		case pkg.Name + ".heartbeat":
			s["period"] = "5m"
		case pkg.Name + ".alerts":
			// As the alerts stream renders with alert_throttle_rate 0 (off).
			s["alert_throttle"] = map[string]any{"rate": 0, "burst": 20}
		}
	}
	in, err := component.ParseInput("u", agenttest.Config(t, inputType, 4, fleetInput(), streams...))
	if err != nil {
		t.Fatal(err)
	}
	if !in.Policy.Blocks(policy.Process) || in.HeartbeatPeriod != 5*time.Minute || in.AlertRate != 0 {
		t.Errorf("policy %v, heartbeat %v, alert rate %v", in.Policy, in.HeartbeatPeriod, in.AlertRate)
	}
}

// TestStreamTemplatesStandalone: the same rendered policy nested under
// security-policy, as standalone elastic-agent.yml writes it, is read too.
func TestStreamTemplatesStandalone(t *testing.T) {
	streams := streamConfigs(t, "")
	for i, s := range streams {
		if s["data_stream"].(map[string]any)["dataset"] != pkg.Name+".alerts" {
			continue
		}
		nested := map[string]any{"id": s["id"], "data_stream": s["data_stream"]}
		sp := map[string]any{}
		for k, v := range s {
			if k != "id" && k != "data_stream" {
				sp[k] = v
			}
		}
		nested["security-policy"] = sp
		streams[i] = nested
	}
	in, err := component.ParseInput("u", agenttest.Config(t, inputType, 1, fleetInput(), streams...))
	if err != nil || in.Policy == nil {
		t.Fatalf("policy %v, err %v", in.Policy, err)
	}
}

// ---------------------------------------------------------------------------
// Sample events and Kibana assets.

// flattenDoc lists a document's leaf values by dotted name. Arrays of objects
// are walked element by element; a declared flattened field is a leaf.
func flattenDoc(prefix string, v any, declared map[string]string, out map[string][]any) {
	switch x := v.(type) {
	case map[string]any:
		if declared[prefix] == "flattened" {
			out[prefix] = append(out[prefix], x)
			return
		}
		for k, e := range x {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			flattenDoc(name, e, declared, out)
		}
	case []any:
		for _, e := range x {
			flattenDoc(prefix, e, declared, out)
		}
		if len(x) == 0 {
			out[prefix] = append(out[prefix], nil)
		}
	default:
		out[prefix] = append(out[prefix], x)
	}
}

// checkValue says whether a JSON value indexes into a field of the type.
func checkValue(typ string, v any) error {
	if v == nil {
		return nil
	}
	switch typ {
	case "keyword", "constant_keyword", "wildcard", "text", "match_only_text", "version":
		switch v.(type) {
		case string, json.Number, bool:
			return nil
		}
	case "long", "integer", "short", "byte", "unsigned_long":
		n, ok := v.(json.Number)
		if !ok {
			break
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			if typ == "unsigned_long" {
				if _, err := strconv.ParseUint(string(n), 10, 64); err == nil {
					return nil
				}
			}
			return fmt.Errorf("%s is not an integer", n)
		}
		lim := map[string]int64{"integer": math.MaxInt32, "short": math.MaxInt16, "byte": math.MaxInt8}[typ]
		if lim != 0 && (i > lim || i < -lim-1) {
			return fmt.Errorf("%d overflows a %s", i, typ)
		}
		if typ == "unsigned_long" && i < 0 {
			return fmt.Errorf("%d is negative", i)
		}
		return nil
	case "double", "float", "half_float", "scaled_float":
		if _, ok := v.(json.Number); ok {
			return nil
		}
	case "boolean":
		if _, ok := v.(bool); ok {
			return nil
		}
	case "date", "date_nanos":
		if s, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				return err
			}
			return nil
		}
	case "ip":
		if s, ok := v.(string); ok && net.ParseIP(s) != nil {
			return nil
		}
	case "flattened", "object":
		return nil
	default:
		return fmt.Errorf("no check for type %s", typ)
	}
	return fmt.Errorf("%v (%T) does not index as %s", v, v, typ)
}

func decodeJSON(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return doc, nil
}

func TestSampleEvents(t *testing.T) {
	for _, ds := range pkg.DataStreams() {
		defs, err := pkg.Definitions(ds)
		if err != nil {
			t.Fatal(err)
		}
		declared := map[string]string{}
		values := map[string]string{}
		for _, d := range defs {
			declared[d.Name] = d.Type
			values[d.Name] = d.Value
		}
		p := path.Join("data_stream", ds, "sample_event.json")
		b, err := fs.ReadFile(fsys(), p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		doc, err := decodeJSON(b)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if missing, err := pkg.Undeclared(ds, b); err != nil || len(missing) > 0 {
			t.Errorf("%s: undeclared fields %v (%v)", p, missing, err)
		}
		leaves := map[string][]any{}
		flattenDoc("", doc, declared, leaves)
		for name, vs := range leaves {
			typ, ok := declared[name]
			if !ok {
				t.Errorf("%s: %s is not declared in data stream %s", p, name, ds)
				continue
			}
			for _, v := range vs {
				if err := checkValue(typ, v); err != nil {
					t.Errorf("%s: %s: %v", p, name, err)
				}
				if values[name] != "" && v != values[name] {
					t.Errorf("%s: %s is %v, the mapping's constant is %s", p, name, v, values[name])
				}
			}
		}
		dm := readDataStream(t, ds)
		for name, want := range map[string]string{
			"data_stream.dataset": pkg.Name + "." + ds, "data_stream.type": dm.Type,
			"event.dataset": pkg.Name + "." + ds, "event.module": pkg.Name, "agent.type": "cloud-defend",
			"ecs.version": pkg.ECSVersion, "host.os.type": "linux",
		} {
			if vs := leaves[name]; len(vs) != 1 || vs[0] != want {
				t.Errorf("%s: %s is %v, want %s", p, name, vs, want)
			}
		}
		kind := map[string]string{"alerts": "alert", "file": "event", "network": "event", "process": "event"}[ds]
		if kind == "" {
			kind = "metric"
		}
		if vs := leaves["event.kind"]; len(vs) != 1 || vs[0] != kind {
			t.Errorf("%s: event.kind %v, want %s", p, vs, kind)
		}
		if ds == "alerts" && len(leaves["message"]) != 1 {
			t.Errorf("%s: an alert carries a message (the alert's name in the detection engine)", p)
		}
	}
}

func TestKibanaIndexPattern(t *testing.T) {
	entries, _ := fs.ReadDir(fsys(), "kibana/index_pattern")
	if len(entries) == 0 {
		t.Skip("no index pattern")
	}
	for _, e := range entries {
		p := path.Join("kibana/index_pattern", e.Name())
		b, _ := fs.ReadFile(fsys(), p)
		var obj struct {
			ID         string `json:"id"`
			Type       string `json:"type"`
			Attributes struct {
				Title         string `json:"title"`
				TimeFieldName string `json:"timeFieldName"`
			} `json:"attributes"`
		}
		if err := json.Unmarshal(b, &obj); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if obj.ID+".json" != e.Name() || !strings.HasPrefix(obj.ID, pkg.Name+"-") {
			t.Errorf("%s: id %q must be the file's name and start with %s-", p, obj.ID, pkg.Name)
		}
		if obj.Type != "index-pattern" || obj.Attributes.TimeFieldName != "@timestamp" {
			t.Errorf("%s: type %q, time field %q", p, obj.Type, obj.Attributes.TimeFieldName)
		}
		for _, ds := range []string{"alerts", "file", "network", "process"} {
			if !matchIndex(obj.Attributes.Title, "logs-"+pkg.Name+"."+ds+"-default") {
				t.Errorf("%s: title %q does not cover logs-%s.%s-*", p, obj.Attributes.Title, pkg.Name, ds)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// README: its field tables and example events are generated from the package.

func fieldTable(t *testing.T, ds string) string {
	t.Helper()
	defs, err := pkg.Definitions(ds)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("| Field | Description | Type |\n|---|---|---|\n")
	for _, d := range defs {
		desc := strings.Join(strings.Fields(d.Description), " ")
		if d.ECS {
			top, _, _ := strings.Cut(d.Name, ".")
			desc = strings.TrimSpace(fmt.Sprintf("ECS: [%s](https://www.elastic.co/guide/en/ecs/%s/ecs-%s.html). %s", top,
				pkg.ECSVersion[:strings.LastIndex(pkg.ECSVersion, ".")], top, desc))
		}
		if d.Value != "" {
			desc += fmt.Sprintf(" Always `%s`.", d.Value)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", d.Name, strings.ReplaceAll(desc, "|", `\|`), d.Type)
	}
	return b.String()
}

func exampleEvent(t *testing.T, ds string) string {
	t.Helper()
	b, err := fs.ReadFile(fsys(), path.Join("data_stream", ds, "sample_event.json"))
	if err != nil {
		t.Fatal(err)
	}
	return "```json\n" + strings.TrimRight(string(b), "\n") + "\n```\n"
}

func TestREADME(t *testing.T) {
	const file = "docs/README.md"
	b, err := fs.ReadFile(fsys(), file)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, ds := range pkg.DataStreams() {
		for kind, body := range map[string]string{"fields": fieldTable(t, ds), "event": exampleEvent(t, ds)} {
			start, end := fmt.Sprintf("<!-- %s:%s -->\n", kind, ds), fmt.Sprintf("<!-- /%s:%s -->", kind, ds)
			i, j := strings.Index(doc, start), strings.Index(doc, end)
			if i < 0 || j < i {
				t.Errorf("%s: no %s%s section", file, start, end)
				continue
			}
			if doc[i+len(start):j] != body {
				if !*update {
					t.Errorf("%s: the %s of data stream %s are out of date: go test ./package -run README -update", file, kind, ds)
				}
				doc = doc[:i+len(start)] + body + doc[j:]
			}
		}
	}
	if *update && doc != string(b) {
		if err := os.WriteFile(path.Join(pkg.Name, file), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s; run the tests again (the package files are embedded when the test is built)", file)
	}
}
