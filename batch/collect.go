package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// exitRecord is the task runner's last upload: the task's exit code.
type exitRecord struct {
	ExitCode int `json:"exit_code"`
}

// failure says why a finished job failed, as far as Batch and the task
// runner's exit record tell: status reason, container reason, exit code.
func failure(st JobStatus, exit *int) string {
	var parts []string
	if st.StatusReason != "" {
		parts = append(parts, st.StatusReason)
	}
	if st.Reason != "" && st.Reason != st.StatusReason {
		parts = append(parts, st.Reason)
	}
	if exit == nil {
		exit = st.ExitCode
	}
	if exit != nil {
		parts = append(parts, fmt.Sprintf("exit code %d", *exit))
	}
	if len(parts) == 0 {
		return "Batch gave no reason"
	}
	return strings.Join(parts, "; ")
}

// followLogs follows the logs the task runner uploads to the job's folder.
func (e *Executor) followLogs(jobDir string, l *scheduler.Launch) *logFollower {
	f := newLogFollower(func(ctx context.Context, key string, off int64) ([]byte, error) {
		return e.s3.GetFrom(ctx, e.bucket, key, off)
	}, jobDir, l)
	f.gets = &e.logGets
	f.where = "s3://" + e.bucket + "/" + jobDir
	return f
}

// collect puts a finished job's logs and result where a local task leaves
// them, its outputs in the datastore of record (named with Launch.Stored),
// and returns the task's exit code.
func (e *Executor) collect(ctx context.Context, l *scheduler.Launch, logs *logFollower, jobDir string, st JobStatus) (int, error) {
	var rec exitRecord
	b, err := e.s3.GetBytes(ctx, e.bucket, datastore.JobFile(jobDir, datastore.JobExit))
	haveExit := err == nil
	if err != nil && !errors.Is(err, s3io.ErrNotFound) {
		return -1, err
	}
	if haveExit {
		if err := json.Unmarshal(b, &rec); err != nil {
			return -1, fmt.Errorf("job %s: bad exit record: %v", st.ID, err)
		}
	}
	// Logs: the rest of the task runner's copies (what the live fetches did
	// not get and print yet), else CloudWatch.
	gotLogs := logs.finish(ctx)
	if !gotLogs && st.LogStream == "" && parentOf(st.ID) != st.ID {
		// An array child's status came from ListJobs, which has no log
		// stream: its own description has.
		if d, err := e.c.Describe(ctx, []string{st.ID}); err == nil {
			st.LogStream = d[st.ID].LogStream
		}
	}
	if !gotLogs {
		lines, err := e.c.LogTail(ctx, st.LogStream, 200)
		if err == nil && len(lines) > 0 {
			_ = os.MkdirAll(filepath.Dir(l.StderrPath), 0o755)
			_ = os.WriteFile(l.StderrPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
			for _, line := range lines {
				if l.Line != nil {
					l.Line(true, line)
				}
			}
		}
	}
	if !haveExit {
		why := failure(st, nil)
		if st.StatusReason == "" && st.Reason == "" {
			why = "the container did not run the task (see the log lines above); " + why
		}
		return -1, fmt.Errorf("Batch job %s %s: %s", st.ID, strings.ToLower(string(st.Status)), why)
	}
	out := l.Spec.OutputDir
	if rec.ExitCode != 0 {
		if l.Line != nil {
			l.Line(true, fmt.Sprintf("Batch job %s failed: %s.", st.ID, failure(st, &rec.ExitCode)))
		}
		_ = e.s3.GetFile(ctx, e.bucket, datastore.JobFile(jobDir, datastore.JobError), filepath.Join(out, scheduler.ErrorFile))
		return rec.ExitCode, nil
	}
	if err := e.s3.GetFile(ctx, e.bucket, datastore.JobFile(jobDir, datastore.JobResult), filepath.Join(out, scheduler.ResultFile)); err != nil {
		return -1, fmt.Errorf("job %s: task result: %w", st.ID, err)
	}
	ob, err := e.s3.GetBytes(ctx, e.bucket, datastore.JobFile(jobDir, datastore.JobOutputs))
	if err != nil {
		return -1, fmt.Errorf("job %s: list of artifacts: %w", st.ID, err)
	}
	var outputs map[string]string
	if err := json.Unmarshal(ob, &outputs); err != nil {
		return -1, fmt.Errorf("job %s: list of artifacts: %v", st.ID, err)
	}
	if l.Blobs == nil || l.Stored == nil {
		return -1, fmt.Errorf("job %s: the launch has no datastore to put the task's outputs in", st.ID)
	}
	if !e.isStore(l.Datastore) {
		// The datastore of record is elsewhere: each output comes down
		// once, checked against its sha as it is read.
		names := make([]string, 0, len(outputs))
		for name := range outputs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if _, err := datastore.CopyBlob(ctx, l.Blobs, e.blobs, l.Spec.Flow, outputs[name]); err != nil {
				return -1, fmt.Errorf("job %s: artifact %s: %w", st.ID, name, err)
			}
		}
	}
	l.Stored(outputs)
	return 0, nil
}

// isStore reports whether url (Launch.Datastore) is the S3 root this
// executor keeps blobs under, in the datastore's own layout.
func (e *Executor) isStore(url string) bool {
	bucket, prefix, err := s3io.ParseURL(url)
	return err == nil && bucket == e.bucket && prefix == e.prefix
}
