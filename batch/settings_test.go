package batch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// unset removes variables for one test (t.Setenv restores them afterwards).
func unset(t *testing.T, keys ...string) {
	for _, k := range keys {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestConfigFileIsReadAfterTheEnvironment(t *testing.T) {
	home := t.TempDir()
	t.Setenv("METAFLOW_HOME", home)
	unset(t, "METAFLOW_PROFILE", "METAFLOW_BATCH_JOB_QUEUE", "METAFLOW_DATASTORE_SYSROOT_S3",
		"METAFLOW_BATCH_JOB_ENV", "METAFLOW_BATCH_CONTAINER_IMAGE", "METAFLOW_BATCH_CONTAINER_REGISTRY",
		"METAFLOW_ECS_S3_ACCESS_IAM_ROLE", "METAFLOW_BATCH_ENGINE_BINARY")
	cfg := `{"METAFLOW_BATCH_JOB_QUEUE": "file-queue", "METAFLOW_DATASTORE_SYSROOT_S3": "s3://b/p",
	         "METAFLOW_BATCH_JOB_ENV": {"A": "1"}}`
	if err := os.WriteFile(filepath.Join(home, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ConfigFromEnv()
	if err != nil || c.Queue != "file-queue" || c.S3Root != "s3://b/p" || c.JobEnv["A"] != "1" {
		t.Fatalf("from file: %+v, %v", c, err)
	}
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "env-queue")
	if c, _ := ConfigFromEnv(); c.Queue != "env-queue" {
		t.Fatalf("the environment must win over the file, got %q", c.Queue)
	}
	// A profile selects config_<profile>.json.
	t.Setenv("METAFLOW_PROFILE", "dev")
	unset(t, "METAFLOW_BATCH_JOB_QUEUE")
	os.WriteFile(filepath.Join(home, "config_dev.json"), []byte(`{"METAFLOW_BATCH_JOB_QUEUE": "dev-q", "METAFLOW_DATASTORE_SYSROOT_S3": "s3://d"}`), 0o600)
	if c, err := ConfigFromEnv(); err != nil || c.Queue != "dev-q" {
		t.Fatalf("profile: %+v, %v", c, err)
	}
	os.WriteFile(filepath.Join(home, "config_dev.json"), []byte(`not json`), 0o600)
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "config_dev.json") {
		t.Fatalf("a broken config file must be named: %v", err)
	}
}
