module github.com/cloud-defend/cloud-defend

go 1.26

require (
	github.com/cilium/ebpf v0.22.0
	github.com/elastic/elastic-agent-client/v7 v7.18.1
	github.com/elastic/elastic-agent-libs v0.20.0
	github.com/elastic/go-elasticsearch/v8 v8.19.0
	github.com/elastic/go-ucfg v0.8.8
	github.com/magefile/mage v1.17.0
	go.uber.org/zap v1.27.0
	golang.org/x/sys v0.43.0
	google.golang.org/grpc v1.79.3
	google.golang.org/protobuf v1.36.10
	gopkg.in/yaml.v3 v3.0.1
	k8s.io/cri-api v0.35.4
)

require (
	github.com/Microsoft/go-winio v0.5.2 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/elastic/elastic-transport-go/v8 v8.7.0 // indirect
	github.com/go-logr/logr v1.4.3 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/gofrs/uuid/v5 v5.2.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	go.elastic.co/ecszap v1.0.2 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel v1.41.0 // indirect
	go.opentelemetry.io/otel/metric v1.41.0 // indirect
	go.opentelemetry.io/otel/trace v1.41.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	golang.org/x/net v0.48.0 // indirect
	golang.org/x/text v0.32.0 // indirect
	google.golang.org/genproto v0.0.0-20230410155749-daa745c078e1 // indirect
)

tool github.com/cilium/ebpf/cmd/bpf2go
