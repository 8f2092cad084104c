// Package mototest starts moto_server (the AWS emulator) for tests: on a free
// loopback port, in its own process group, with job containers on the host
// network so they reach it on 127.0.0.1.
package mototest

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Start runs moto_server on a free loopback port in its own process
// group and waits until it answers.
func Start(path, logPath string) (url string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	logf, err := os.Create(logPath)
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(path, "-H", "127.0.0.1", "-p", port)
	// MOTO_PORT: the port moto tells jobs about (moto_server -p does not).
	cmd.Env = append(os.Environ(), "MOTO_DOCKER_NETWORK_MODE=host", "MOTO_PORT="+port)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", nil, err
	}
	stop = func() {
		// Only the group we started.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	}
	url = "http://127.0.0.1:" + port
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/moto-api/data.json")
		if err == nil {
			resp.Body.Close()
			return url, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	log, _ := os.ReadFile(logPath)
	return "", nil, fmt.Errorf("no answer on %s after 20s; log:\n%s", url, log)
}

// Isolate cuts a test process off the developer's AWS and Metaflow
// settings: no AWS_* or METAFLOW_* variables, an empty METAFLOW_HOME (no
// ~/.metaflowconfig), no AWS profile files and no instance metadata (a
// non-loopback address), so nothing can reach a real account.
func Isolate() (cleanup func(), err error) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "METAFLOW_") {
			os.Unsetenv(k)
		}
	}
	home, err := os.MkdirTemp("", "metaflow-home-")
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]string{
		"METAFLOW_HOME":               home,
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		os.Setenv(k, v)
	}
	return func() { os.RemoveAll(home) }, nil
}

// SetSDKEnv points aws-sdk-go-v2's default chain at the emulator, as in
// production but with the emulator's endpoint, dummy credentials and a
// region (call Isolate first).
func SetSDKEnv(url string) {
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL":      url,
		"AWS_ACCESS_KEY_ID":     "testing",
		"AWS_SECRET_ACCESS_KEY": "testing",
		"AWS_REGION":            "us-east-1",
	} {
		os.Setenv(k, v)
	}
}

// Main runs a package's tests, isolated, against one moto_server it starts
// and stops, with SetSDKEnv pointing at it. Without moto_server, or with -short, the
// tests run with *skip saying why (tests needing moto skip themselves).
func Main(m *testing.M, skip *string) int {
	flag.Parse()
	cleanup, err := Isolate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "isolate the tests:", err)
		return 1
	}
	defer cleanup()
	if testing.Short() {
		*skip = "-short: not starting moto_server"
		return m.Run()
	}
	path, err := exec.LookPath("moto_server")
	if err != nil {
		*skip = "moto_server is not installed (pip install 'moto[server]')"
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "metaflow-moto-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "moto: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	url, stop, err := Start(path, filepath.Join(dir, "moto.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "moto:", err)
		return 1
	}
	defer stop()
	SetSDKEnv(url)
	return m.Run()
}
