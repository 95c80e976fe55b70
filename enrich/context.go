package enrich

import "github.com/cloud-defend/cloud-defend/enrich/proctree"

// Context is what enrichment knows about an event: its process and relatives
// from the process table, and its container and pod. Any part may be unknown
// (nil): the document then carries what the event itself says.
type Context struct {
	Process   *proctree.View
	Container *Container
	Pod       *Pod
}

// Container is container.*.
type Container struct {
	ID, Runtime         string
	ImageName, ImageTag string
	Privileged          *bool  // unknown when nil
	PodUID              string // the Kubernetes pod it belongs to; not a field of its own
}

// Pod is orchestrator.* for a container in a Kubernetes pod.
type Pod struct {
	ClusterID, ClusterName string
	Namespace, Name, IP    string
	ParentType             string   // the pod's owner kind, e.g. ReplicaSet
	Labels, Annotations    []string // "key:value"
}

// Cloud is cloud.*, from the instance metadata service.
type Cloud struct {
	Provider, Region, AvailabilityZone string
	AccountID, AccountName             string
	ProjectID, ProjectName             string
	InstanceID, InstanceName           string
}
