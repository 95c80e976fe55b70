// Package agenttest plays Elastic Agent for tests: elastic-agent-client's own
// StubServerV2 serves the V2 control protocol (TLS with client certificates, as
// the agent does), this package scripts the expected units and records what the
// component reports.
package agenttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-client/v7/pkg/client/chunk"
	"github.com/elastic/elastic-agent-client/v7/pkg/client/mock"
	"github.com/elastic/elastic-agent-client/v7/pkg/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	gproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Agent is a scripted agent. It serves CheckinV2 itself, because the agent
// pushes a new expected state as soon as it has one while the stub only answers
// check-ins (every 25 s when nothing changes); everything else (actions,
// diagnostics) is the stub's.
type Agent struct {
	*mock.StubServerV2
	Token string
	Port  int
	push  chan struct{}

	mu       sync.Mutex
	units    map[string]*proto.UnitExpected
	observed map[string]*proto.UnitObserved
	history  []Observation
	badToken int
	changed  chan struct{}
	tls      *tlsFiles
}

// Observation is one unit state the component reported.
type Observation struct {
	Unit    string
	State   proto.State
	Message string
}

type tlsFiles struct {
	caPEM, peerCertPEM, peerKeyPEM []byte
}

// New starts an agent on loopback. With useTLS, the server requires the client
// certificate that StartUpInfo hands out, as the real agent does.
func New(t testing.TB, useTLS bool) *Agent {
	t.Helper()
	a := &Agent{Token: fmt.Sprintf("token-%d", time.Now().UnixNano()), units: map[string]*proto.UnitExpected{},
		observed: map[string]*proto.UnitObserved{}, changed: make(chan struct{})}
	a.push = make(chan struct{}, 1)
	a.StubServerV2 = &mock.StubServerV2{
		ActionImpl:  func(*proto.ActionResponse) error { return nil },
		ActionsChan: make(chan *mock.PerformAction, 10),
		SentActions: map[string]*mock.PerformAction{},
	}
	var opts []grpc.ServerOption
	if useTLS {
		files, serverCert, pool, err := newCerts()
		if err != nil {
			t.Fatal(err)
		}
		a.tls = files
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{serverCert},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		})))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.Port = lis.Addr().(*net.TCPAddr).Port
	srv := grpc.NewServer(opts...)
	proto.RegisterElasticAgentServer(srv, a)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return a
}

// Addr is the server's loopback address.
func (a *Agent) Addr() string { return fmt.Sprintf("127.0.0.1:%d", a.Port) }

// CheckinV2 answers each check-in with the expected state and pushes a new one
// whenever the script changes it.
func (a *Agent) CheckinV2(srv proto.ElasticAgent_CheckinV2Server) error {
	observed := make(chan *proto.CheckinObserved)
	errc := make(chan error, 1)
	go func() {
		for {
			obs, err := chunk.RecvObserved(srv)
			if err != nil {
				errc <- err
				return
			}
			select {
			case observed <- obs:
			case <-srv.Context().Done():
				return
			}
		}
	}()
	for {
		select {
		case obs := <-observed:
			exp := a.checkin(obs)
			if exp == nil {
				return nil // refused: the agent closes the stream
			}
			if err := srv.Send(exp); err != nil {
				return err
			}
		case <-a.push:
			if err := srv.Send(a.expected()); err != nil {
				return err
			}
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-srv.Context().Done():
			return nil
		}
	}
}

// StartUpInfo is what the agent writes to a component's stdin.
func (a *Agent) StartUpInfo() ([]byte, error) {
	info := &proto.StartUpInfo{
		Addr: a.Addr(), ServerName: "localhost", Token: a.Token,
		Services:  []proto.ConnInfoServices{proto.ConnInfoServices_CheckinV2},
		AgentInfo: &proto.AgentInfo{Id: "test-agent-id", Version: "8.19.0", Snapshot: false},
	}
	if a.tls != nil {
		info.CaCert, info.PeerCert, info.PeerKey = a.tls.caPEM, a.tls.peerCertPEM, a.tls.peerKeyPEM
	}
	return gproto.Marshal(info)
}

// checkin answers a component's check-in with the scripted units, and records
// what it reports. Check-ins with a wrong token are refused (the connection
// closes), as the agent refuses unknown components.
func (a *Agent) checkin(obs *proto.CheckinObserved) *proto.CheckinExpected {
	a.mu.Lock()
	defer a.mu.Unlock()
	if obs.Token != a.Token {
		a.badToken++
		return nil
	}
	changed := false
	for _, u := range obs.Units {
		prev := a.observed[u.Id]
		if prev == nil || prev.State != u.State || prev.Message != u.Message {
			a.history = append(a.history, Observation{u.Id, u.State, u.Message})
			changed = true
		}
		a.observed[u.Id] = u
	}
	if changed {
		close(a.changed)
		a.changed = make(chan struct{})
	}
	// Like the agent, forget units that were asked to stop and did.
	for _, u := range obs.Units {
		if e := a.units[u.Id]; e != nil && e.State == proto.State_STOPPED && u.State == proto.State_STOPPED {
			delete(a.units, u.Id)
		}
	}
	return a.expectedLocked()
}

func (a *Agent) expected() *proto.CheckinExpected {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.expectedLocked()
}

func (a *Agent) expectedLocked() *proto.CheckinExpected {
	exp := &proto.CheckinExpected{AgentInfo: &proto.AgentInfo{Id: "test-agent-id", Version: "8.19.0"}}
	for _, u := range a.units {
		exp.Units = append(exp.Units, gproto.Clone(u).(*proto.UnitExpected))
	}
	return exp
}

func (a *Agent) changedScript() {
	select {
	case a.push <- struct{}{}:
	default:
	}
}

// SetUnit adds or changes a unit; a non-nil config is a new config revision.
func (a *Agent) SetUnit(id string, typ proto.UnitType, state proto.State, level proto.UnitLogLevel, cfg *proto.UnitExpectedConfig) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.units[id]
	if !ok {
		u = &proto.UnitExpected{Id: id, Type: typ}
		a.units[id] = u
	}
	u.State, u.LogLevel = state, level
	if cfg != nil {
		u.ConfigStateIdx++
		u.Config = cfg
	}
	a.changedScript()
}

// RemoveUnit drops a unit from what the agent expects.
func (a *Agent) RemoveUnit(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.units, id)
	a.changedScript()
}

// Wait blocks until unit id reports state with a message containing substr, and
// returns that message; it fails t after timeout.
func (a *Agent) Wait(t testing.TB, id string, state proto.State, substr string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		a.mu.Lock()
		o := a.observed[id]
		ch := a.changed
		a.mu.Unlock()
		if o != nil && o.State == state && strings.Contains(o.Message, substr) {
			return o.Message
		}
		select {
		case <-ch:
		case <-deadline:
			msg := "never reported"
			if o != nil {
				msg = fmt.Sprintf("%s: %q", o.State, o.Message)
			}
			t.Fatalf("unit %s did not report %s with %q in %v; last %s", id, state, substr, timeout, msg)
		}
	}
}

// History is every state change reported so far.
func (a *Agent) History() []Observation {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Observation(nil), a.history...)
}

// States is the sequence of states unit id reported.
func (a *Agent) States(id string) []proto.State {
	var out []proto.State
	for _, o := range a.History() {
		if o.Unit == id && (len(out) == 0 || out[len(out)-1] != o.State) {
			out = append(out, o.State)
		}
	}
	return out
}

// BadTokens counts refused check-ins.
func (a *Agent) BadTokens() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.badToken
}

// Config builds a unit config from its source (the input or output section).
func Config(t testing.TB, typ string, revision uint64, source map[string]any, streams ...map[string]any) *proto.UnitExpectedConfig {
	t.Helper()
	src, err := structpb.NewStruct(source)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &proto.UnitExpectedConfig{Source: src, Type: typ, Revision: revision}
	if id, ok := source["id"].(string); ok {
		cfg.Id = id
	}
	if ds, ok := source["data_stream"].(map[string]any); ok {
		ns, _ := ds["namespace"].(string)
		cfg.DataStream = &proto.DataStream{Namespace: ns}
	}
	for _, s := range streams {
		ss, err := structpb.NewStruct(s)
		if err != nil {
			t.Fatal(err)
		}
		st := &proto.Stream{Source: ss}
		if ds, ok := s["data_stream"].(map[string]any); ok {
			dataset, _ := ds["dataset"].(string)
			st.DataStream = &proto.DataStream{Dataset: dataset}
		}
		cfg.Streams = append(cfg.Streams, st)
	}
	return cfg
}

// newCerts makes a CA, a server certificate for localhost/127.0.0.1 and a client
// certificate for the component.
func newCerts() (*tlsFiles, tls.Certificate, *x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agenttest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
	}
	srvCert, srvKey, err := leaf(2, "localhost", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, tls.Certificate{}, nil, err
	}
	cliCert, cliKey, err := leaf(3, "cloud-defend", x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, tls.Certificate{}, nil, err
	}
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		return nil, tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return &tlsFiles{caPEM: caPEM, peerCertPEM: cliCert, peerKeyPEM: cliKey}, pair, pool, nil
}
