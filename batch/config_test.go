package batch

import (
	"github.com/metaflow-r/metaflow/internal/s3io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/metaflow-r/metaflow/engine/graph"
	"github.com/metaflow-r/metaflow/engine/scheduler"
)

func TestConfigFromEnv(t *testing.T) {
	for _, k := range []string{"METAFLOW_BATCH_JOB_QUEUE", "METAFLOW_DATASTORE_SYSROOT_S3", "METAFLOW_BATCH_JOB_ENV",
		"METAFLOW_BATCH_CONTAINER_IMAGE", "METAFLOW_ECS_S3_ACCESS_IAM_ROLE", "METAFLOW_BATCH_ENGINE_BINARY", logIntervalEnv} {
		t.Setenv(k, "")
	}
	_, err := ConfigFromEnv()
	if err == nil || !strings.Contains(err.Error(), "METAFLOW_BATCH_JOB_QUEUE") || !strings.Contains(err.Error(), "METAFLOW_DATASTORE_SYSROOT_S3") {
		t.Errorf("nothing set: %v", err)
	}
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "q")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "my-bucket/x")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "s3://") {
		t.Errorf("bad S3 root: %v", err)
	}
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://my-bucket/x/")
	t.Setenv("METAFLOW_BATCH_JOB_ENV", `{"A": "1"}`)
	c, err := ConfigFromEnv()
	if err != nil || c.Queue != "q" || c.JobEnv["A"] != "1" {
		t.Errorf("config %+v, %v", c, err)
	}
	if b, p, _ := s3io.ParseURL(c.S3Root); b != "my-bucket" || p != "x" {
		t.Errorf("bucket %q prefix %q", b, p)
	}
	t.Setenv("METAFLOW_BATCH_JOB_ENV", `["A"]`)
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "METAFLOW_BATCH_JOB_ENV") {
		t.Errorf("bad job env: %v", err)
	}
}

func TestJobShape(t *testing.T) {
	e := &Executor{cfg: Config{Queue: "q", Image: "img"}}
	l := &scheduler.Launch{Decorators: map[string]graph.Decorator{}}
	res, q, im, err := e.shape(l)
	if err != nil || res != (Resources{VCPUs: 1, MemoryMB: 4000}) || q != "q" || im != "img" {
		t.Errorf("defaults: %v %q %q %v", res, q, im, err)
	}
	l.Decorators["resources"] = graph.Decorator{Name: "resources", Args: map[string]string{"cpu": "1.5", "memory": "60000"}}
	l.Decorators["batch"] = graph.Decorator{Name: "batch", Args: map[string]string{"cpu": "4", "memory": "1000", "gpu": "1", "queue": "gpu-q", "image": "x:1"}}
	res, q, im, err = e.shape(l)
	if err != nil || res != (Resources{VCPUs: 4, MemoryMB: 60000, GPUs: 1}) || q != "gpu-q" || im != "x:1" {
		t.Errorf("decorated: %v %q %q %v", res, q, im, err)
	}
}

func TestEngineBinaryCheck(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the default engine binary is checked on linux/amd64 only")
	}
	if _, err := EngineBinary(""); err != nil {
		t.Errorf("this (go test) binary: %v", err)
	}
	p := t.TempDir() + "/not-elf"
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := EngineBinary(p); err == nil {
		t.Error("a shell script was accepted as the engine binary")
	}
}
