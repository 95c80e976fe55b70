package cloud

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The metadata services cannot be reached here, so these servers play them,
// strictly: each answers only requests that carry what the real one demands
// (IMDSv2's token, Google's Metadata-Flavor, Azure's Metadata header).
// Their writes of a response go unchecked: one that fails shows in the
// client under test, which then gets no or a torn answer.
func awsServer(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" && r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "":
			_, _ = w.Write([]byte("tok123"))
		case r.Method == http.MethodGet && r.URL.Path == "/latest/dynamic/instance-identity/document" && r.Header.Get("X-aws-ec2-metadata-token") == "tok123":
			_, _ = w.Write([]byte(`{"accountId":"123456789012","region":"eu-west-1","availabilityZone":"eu-west-1b","instanceId":"i-0abc","instanceType":"m5.large"}`))
		default:
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		}
	}))
}

func gcpServer(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/computeMetadata/v1/" || r.URL.Query().Get("recursive") != "true" || r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		_, _ = w.Write([]byte(`{"instance":{"id":4520031799277581759,"name":"gke-node-1","zone":"projects/1234/zones/us-central1-a"},"project":{"projectId":"my-project","numericProjectId":1234}}`))
	}))
}

func azureServer(t *testing.T) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metadata/instance" || r.URL.Query().Get("api-version") == "" || r.Header.Get("Metadata") != "true" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{"compute":{"vmId":"02aab8a4-74ef","name":"aks-node-0","location":"westeurope","zone":"2","subscriptionId":"sub-1","resourceGroupName":"rg-1"}}`))
	}))
}

func dead() string { return "http://127.0.0.1:1" }

func TestDetect(t *testing.T) {
	a, g, z := awsServer(t), gcpServer(t), azureServer(t)
	defer a.Close()
	defer g.Close()
	defer z.Close()
	c := Detect(context.Background(), Endpoints{AWS: a.URL, GCP: dead(), Azure: dead()}, time.Second)
	if c == nil || c.Provider != "aws" || c.Region != "eu-west-1" || c.AvailabilityZone != "eu-west-1b" || c.AccountID != "123456789012" || c.InstanceID != "i-0abc" {
		t.Errorf("aws: %+v", c)
	}
	c = Detect(context.Background(), Endpoints{AWS: dead(), GCP: g.URL, Azure: dead()}, time.Second)
	if c == nil || c.Provider != "gcp" || c.Region != "us-central1" || c.AvailabilityZone != "us-central1-a" || c.ProjectID != "my-project" || c.InstanceID != "4520031799277581759" || c.InstanceName != "gke-node-1" {
		t.Errorf("gcp: %+v", c)
	}
	c = Detect(context.Background(), Endpoints{AWS: dead(), GCP: dead(), Azure: z.URL}, time.Second)
	if c == nil || c.Provider != "azure" || c.Region != "westeurope" || c.AvailabilityZone != "westeurope-2" || c.AccountID != "sub-1" || c.InstanceName != "aks-node-0" {
		t.Errorf("azure: %+v", c)
	}
	// The Azure server answers the AWS paths with errors and vice versa: no
	// provider is mistaken for another when they share an address.
	c = Detect(context.Background(), Endpoints{AWS: z.URL, GCP: dead(), Azure: a.URL}, time.Second)
	if c != nil {
		t.Errorf("found %+v where no service answered its own protocol", c)
	}
}

// TestDetectOffCloud: a service that never answers costs the timeout, once.
func TestDetectOffCloud(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	start := time.Now()
	if c := Detect(context.Background(), Endpoints{AWS: hang.URL, GCP: hang.URL, Azure: hang.URL}, 300*time.Millisecond); c != nil {
		t.Errorf("found %+v", c)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v with a 300ms timeout", d)
	}
}
