package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
	"github.com/metaflow-r/metaflow/shim"
)

func TestParseLogInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{"": DefaultLogInterval, "5": 5 * time.Second, " 0.5 ": 500 * time.Millisecond, "60": time.Minute} {
		got, err := parseLogInterval(in)
		if err != nil || got != want {
			t.Errorf("parseLogInterval(%q) = %v, %v; want %v", in, got, err, want)
		}
		if in != "" {
			if back, _ := parseLogInterval(formatLogInterval(got)); back != got {
				t.Errorf("format(%v) = %q reads back as %v", got, formatLogInterval(got), back)
			}
		}
	}
	for _, in := range []string{"0", "-1", "0.01", "x", "NaN", "1e9"} {
		if _, err := parseLogInterval(in); err == nil || !strings.Contains(err.Error(), logIntervalEnv) {
			t.Errorf("parseLogInterval(%q): %v, want an error naming %s", in, err, logIntervalEnv)
		}
	}
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "q")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://b/p")
	t.Setenv(logIntervalEnv, "2")
	if c, err := ConfigFromEnv(); err != nil || c.LogInterval != 2*time.Second {
		t.Errorf("config: %v, %v", c.LogInterval, err)
	}
	t.Setenv(logIntervalEnv, "soon")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), logIntervalEnv) {
		t.Errorf("bad interval: %v", err)
	}
}

// fakeObjects is an S3 prefix in memory whose objects only grow, as the task
// runner's log uploads do; it answers ranged reads as S3 does.
type fakeObjects struct {
	mu   sync.Mutex
	objs map[string][]byte
	gets int
}

func (o *fakeObjects) put(key, s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.objs[key] = append([]byte(nil), s...)
}

func (o *fakeObjects) from(_ context.Context, key string, off int64) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gets++
	b, ok := o.objs[key]
	switch {
	case !ok:
		return nil, fmt.Errorf("%s: %w", key, s3io.ErrNotFound)
	case off > 0 && int64(len(b)) <= off:
		return nil, s3io.ErrNoNewBytes
	}
	return append([]byte(nil), b[off:]...), nil
}

func TestLogFollowerPrintsEachLineOnce(t *testing.T) {
	dir := t.TempDir()
	var got []string
	l := &scheduler.Launch{
		StdoutPath: filepath.Join(dir, "logs", "0.stdout"), StderrPath: filepath.Join(dir, "logs", "0.stderr"),
		Line: func(stderr bool, text string) { got = append(got, fmt.Sprintf("%v:%s", stderr, text)) },
	}
	o := &fakeObjects{objs: map[string][]byte{}}
	f := newLogFollower(o.from, "p/1", l)
	ctx := context.Background()
	step := func(want ...string) {
		t.Helper()
		got = nil
		if err := f.fetch(ctx); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("printed %q, want %q", got, want)
		}
	}
	// Nothing uploaded yet: no local file, nothing printed.
	step()
	if _, err := os.Stat(l.StdoutPath); !os.IsNotExist(err) {
		t.Errorf("stdout log exists before any upload: %v", err)
	}
	o.put("p/1/stdout.log", "one\ntw")
	step("false:one")
	o.put("p/1/stdout.log", "one\ntwo\nthree\n")
	o.put("p/1/stderr.log", "warn\n")
	step("false:two", "false:three", "true:warn")
	step() // unchanged
	if b, _ := os.ReadFile(l.StdoutPath); string(b) != "one\ntwo\nthree\n" {
		t.Errorf("local stdout while running: %q", b)
	}
	// The final upload adds a line without a newline; finish prints it.
	o.put("p/1/stdout.log", "one\ntwo\nthree\n\nlast")
	got = nil
	if !f.finish(ctx) {
		t.Error("finish: no logs found")
	}
	if strings.Join(got, "|") != "false:|false:last" {
		t.Errorf("finish printed %q", got)
	}
	for p, want := range map[string]string{l.StdoutPath: "one\ntwo\nthree\n\nlast", l.StderrPath: "warn\n"} {
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Errorf("%s: %q, want %q", p, b, want)
		}
	}
	// Two GETs per fetch (one per stream), whatever changed.
	if o.gets != 10 {
		t.Errorf("%d GETs for 5 fetches", o.gets)
	}
}

func TestLogFollowerEmptyAndMissingLogs(t *testing.T) {
	dir := t.TempDir()
	l := &scheduler.Launch{StdoutPath: filepath.Join(dir, "0.stdout"), StderrPath: filepath.Join(dir, "0.stderr")}
	o := &fakeObjects{objs: map[string][]byte{}}
	if newLogFollower(o.from, "p", l).finish(context.Background()) {
		t.Error("no uploads, but finish found logs")
	}
	o.put("p/stdout.log", "")
	if !newLogFollower(o.from, "p", l).finish(context.Background()) {
		t.Error("an empty stdout.log was not found")
	}
	if b, err := os.ReadFile(l.StdoutPath); err != nil || len(b) != 0 {
		t.Errorf("empty stdout log: %q, %v", b, err)
	}
	// A failed GET is reported, and the next fetch starts where it stopped.
	fail := true
	get := func(ctx context.Context, key string, off int64) ([]byte, error) {
		if fail {
			return nil, errors.New("connection reset")
		}
		return o.from(ctx, key, off)
	}
	o.put("p/stderr.log", "a\nb\n")
	var lines []string
	l.Line = func(_ bool, s string) { lines = append(lines, s) }
	f := newLogFollower(get, "p", l)
	if err := f.fetch(context.Background()); err == nil {
		t.Error("a failed GET was not reported")
	}
	fail = false
	f.finish(context.Background())
	if strings.Join(lines, ",") != "a,b" {
		t.Errorf("lines %q", lines)
	}
}

func TestUploadLogs(t *testing.T) {
	dir := t.TempDir()
	snaps := filepath.Join(dir, "snaps")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	out, errp := filepath.Join(dir, "stdout.log"), filepath.Join(dir, "stderr.log")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var puts []string
	put := func(_ context.Context, name, p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mu.Lock()
		puts = append(puts, name+"="+string(b))
		mu.Unlock()
		return nil
	}
	putsNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), puts...)
	}
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(putsNow()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d uploads after 5 s, want %d: %q", len(putsNow()), n, putsNow())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	stop := uploadLogs(context.Background(), map[string]string{"stdout.log": out, "stderr.log": errp}, snaps, 20*time.Millisecond, put)
	time.Sleep(100 * time.Millisecond) // empty and absent files: nothing to upload
	if p := putsNow(); len(p) != 0 {
		t.Errorf("uploads of empty logs: %q", p)
	}
	appendTo := func(p, s string) {
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString(s)
		fh.Close()
	}
	appendTo(out, "one\n")
	waitFor(1)
	appendTo(out, "two\n")
	appendTo(errp, "warn\n")
	waitFor(3)
	time.Sleep(100 * time.Millisecond) // unchanged: no more uploads
	stop()
	got := putsNow()
	want := []string{"stdout.log=one\n", "stderr.log=warn\n", "stdout.log=one\ntwo\n"}
	if len(got) != 3 || got[0] != want[0] || !(got[1] == want[1] && got[2] == want[2] || got[1] == want[2] && got[2] == want[1]) {
		t.Errorf("uploads %q, want %q", got, want)
	}
	// After stop nothing more goes up.
	appendTo(out, "three\n")
	time.Sleep(100 * time.Millisecond)
	if n := len(putsNow()); n != 3 {
		t.Errorf("%d uploads after stop", n-3)
	}
}

// finish tries the last fetch again after a failure, and says so when the
// end of the logs could not be had.
func TestLogFollowerFinishRetriesThenWarns(t *testing.T) {
	defer func(w time.Duration) { finishRetryWait = w }(finishRetryWait)
	finishRetryWait = 10 * time.Millisecond
	for _, tc := range []struct {
		name     string
		failures int
		want     []string
	}{
		{"one failure", 1, []string{"false:last words"}},
		{"always failing", 100, []string{"true:Warning: the end of the task's logs could not be fetched (S3 is down); the job's own copies are in s3://b/p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var got []string
			l := &scheduler.Launch{
				StdoutPath: filepath.Join(dir, "0.stdout"), StderrPath: filepath.Join(dir, "0.stderr"),
				Line: func(stderr bool, text string) { got = append(got, fmt.Sprintf("%v:%s", stderr, text)) },
			}
			objs := &fakeObjects{objs: map[string][]byte{}}
			objs.put("p/stdout.log", "last words\n")
			left := tc.failures
			f := newLogFollower(func(ctx context.Context, key string, off int64) ([]byte, error) {
				if left > 0 {
					left--
					return nil, errors.New("S3 is down")
				}
				return objs.from(ctx, key, off)
			}, "p", l)
			f.where = "s3://b/p"
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			f.finish(ctx)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("lines %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLogFollowerCutsLongLines(t *testing.T) {
	dir := t.TempDir()
	var got []string
	l := &scheduler.Launch{
		StdoutPath: filepath.Join(dir, "0.stdout"), StderrPath: filepath.Join(dir, "0.stderr"),
		Line: func(stderr bool, text string) { got = append(got, text) },
	}
	o := &fakeObjects{objs: map[string][]byte{}}
	f := newLogFollower(o.from, "p", l)
	ctx := context.Background()
	long := strings.Repeat("x", 2*shim.MaxConsoleLine+7)
	// The long line arrives in three uploads, then a short one; then a
	// long last line without a newline.
	content := "a\n"
	for _, part := range []string{long[:100], long[100 : shim.MaxConsoleLine+50], long[shim.MaxConsoleLine+50:] + "\nb\n"} {
		content += part
		o.put("p/stdout.log", content)
		if err := f.fetch(ctx); err != nil {
			t.Fatal(err)
		}
	}
	o.put("p/stdout.log", content+long)
	f.finish(ctx)
	cut := shim.CutLine(long[:shim.MaxConsoleLine], len(long))
	want := []string{"a", cut, "b", cut}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d: %.60q... (%d bytes), want %.60q... (%d bytes)", i, got[i], len(got[i]), want[i], len(want[i]))
		}
	}
	if b, _ := os.ReadFile(l.StdoutPath); string(b) != content+long {
		t.Fatalf("the log file has %d bytes, want all %d", len(b), len(content+long))
	}
}
