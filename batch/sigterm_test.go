//go:build linux

package batch

// How a job ends when Batch stops it: the job's command delivers SIGTERM to
// the task runner, which uploads what the task printed before it exits
// (helpers in executor_test.go).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// After SIGTERM (Batch's timeout or TerminateJob on AWS; moto sends
// SIGKILL, so this runs the task runner in-process) the runner still
// uploads the logs and the exit record, with a context of its own.
func TestEmuTaskRunnerUploadsAfterSIGTERM(t *testing.T) {
	if emu.skip != "" {
		t.Skip(emu.skip)
	}
	if _, err := exec.LookPath("Rscript"); err != nil {
		t.Skip("Rscript is not installed")
	}
	ctx := context.Background()
	s3c, err := s3io.FromEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bucket := "mf-runner-sigterm"
	createBucket(t, s3c, bucket)
	code := codeBundle(t, `start = function(self) { cat("before the signal\n"); file.create(Sys.getenv("MF_TEST_MARKER")); Sys.sleep(60) }`)
	marker := filepath.Join(t.TempDir(), "printed")
	t.Setenv("MF_TEST_MARKER", marker)
	if err := s3c.PutBytes(ctx, bucket, "F/code/c", code); err != nil {
		t.Fatal(err)
	}
	prefix := "F/1/start/1/0-test"
	rs := remoteSpec{Root: "s3://" + bucket, JobDir: prefix, Task: scheduler.TaskSpec{
		Flow: "F", RunID: "1", Step: "start", TaskID: "1", Code: "F/code/c", Index: -1,
		Parameters: []string{}, Current: map[string]string{"flow_name": "F", "run_id": "1", "step_name": "start", "task_id": "1"},
	}}
	b, err := msgpack.Marshal(&rs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3c.PutBytes(ctx, bucket, prefix+"/_spec.mpk", b); err != nil {
		t.Fatal(err)
	}
	// No live upload within the test: only the final one can carry the line.
	t.Setenv(logIntervalEnv, "600")
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // the signal, once R has printed the line
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(marker); err == nil {
				break
			}
		}
		cancel()
	}()
	exit, err := RunTask(rctx, "s3://"+bucket+"/"+prefix+"/_spec.mpk")
	if err != nil {
		t.Fatalf("RunTask: %v", err)
	}
	if exit == 0 {
		t.Errorf("exit code 0 for a killed task")
	}
	out, err := s3c.GetBytes(ctx, bucket, prefix+"/stdout.log")
	if err != nil || !strings.Contains(string(out), "before the signal") {
		t.Errorf("stdout.log = %q, %v; want the line printed before the signal", out, err)
	}
	rec, err := s3c.GetBytes(ctx, bucket, prefix+"/_exit.json")
	if err != nil || !strings.Contains(string(rec), fmt.Sprintf(`"exit_code":%d`, exit)) {
		t.Errorf("_exit.json = %q, %v; want exit code %d", rec, err, exit)
	}
}

// The job's command makes the engine the container's PID 1, so Batch's
// SIGTERM reaches the task runner (Rscript as PID 1 would ignore it). Here
// the "engine" served to the bootstrap is a script that notes the signal.
func TestDockerJobCommandDeliversSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dockerImage(t)
	out := t.TempDir()
	os.Chmod(out, 0o777)
	fake := "#!/bin/sh\ntrap 'echo TERM > /out/signal; exit 143' TERM\necho $$ > /out/pid\nwhile :; do sleep 0.1; done\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, fake) }))
	defer srv.Close()
	name := fmt.Sprintf("mf-sigterm-test-%d", time.Now().UnixNano())
	args := []string{"run", "-d", "--name", name, "--network", "host", "-v", out + ":/out",
		"-e", "METAFLOW_ENGINE_URL=" + srv.URL, "-e", "METAFLOW_BOOTSTRAP=" + bootstrapR,
		"-e", "METAFLOW_TASK_SPEC=s3://unused/spec", testImage}
	if b, err := exec.Command("docker", append(args, jobCommand...)...).CombinedOutput(); err != nil {
		t.Fatalf("docker run: %v\n%s", err, b)
	}
	defer exec.Command("docker", "rm", "-f", name).Run()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(out, "pid")); err == nil && len(b) > 0 {
			if pid := strings.TrimSpace(string(b)); pid != "1" {
				t.Fatalf("the engine runs as pid %s, want 1", pid)
			}
			break
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Fatalf("the engine did not start; container output:\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	if b, err := exec.Command("docker", "stop", "-t", "20", name).CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, b)
	}
	if b, err := os.ReadFile(filepath.Join(out, "signal")); err != nil || strings.TrimSpace(string(b)) != "TERM" {
		t.Errorf("the engine did not get SIGTERM (%q, %v)", b, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("docker stop took %s: the signal waited for SIGKILL", d)
	}
}
