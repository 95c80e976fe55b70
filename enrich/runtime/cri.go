package runtime

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI reads containers from a Container Runtime Interface socket
// (containerd's or CRI-O's), as kubelet does.
type CRI struct {
	socket string
	conn   *grpc.ClientConn
	rt     cri.RuntimeServiceClient
}

// NewCRI connects (lazily) to a CRI socket path.
func NewCRI(socket string) (*CRI, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI %s: %w", socket, err)
	}
	return &CRI{socket: socket, conn: conn, rt: cri.NewRuntimeServiceClient(conn)}, nil
}

func (c *CRI) Name() string { return "cri" }

// Close closes the connection.
func (c *CRI) Close() error { return c.conn.Close() }

// Version asks the runtime its name and version (a health check).
func (c *CRI) Version(ctx context.Context) (string, error) {
	v, err := c.rt.Version(ctx, &cri.VersionRequest{})
	if err != nil {
		return "", fmt.Errorf("CRI %s: %w", c.socket, err)
	}
	return v.RuntimeName + " " + v.RuntimeVersion, nil
}

// Container implements Source with a verbose ContainerStatus: the image as
// the pod spec named it, and privileged from the container's config in the
// runtime's verbose info (containerd and CRI-O both include it).
func (c *CRI) Container(ctx context.Context, id string) (Meta, error) {
	res, err := c.rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if status.Code(err) == codes.NotFound {
		return Meta{}, ErrNotFound
	}
	if err != nil {
		return Meta{}, fmt.Errorf("CRI %s: container %s: %w", c.socket, id, err)
	}
	st := res.GetStatus()
	ref := st.GetImage().GetImage()
	if ref == "" || isDigestOnly(ref) {
		// Some runtimes answer with the image id; the pod's name for it is in
		// the annotations kubelet sets only for CRI-O, and in ImageRef.
		if r := st.GetImageRef(); r != "" && !isDigestOnly(r) {
			ref = r
		}
	}
	m := Meta{}
	m.ImageName, m.ImageTag = SplitImage(ref)
	if p, ok := privileged(res.GetInfo()["info"]); ok {
		m.Privileged = &p
	}
	return m, nil
}

func isDigestOnly(ref string) bool {
	return len(ref) > 7 && ref[:7] == "sha256:"
}

// privileged reads the container's security context from a runtime's verbose
// info: containerd's {"config":{"linux":{"security_context":{"privileged":…}}}}
// and CRI-O's {"privileged":…}.
func privileged(info string) (bool, bool) {
	if info == "" {
		return false, false
	}
	var v struct {
		Privileged *bool `json:"privileged"`
		Config     struct {
			Linux struct {
				SecurityContext struct {
					Privileged *bool `json:"privileged"`
				} `json:"security_context"`
			} `json:"linux"`
		} `json:"config"`
	}
	if json.Unmarshal([]byte(info), &v) != nil {
		return false, false
	}
	if p := v.Config.Linux.SecurityContext.Privileged; p != nil {
		return *p, true
	}
	if v.Privileged != nil {
		return *v.Privileged, true
	}
	return false, false
}
