module github.com/cloud-defend/cloud-defend

go 1.26

require (
	github.com/cilium/ebpf v0.22.0
	github.com/magefile/mage v1.17.0
	golang.org/x/sys v0.43.0
	gopkg.in/yaml.v3 v3.0.1
)

tool github.com/cilium/ebpf/cmd/bpf2go
