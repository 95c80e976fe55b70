// Package cloud finds which cloud instance this node is (cloud.*) from the
// instance metadata services of AWS (IMDSv2), Google Cloud and Azure. It asks
// all three at once, once, with short timeouts and no retries: off a cloud the
// link-local address does not answer, and a security agent must not hang or
// flood it at startup.
package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cloud-defend/cloud-defend/enrich"
)

// Endpoints are the metadata services' base URLs; tests point them at
// servers of their own.
type Endpoints struct {
	AWS, GCP, Azure string
}

// Default are the real services' addresses.
var Default = Endpoints{AWS: "http://169.254.169.254", GCP: "http://metadata.google.internal", Azure: "http://169.254.169.254"}

// Detect asks every provider's service within timeout and returns the first
// answer; nil when none answered (not on a known cloud).
func Detect(ctx context.Context, ep Endpoints, timeout time.Duration) *enrich.Cloud {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}} // metadata never goes through a proxy
	type result struct{ c *enrich.Cloud }
	ch := make(chan result, 3)
	providers := []struct {
		ask  func(context.Context, *http.Client, string) (*enrich.Cloud, error)
		base string
	}{{aws, ep.AWS}, {gcp, ep.GCP}, {azure, ep.Azure}}
	for _, p := range providers {
		go func() {
			c, err := p.ask(ctx, client, p.base)
			if err != nil {
				c = nil
			}
			ch <- result{c}
		}()
	}
	for range 3 {
		if r := <-ch; r.c != nil {
			return r.c
		}
	}
	return nil
}

func get(ctx context.Context, client *http.Client, method, url string, header map[string]string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	for k, val := range header {
		req.Header.Set(k, val)
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, url, res.Status)
	}
	switch v := v.(type) {
	case *string:
		*v = strings.TrimSpace(string(body))
		return nil
	default:
		return json.Unmarshal(body, v)
	}
}

// aws reads the instance identity document with an IMDSv2 session token
// (IMDSv1 is off on hardened instances).
func aws(ctx context.Context, client *http.Client, base string) (*enrich.Cloud, error) {
	var token string
	if err := get(ctx, client, http.MethodPut, base+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"}, &token); err != nil {
		return nil, err
	}
	var doc struct {
		AccountID        string `json:"accountId"`
		Region           string `json:"region"`
		AvailabilityZone string `json:"availabilityZone"`
		InstanceID       string `json:"instanceId"`
	}
	if err := get(ctx, client, http.MethodGet, base+"/latest/dynamic/instance-identity/document", map[string]string{"X-aws-ec2-metadata-token": token}, &doc); err != nil {
		return nil, err
	}
	if doc.InstanceID == "" {
		return nil, fmt.Errorf("aws: empty identity document")
	}
	return &enrich.Cloud{Provider: "aws", Region: doc.Region, AvailabilityZone: doc.AvailabilityZone, AccountID: doc.AccountID, InstanceID: doc.InstanceID}, nil
}

// gcp reads the instance and project, all at once (recursive=true).
func gcp(ctx context.Context, client *http.Client, base string) (*enrich.Cloud, error) {
	var doc struct {
		Instance struct {
			ID   json.Number `json:"id"`
			Name string      `json:"name"`
			Zone string      `json:"zone"` // projects/<num>/zones/<zone>
		} `json:"instance"`
		Project struct {
			ProjectID string `json:"projectId"`
		} `json:"project"`
	}
	if err := get(ctx, client, http.MethodGet, base+"/computeMetadata/v1/?recursive=true", map[string]string{"Metadata-Flavor": "Google"}, &doc); err != nil {
		return nil, err
	}
	if doc.Instance.ID == "" {
		return nil, fmt.Errorf("gcp: no instance id")
	}
	zone := doc.Instance.Zone[strings.LastIndexByte(doc.Instance.Zone, '/')+1:]
	region := zone
	if i := strings.LastIndexByte(zone, '-'); i > 0 {
		region = zone[:i]
	}
	return &enrich.Cloud{Provider: "gcp", Region: region, AvailabilityZone: zone, ProjectID: doc.Project.ProjectID,
		InstanceID: doc.Instance.ID.String(), InstanceName: doc.Instance.Name}, nil
}

// azure reads the compute section of the instance metadata.
func azure(ctx context.Context, client *http.Client, base string) (*enrich.Cloud, error) {
	var doc struct {
		Compute struct {
			VMID              string `json:"vmId"`
			Name              string `json:"name"`
			Location          string `json:"location"`
			Zone              string `json:"zone"`
			SubscriptionID    string `json:"subscriptionId"`
			ResourceGroupName string `json:"resourceGroupName"`
		} `json:"compute"`
	}
	if err := get(ctx, client, http.MethodGet, base+"/metadata/instance?api-version=2021-02-01", map[string]string{"Metadata": "true"}, &doc); err != nil {
		return nil, err
	}
	if doc.Compute.VMID == "" {
		return nil, fmt.Errorf("azure: no vm id")
	}
	c := &enrich.Cloud{Provider: "azure", Region: doc.Compute.Location, AccountID: doc.Compute.SubscriptionID,
		InstanceID: doc.Compute.VMID, InstanceName: doc.Compute.Name, ProjectName: doc.Compute.ResourceGroupName}
	if doc.Compute.Zone != "" {
		c.AvailabilityZone = doc.Compute.Location + "-" + doc.Compute.Zone
	}
	return c, nil
}
