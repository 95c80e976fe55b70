module github.com/cloud-defend/cloud-defend

go 1.26

require (
	github.com/magefile/mage v1.17.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
