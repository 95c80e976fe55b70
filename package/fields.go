// Package pkg holds the Fleet integration package of cloud-defend (the
// cloud_defend folder, in package-spec 3 source form) and reads its field
// definitions, so that tests elsewhere can hold the documents cloud-defend writes
// to the mappings the package installs.
package pkg

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Name is the package's name, and the folder it lives in.
const Name = "cloud_defend"

// ECSVersion is the ECS version the package imports its ECS fields from
// (_dev/build/build.yml) and the one ECSTypes is transcribed from.
const ECSVersion = "8.11.0"

//go:embed all:cloud_defend
var files embed.FS

// FS returns the package's files, rooted at the package folder (manifest.yml at
// its top).
func FS() fs.FS {
	sub, err := fs.Sub(files, Name)
	if err != nil {
		panic(err)
	}
	return sub
}

// DataStreams returns the names of the package's data streams, sorted.
func DataStreams() []string {
	entries, err := fs.ReadDir(FS(), "data_stream")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Field is one field definition in a data stream's fields/*.yml: the keys of
// package-spec 3.0's fields.spec.yml this package has use for. A key outside
// this set (a typo, or a spec key nobody here has needed yet, such as
// multi_fields) fails decoding; add it here when it is needed.
type Field struct {
	Name           string   `yaml:"name"`
	Type           string   `yaml:"type,omitempty"`
	External       string   `yaml:"external,omitempty"`
	Description    string   `yaml:"description,omitempty"`
	Example        any      `yaml:"example,omitempty"`
	Value          string   `yaml:"value,omitempty"`
	MetricType     string   `yaml:"metric_type,omitempty"`
	Unit           string   `yaml:"unit,omitempty"`
	DateFormat     string   `yaml:"date_format,omitempty"`
	Dimension      bool     `yaml:"dimension,omitempty"`
	IgnoreAbove    int      `yaml:"ignore_above,omitempty"`
	Index          *bool    `yaml:"index,omitempty"`
	DocValues      *bool    `yaml:"doc_values,omitempty"`
	Enabled        *bool    `yaml:"enabled,omitempty"`
	ObjectType     string   `yaml:"object_type,omitempty"`
	Path           string   `yaml:"path,omitempty"`
	Normalize      []string `yaml:"normalize,omitempty"`
	Pattern        string   `yaml:"pattern,omitempty"`
	ExpectedValues []string `yaml:"expected_values,omitempty"`
	Fields         []Field  `yaml:"fields,omitempty"`
}

// FieldFile is one fields/*.yml file of a data stream.
type FieldFile struct {
	Path   string // relative to the package folder
	Fields []Field
}

// FieldFiles reads a data stream's field files strictly: a key package-spec does
// not define for fields (or that this package does not use) is an error.
func FieldFiles(dataStream string) ([]FieldFile, error) {
	dir := path.Join("data_stream", dataStream, "fields")
	entries, err := fs.ReadDir(FS(), dir)
	if err != nil {
		return nil, fmt.Errorf("data stream %q: %w", dataStream, err)
	}
	var out []FieldFile
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".yml" {
			return nil, fmt.Errorf("%s/%s: only .yml field files belong in fields/", dir, e.Name())
		}
		p := path.Join(dir, e.Name())
		var fields []Field
		if err := DecodeYAML(FS(), p, &fields); err != nil {
			return nil, err
		}
		out = append(out, FieldFile{Path: p, Fields: fields})
	}
	return out, nil
}

// DecodeYAML decodes one YAML document strictly (unknown keys are errors).
func DecodeYAML(fsys fs.FS, name string, v any) error {
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return fmt.Errorf("%s: more than one YAML document", name)
	}
	return nil
}

// Definition is one leaf field of a data stream, its name flattened.
type Definition struct {
	Name        string
	Type        string
	Description string
	ECS         bool   // imported from ECS (external: ecs)
	Value       string // a constant_keyword's value, if set
	File        string // the field file that declares it
}

// Definitions returns a data stream's leaf fields sorted by name, flattened to
// their full dotted names, with their Elasticsearch types. Fields imported with
// `external: ecs` get the type ECS gives them (ECSTypes). A field declared twice
// in the data stream is an error.
func Definitions(dataStream string) ([]Definition, error) {
	ffs, err := FieldFiles(dataStream)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{}
	var out []Definition
	for _, ff := range ffs {
		if err := flatten(ff.Path, "", ff.Fields, seen, &out); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b Definition) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Fields returns a data stream's fields, flattened to their full dotted names,
// with their Elasticsearch types. Fields imported with `external: ecs` get the
// type ECS gives them (ECSTypes). Groups are not listed, only their leaves.
func Fields(dataStream string) (map[string]string, error) {
	defs, err := Definitions(dataStream)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(defs))
	for _, d := range defs {
		out[d.Name] = d.Type
	}
	return out, nil
}

func flatten(file, prefix string, fields []Field, seen map[string]string, out *[]Definition) error {
	for _, f := range fields {
		name := f.Name
		if prefix != "" {
			name = prefix + "." + f.Name
		}
		if f.Type == "group" || f.Type == "nested" {
			if err := flatten(file, name, f.Fields, seen, out); err != nil {
				return err
			}
			if f.Type == "group" {
				continue
			}
		}
		d := Definition{Name: name, Type: f.Type, Description: f.Description, Value: f.Value, File: file}
		if f.External != "" {
			if f.External != "ecs" {
				return fmt.Errorf("%s: %s: external %q: only ecs is known", file, name, f.External)
			}
			t, ok := ECSTypes[name]
			if !ok {
				return fmt.Errorf("%s: %s is imported from ECS, but ECS %s has no such field (or ECSTypes lacks it)", file, name, ECSVersion)
			}
			d.ECS = true
			if d.Type == "" {
				d.Type = t
			}
		}
		if d.Type == "" {
			return fmt.Errorf("%s: %s has no type", file, name)
		}
		if other, dup := seen[name]; dup {
			return fmt.Errorf("%s: %s is already defined in %s: a field is defined once per data stream", file, name, other)
		}
		seen[name] = file
		*out = append(*out, d)
	}
	return nil
}

// Undeclared returns the fields of a JSON document that a data stream does not
// declare, sorted: leaf values by dotted name, arrays of objects walked element
// by element, a field declared flattened taken whole. It is what a test needs to
// show that every field an encoder writes is mapped.
func Undeclared(dataStream string, doc []byte) ([]string, error) {
	declared, err := Fields(dataStream)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	missing := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if declared[prefix] == "flattened" || declared[prefix] == "object" {
				return
			}
			for k, e := range x {
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, e)
			}
		case []any:
			for _, e := range x {
				walk(prefix, e)
			}
			if _, ok := declared[prefix]; !ok && len(x) == 0 {
				missing[prefix] = true
			}
		default:
			if _, ok := declared[prefix]; !ok {
				missing[prefix] = true
			}
		}
	}
	walk("", v)
	out := make([]string, 0, len(missing))
	for n := range missing {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// SortedNames returns a field map's names, sorted.
func SortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ECSTypes are the Elasticsearch types of the ECS fields the package uses,
// transcribed from the ECS 8.11.0 field reference (generated/csv/fields.csv of
// elastic/ecs at v8.11.0). Every `external: ecs` field must be listed here.
// Note that ECS 8.11 has no process.group.id (only the relatives' group.id and
// process.real_group.id): the package declares it itself.
var ECSTypes = map[string]string{
	"@timestamp":                               "date",
	"agent.id":                                 "keyword",
	"agent.type":                               "keyword",
	"agent.version":                            "keyword",
	"cloud.account.id":                         "keyword",
	"cloud.account.name":                       "keyword",
	"cloud.availability_zone":                  "keyword",
	"cloud.instance.id":                        "keyword",
	"cloud.instance.name":                      "keyword",
	"cloud.project.id":                         "keyword",
	"cloud.project.name":                       "keyword",
	"cloud.provider":                           "keyword",
	"cloud.region":                             "keyword",
	"container.id":                             "keyword",
	"container.image.name":                     "keyword",
	"container.image.tag":                      "keyword",
	"container.runtime":                        "keyword",
	"container.security_context.privileged":    "boolean",
	"data_stream.dataset":                      "constant_keyword",
	"data_stream.namespace":                    "constant_keyword",
	"data_stream.type":                         "constant_keyword",
	"destination.address":                      "keyword",
	"destination.ip":                           "ip",
	"destination.port":                         "long",
	"ecs.version":                              "keyword",
	"error.message":                            "match_only_text",
	"event.action":                             "keyword",
	"event.category":                           "keyword",
	"event.created":                            "date",
	"event.dataset":                            "keyword",
	"event.id":                                 "keyword",
	"event.ingested":                           "date",
	"event.kind":                               "keyword",
	"event.module":                             "keyword",
	"event.outcome":                            "keyword",
	"event.type":                               "keyword",
	"file.extension":                           "keyword",
	"file.mode":                                "keyword",
	"file.name":                                "keyword",
	"file.path":                                "keyword",
	"file.target_path":                         "keyword",
	"group.id":                                 "keyword",
	"host.architecture":                        "keyword",
	"host.boot.id":                             "keyword",
	"host.hostname":                            "keyword",
	"host.id":                                  "keyword",
	"host.ip":                                  "ip",
	"host.mac":                                 "keyword",
	"host.name":                                "keyword",
	"host.os.family":                           "keyword",
	"host.os.full":                             "keyword",
	"host.os.kernel":                           "keyword",
	"host.os.name":                             "keyword",
	"host.os.platform":                         "keyword",
	"host.os.type":                             "keyword",
	"host.os.version":                          "keyword",
	"host.pid_ns_ino":                          "keyword",
	"message":                                  "match_only_text",
	"network.direction":                        "keyword",
	"network.transport":                        "keyword",
	"network.type":                             "keyword",
	"orchestrator.cluster.id":                  "keyword",
	"orchestrator.cluster.name":                "keyword",
	"orchestrator.namespace":                   "keyword",
	"orchestrator.resource.annotation":         "keyword",
	"orchestrator.resource.ip":                 "ip",
	"orchestrator.resource.label":              "keyword",
	"orchestrator.resource.name":               "keyword",
	"orchestrator.resource.parent.type":        "keyword",
	"orchestrator.resource.type":               "keyword",
	"orchestrator.type":                        "keyword",
	"process.args":                             "keyword",
	"process.args_count":                       "long",
	"process.command_line":                     "wildcard",
	"process.end":                              "date",
	"process.entity_id":                        "keyword",
	"process.entry_leader.args":                "keyword",
	"process.entry_leader.entity_id":           "keyword",
	"process.entry_leader.entry_meta.type":     "keyword",
	"process.entry_leader.executable":          "keyword",
	"process.entry_leader.group.id":            "keyword",
	"process.entry_leader.interactive":         "boolean",
	"process.entry_leader.name":                "keyword",
	"process.entry_leader.pid":                 "long",
	"process.entry_leader.real_group.id":       "keyword",
	"process.entry_leader.real_user.id":        "keyword",
	"process.entry_leader.same_as_process":     "boolean",
	"process.entry_leader.start":               "date",
	"process.entry_leader.user.id":             "keyword",
	"process.entry_leader.working_directory":   "keyword",
	"process.executable":                       "keyword",
	"process.exit_code":                        "long",
	"process.group_leader.args":                "keyword",
	"process.group_leader.entity_id":           "keyword",
	"process.group_leader.executable":          "keyword",
	"process.group_leader.group.id":            "keyword",
	"process.group_leader.interactive":         "boolean",
	"process.group_leader.name":                "keyword",
	"process.group_leader.pid":                 "long",
	"process.group_leader.real_group.id":       "keyword",
	"process.group_leader.real_user.id":        "keyword",
	"process.group_leader.same_as_process":     "boolean",
	"process.group_leader.start":               "date",
	"process.group_leader.user.id":             "keyword",
	"process.group_leader.working_directory":   "keyword",
	"process.interactive":                      "boolean",
	"process.name":                             "keyword",
	"process.parent.args":                      "keyword",
	"process.parent.entity_id":                 "keyword",
	"process.parent.executable":                "keyword",
	"process.parent.group.id":                  "keyword",
	"process.parent.interactive":               "boolean",
	"process.parent.name":                      "keyword",
	"process.parent.pid":                       "long",
	"process.parent.real_group.id":             "keyword",
	"process.parent.real_user.id":              "keyword",
	"process.parent.start":                     "date",
	"process.parent.user.id":                   "keyword",
	"process.parent.working_directory":         "keyword",
	"process.pid":                              "long",
	"process.previous.args":                    "keyword",
	"process.previous.executable":              "keyword",
	"process.real_group.id":                    "keyword",
	"process.real_user.id":                     "keyword",
	"process.session_leader.args":              "keyword",
	"process.session_leader.entity_id":         "keyword",
	"process.session_leader.executable":        "keyword",
	"process.session_leader.group.id":          "keyword",
	"process.session_leader.interactive":       "boolean",
	"process.session_leader.name":              "keyword",
	"process.session_leader.pid":               "long",
	"process.session_leader.real_group.id":     "keyword",
	"process.session_leader.real_user.id":      "keyword",
	"process.session_leader.same_as_process":   "boolean",
	"process.session_leader.start":             "date",
	"process.session_leader.user.id":           "keyword",
	"process.session_leader.working_directory": "keyword",
	"process.start":                            "date",
	"process.tty.char_device.major":            "long",
	"process.tty.char_device.minor":            "long",
	"process.user.id":                          "keyword",
	"process.working_directory":                "keyword",
	"source.address":                           "keyword",
	"source.ip":                                "ip",
	"source.port":                              "long",
	"user.id":                                  "keyword",
}
