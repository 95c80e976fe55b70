package ruletest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ContractEnv names the environment variable that, when set, is the
// detection-rules directory ContractDir uses instead of the default.
const ContractEnv = "CLOUD_DEFEND_CONTRACT_DIR"

// ContractDir returns the directory sub (e.g. "integrations_cloud_defend",
// "cross-platform"; "" for the whole) of Elastic's detection-rules contract:
// $CLOUD_DEFEND_CONTRACT_DIR when set, else ../shared/contract/detection-rules
// beside the module root (the directory holding go.mod, found from the test's
// working directory up), where the shared reference material sits next to
// the repository.
//
// When the directory is missing the test is skipped, saying what is missing
// and where it was looked for (a fresh clone without ../shared), except in
// CI (CI=true), where the contract is laid beside the clone and its absence
// fails the test rather than passing it silently.
func ContractDir(t testing.TB, sub string) string {
	t.Helper()
	base := os.Getenv(ContractEnv)
	from := "$" + ContractEnv
	if base == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("locating Elastic's detection-rules contract: %v", err)
		}
		base = filepath.Join(filepath.Dir(root), "shared", "contract", "detection-rules")
		from = "the default location, ../shared/contract/detection-rules beside the module root " + root + "; set $" + ContractEnv + " to use another"
	}
	dir := filepath.Join(base, sub)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		msg := fmt.Sprintf("%s is missing (from %s): it is Elastic's detection-rules contract (the rules' TOML files, directory %q), part of the shared reference material laid beside the repository", dir, from, sub)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// moduleRoot is the nearest directory at or above the working directory that
// holds a go.mod.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod in %s or any directory above it", wd)
		}
	}
}
