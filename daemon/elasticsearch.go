package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cloud-defend/cloud-defend/component"
	"github.com/cloud-defend/cloud-defend/ecs"
	"github.com/cloud-defend/cloud-defend/output"
)

// earlyLimit bounds the documents held before the output unit's first config.
const earlyLimit = 10000

// Elasticsearch is the Elasticsearch output: a Sink, and the component's Sink
// for the agent's output unit. Each output config replaces the shipper (the
// spool carries over, so nothing queued is lost); documents published before
// the first config wait, up to earlyLimit.
type Elasticsearch struct {
	dataPath string
	log      Logger

	mu      sync.Mutex
	shipper *output.Shipper
	early   []ecs.Doc // before the first output config
	lost    int64     // early documents past earlyLimit
	err     error     // the last Publish error
}

// NewElasticsearch returns the sink; it spools under dataPath.
func NewElasticsearch(dataPath string, log Logger) (*Elasticsearch, error) {
	if err := os.MkdirAll(dataPath, 0o700); err != nil {
		return nil, fmt.Errorf("data path %s: %w", dataPath, err)
	}
	return &Elasticsearch{dataPath: dataPath, log: log}, nil
}

func (s *Elasticsearch) Configure(o component.Output) error {
	cfg := output.Config{Hosts: o.Hosts, APIKey: o.APIKey, Username: o.Username, Password: o.Password,
		DataDir: filepath.Join(s.dataPath, "cloud-defend"), Insecure: o.SSL.VerificationMode == "none"}
	for _, path := range o.SSL.CertificateAuthorities {
		pem, err := os.ReadFile(path)
		if err != nil {
			pem = []byte(path) // Fleet may inline the PEM itself
		}
		cfg.CACerts = append(cfg.CACerts, pem)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shipper != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.shipper.Close(ctx) // what it could not send stays spooled for the next one
		cancel()
		s.shipper = nil
	}
	sh, err := output.New(cfg, s.log)
	if err != nil {
		return err
	}
	s.shipper = sh
	for _, d := range s.early {
		if err := sh.Publish(d.Stream, d.ID, d.Body); err != nil {
			s.err = err
			s.lost++
		}
	}
	if err := sh.Flush(); err != nil {
		s.err = err
	}
	s.early = nil
	return nil
}

// Publish hands a document to the shipper, or holds it until the output exists.
func (s *Elasticsearch) Publish(d ecs.Doc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shipper == nil {
		if len(s.early) >= earlyLimit {
			s.lost++
			return
		}
		d.Body = slices.Clone(d.Body) // the encoder reuses its buffer
		s.early = append(s.early, d)
		return
	}
	if err := s.shipper.Publish(d.Stream, d.ID, d.Body); err != nil {
		s.err = err
		s.lost++
	}
}

// Flush hands the published documents to the OS (see output.Shipper.Flush).
func (s *Elasticsearch) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shipper == nil {
		return
	}
	if err := s.shipper.Flush(); err != nil {
		s.err = err
	}
}

func (s *Elasticsearch) Status() component.Status {
	s.mu.Lock()
	sh, lost, err := s.shipper, s.lost, s.err
	s.mu.Unlock()
	if err != nil {
		return component.Status{Degraded: true, Message: fmt.Sprintf("cannot spool events: %v (%d lost)", err, lost)}
	}
	if lost > 0 {
		return component.Status{Degraded: true, Message: fmt.Sprintf("%d events lost before the output was configured", lost)}
	}
	if sh == nil {
		return component.Status{}
	}
	if degraded, msg := sh.Health(); degraded {
		return component.Status{Degraded: true, Message: msg}
	}
	return component.Status{}
}

func (s *Elasticsearch) Diagnostics() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shipper == nil {
		return map[string]any{"configured": false, "held": len(s.early), "lost": s.lost}
	}
	return s.shipper.Stats()
}

// Close flushes within ctx; the rest stays spooled.
func (s *Elasticsearch) Close(ctx context.Context) error {
	s.mu.Lock()
	sh := s.shipper
	s.mu.Unlock()
	if sh == nil {
		return nil
	}
	return sh.Close(ctx)
}

// Counters adds the output's numbers to the metrics document.
func (s *Elasticsearch) Counters(c *ecs.Counters) {
	s.mu.Lock()
	sh, lost := s.shipper, s.lost
	s.mu.Unlock()
	c.Dropped = lost
	if sh == nil {
		return
	}
	st := sh.Stats()
	c.Published, c.Acked, c.Pending, c.SpoolBytes = st.Published, st.Acked, st.Pending, st.SpoolBytes
	c.Dropped += st.Dropped
	for _, n := range st.Rejected {
		c.Rejected += n
	}
}
