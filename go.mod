module github.com/cloud-defend/cloud-defend

go 1.26

require (
	github.com/magefile/mage v1.17.0
	gopkg.in/yaml.v3 v3.0.1
)
