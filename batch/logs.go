package batch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
	"github.com/metaflow-r/metaflow/shim"
)

// ErrNoLogs: the job has no log stream (yet). Batch creates it when the
// container starts; moto only when the container has exited.
var ErrNoLogs = errors.New("no log stream for the job")

// LogTail returns the last n lines (oldest first) of a job's log stream
// (JobStatus.LogStream) in the client's log group.
func (c *Client) LogTail(ctx context.Context, logStream string, n int) ([]string, error) {
	if logStream == "" {
		return nil, ErrNoLogs
	}
	if n <= 0 {
		return nil, nil
	}
	var (
		lines []string
		token *string
	)
	// Pages go backwards from the end; each is oldest first. The page bound
	// guards against a service that keeps handing out new tokens.
	for page := 0; len(lines) < n && page < 50; page++ {
		out, err := c.logs.GetLogEvents(ctx, &cloudwatchlogs.GetLogEventsInput{
			LogGroupName:  aws.String(c.opts.LogGroup),
			LogStreamName: aws.String(logStream),
			StartFromHead: aws.Bool(false),
			Limit:         aws.Int32(int32(min(n-len(lines), 10000))),
			NextToken:     token,
		})
		if err != nil {
			var nf *types.ResourceNotFoundException
			if errors.As(err, &nf) {
				return nil, fmt.Errorf("log stream %s in %s: %w", logStream, c.opts.LogGroup, ErrNoLogs)
			}
			return nil, fmt.Errorf("read log stream %s in %s: %w", logStream, c.opts.LogGroup, err)
		}
		got := make([]string, 0, len(out.Events))
		for _, e := range out.Events {
			got = append(got, aws.ToString(e.Message))
		}
		lines = append(got, lines...)
		// The same token back means the start of the stream was reached;
		// an empty page alone does not (CloudWatch may return those).
		if out.NextBackwardToken == nil || (token != nil && *out.NextBackwardToken == *token) {
			break
		}
		token = out.NextBackwardToken
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// JobLog returns the last n lines of a job's CloudWatch log stream, found
// through DescribeJobs (Batch forgets finished jobs after a while).
func (c *Client) JobLog(ctx context.Context, id string, n int) ([]string, error) {
	st, err := c.Describe(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	s, ok := st[id]
	if !ok {
		return nil, fmt.Errorf("job %s is not known to Batch (it keeps finished jobs for a limited time): %w", id, ErrNoLogs)
	}
	return c.LogTail(ctx, s.LogStream, n)
}

// Live logs. The task runner in the container uploads the task's logs to
// its job's folder (datastore.JobDir, JobLogName) every LogInterval while the task
// runs (only when they grew) and once more at the end. While the job is
// RUNNING the executor fetches what is new of each, at most one GET per
// stream per interval, appends it to the task's local log files (which
// `logs RUN/STEP` reads) and prints the new complete lines; when the job is
// done it fetches the rest once more and prints what was not printed yet, so
// no line is printed twice.

// DefaultLogInterval is how often a running task's logs travel: the task
// runner's uploads and the executor's fetches (METAFLOW_BATCH_LOG_INTERVAL).
const DefaultLogInterval = 5 * time.Second

// logIntervalEnv names the variable, in the engine's settings and in the
// job's environment, that sets the interval in seconds (e.g. "5" or "0.5").
const logIntervalEnv = "METAFLOW_BATCH_LOG_INTERVAL"

// parseLogInterval reads METAFLOW_BATCH_LOG_INTERVAL; empty means the default.
func parseLogInterval(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultLogInterval, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0.1 || f > 3600 {
		return 0, fmt.Errorf("%s must be a number of seconds between 0.1 and 3600, got %q", logIntervalEnv, s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

// formatLogInterval is the job's METAFLOW_BATCH_LOG_INTERVAL for d.
func formatLogInterval(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// uploadLogs puts each log file (name -> local path) with put every
// interval while the task runs, when it has grown since its last upload:
// a snapshot of what the file holds then (the files only grow), so each
// upload is a consistent prefix of the final log. stop ends the uploads and
// returns once none is in flight, so the final upload cannot be overtaken
// by an older snapshot.
func uploadLogs(ctx context.Context, files map[string]string, snapDir string, every time.Duration,
	put func(ctx context.Context, name, path string) error) (stop func()) {
	// stop ends the loop between uploads; an upload under way finishes (a
	// cancelled multipart upload could not even be aborted), unless the
	// runner's own ctx is cancelled.
	loop, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	go func() {
		defer close(done)
		sent := map[string]int64{}
		warned := false
		t := time.NewTicker(every)
		defer t.Stop()
		var next time.Time // each upload re-sends a whole log: at most a tenth of the time
		for {
			select {
			case <-loop.Done():
				return
			case <-t.C:
			}
			if time.Now().Before(next) {
				continue
			}
			began := time.Now()
			for _, n := range names {
				size, err := snapshot(files[n], filepath.Join(snapDir, n+".part"), sent[n])
				if err != nil || size < 0 {
					continue // unchanged (or not there yet)
				}
				if err := put(ctx, n, filepath.Join(snapDir, n+".part")); err != nil {
					if ctx.Err() == nil && !warned {
						// Into the job's own output (CloudWatch), once.
						fmt.Fprintf(os.Stderr, "metaflow task-runner: cannot upload %s while the task runs (will retry): %v\n", n, err)
						warned = true
					}
					continue
				}
				sent[n] = size
			}
			next = time.Now().Add(9 * time.Since(began))
		}
	}()
	return func() { cancel(); <-done }
}

// snapshot copies the first size bytes of src to dst when src holds more
// than had bytes, and returns size; -1 when it has not grown.
func snapshot(src, dst string, had int64) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return -1, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return -1, err
	}
	size := fi.Size()
	if size <= had {
		return -1, nil
	}
	out, err := os.Create(dst)
	if err != nil {
		return -1, err
	}
	if _, err := io.CopyN(out, in, size); err != nil {
		out.Close()
		return -1, err
	}
	if err := out.Close(); err != nil {
		return -1, err
	}
	return size, nil
}

// logFollower copies one task attempt's logs from S3 into its local log
// files and prints their lines, each once.
type logFollower struct {
	get     func(ctx context.Context, key string, off int64) ([]byte, error)
	line    func(stderr bool, text string)
	streams []*logStream
	gets    *atomic.Int64 // GETs sent, for tests and benchmarks (may be nil)
	where   string        // the s3:// folder of the job's copies, for messages
}

type logStream struct {
	key, local string
	stderr     bool
	found      bool   // the object exists in S3
	size       int64  // bytes written to the local file
	pending    []byte // an incomplete last line, not printed yet
	// dropped counts the bytes of a long pending line kept out of memory:
	// the console gets its first shim.MaxConsoleLine bytes and its length.
	dropped int
}

func newLogFollower(get func(ctx context.Context, key string, off int64) ([]byte, error), taskPrefix string,
	l *scheduler.Launch) *logFollower {
	return &logFollower{get: get, line: l.Line, streams: []*logStream{
		{key: datastore.JobFile(taskPrefix, datastore.JobLogName(datastore.Stdout)), local: l.StdoutPath},
		{key: datastore.JobFile(taskPrefix, datastore.JobLogName(datastore.Stderr)), local: l.StderrPath, stderr: true},
	}}
}

// fetch gets what is new of each stream (one GET each), appends it to the
// local file and prints the new complete lines. Errors other than a missing
// object are returned after both streams were tried; the next fetch tries
// again from where this one stopped.
func (f *logFollower) fetch(ctx context.Context) error {
	var first error
	for _, s := range f.streams {
		if f.gets != nil {
			f.gets.Add(1)
		}
		b, err := f.get(ctx, s.key, s.size)
		switch {
		case errors.Is(err, s3io.ErrNotFound):
			continue
		case errors.Is(err, s3io.ErrNoNewBytes):
			s.found = true
			continue
		case err != nil:
			if first == nil {
				first = err
			}
			continue
		}
		if err := s.append(b); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		f.print(s, b)
	}
	return first
}

// append adds b to the local log file (created, empty, on the first fetch
// that finds the object).
func (s *logStream) append(b []byte) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if !s.found {
		flag |= os.O_TRUNC
		if err := os.MkdirAll(filepath.Dir(s.local), 0o755); err != nil {
			return err
		}
	}
	fh, err := os.OpenFile(s.local, flag, 0o644)
	if err != nil {
		return err
	}
	_, werr := fh.Write(b)
	cerr := fh.Close()
	if werr != nil {
		return werr
	}
	if cerr != nil {
		return cerr
	}
	s.found = true
	s.size += int64(len(b))
	return nil
}

// print prints the complete lines that b finishes and keeps the rest; a
// line longer than shim.MaxConsoleLine is cut on the console (the log file
// keeps every byte) and never held in memory whole.
func (f *logFollower) print(s *logStream, b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.hold(b)
			return
		}
		s.hold(b[:i])
		if f.line != nil {
			ln := string(s.pending)
			if s.dropped > 0 {
				ln = shim.CutLine(ln, len(s.pending)+s.dropped)
			}
			f.line(s.stderr, ln)
		}
		s.pending, s.dropped = s.pending[:0], 0
		b = b[i+1:]
	}
}

// hold adds part of a line to the pending one, up to shim.MaxConsoleLine.
func (s *logStream) hold(b []byte) {
	room := shim.MaxConsoleLine - len(s.pending)
	if room < 0 {
		room = 0
	}
	if len(b) > room {
		s.dropped += len(b) - room
		b = b[:room]
	}
	s.pending = append(s.pending, b...)
}

// finishRetryWait is the first wait before the last fetch is tried again
// (then twice and four times as long).
var finishRetryWait = time.Second

// finish fetches the rest of the logs (the task runner's final upload) and
// prints every line not printed yet, the last one even without a newline.
// It reports whether the task runner left any log in S3.
func (f *logFollower) finish(ctx context.Context) bool {
	err := f.fetch(ctx)
	for wait := finishRetryWait; err != nil && wait <= 4*finishRetryWait && ctx.Err() == nil; wait *= 2 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		err = f.fetch(ctx)
	}
	if err != nil && f.line != nil {
		f.line(true, fmt.Sprintf("Warning: the end of the task's logs could not be fetched (%v); the job's own copies are in %s", err, f.where))
	}
	found := false
	for _, s := range f.streams {
		found = found || s.found
		if len(s.pending) > 0 && f.line != nil {
			ln := string(s.pending)
			if s.dropped > 0 {
				ln = shim.CutLine(ln, len(s.pending)+s.dropped)
			}
			f.line(s.stderr, ln)
		}
		s.pending, s.dropped = nil, 0
	}
	return found
}
