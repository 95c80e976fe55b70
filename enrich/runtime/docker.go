package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
)

// DockerAPI reads containers from the Docker Engine API on a unix socket:
// Docker's own, or podman's compatible service (`podman system service`).
// One endpoint is all we need, so this is a plain HTTP client rather than
// Docker's SDK and its dependencies.
type DockerAPI struct {
	socket string
	client *http.Client
}

// NewDockerAPI returns a client for the API at a unix socket path.
func NewDockerAPI(socket string) *DockerAPI {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &DockerAPI{socket: socket, client: &http.Client{Transport: tr}}
}

func (d *DockerAPI) Name() string { return "docker" }

// Container implements Source with GET /containers/{id}/json.
func (d *DockerAPI) Container(ctx context.Context, id string) (Meta, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/"+url.PathEscape(id)+"/json", nil)
	if err != nil {
		return Meta{}, err
	}
	res, err := d.client.Do(req)
	if err != nil {
		return Meta{}, fmt.Errorf("%s: %w", d.socket, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusNotFound:
		return Meta{}, ErrNotFound
	case res.StatusCode != http.StatusOK:
		return Meta{}, fmt.Errorf("%s: GET /containers/%s/json: %s", d.socket, id, res.Status)
	}
	var c struct {
		Config struct {
			Image string
		}
		HostConfig struct {
			Privileged bool
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		return Meta{}, fmt.Errorf("%s: container %s: %w", d.socket, id, err)
	}
	name, tag := SplitImage(c.Config.Image)
	priv := c.HostConfig.Privileged
	return Meta{ImageName: name, ImageTag: tag, Privileged: &priv}, nil
}
