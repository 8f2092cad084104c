// Package mototest starts moto_server (the AWS emulator) for tests: on a free
// loopback port, in its own process group, with job containers on the host
// network so they reach it on 127.0.0.1.
package mototest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
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
