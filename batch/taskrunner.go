package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
	"github.com/metaflow-r/metaflow/shim"
)

// sigtermUploadTime is what the final uploads get after SIGTERM, of the
// 30 s Batch waits before SIGKILL (R is stopped first, within a few seconds).
const sigtermUploadTime = 20 * time.Second

// liveUploadTimeout bounds one upload of a running task's log.
const liveUploadTimeout = 2 * time.Minute

// placePackage downloads each file of a code package (relative path -> S3
// key) to its path under dir, creating folders. The paths are checked again
// here: none may leave dir.
func placePackage(pkg map[string]string, dir string, get func(key, dst string) error) error {
	if len(pkg) == 0 {
		return nil
	}
	files := make([]scheduler.PackageFile, 0, len(pkg))
	for p := range pkg {
		files = append(files, scheduler.PackageFile{Path: p})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	if err := scheduler.ValidatePackage(files); err != nil {
		return err
	}
	errs := make([]error, len(files))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := get(pkg[f.Path], filepath.Join(dir, filepath.FromSlash(f.Path))); err != nil {
				errs[i] = fmt.Errorf("download code package file %s: %w", f.Path, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// RunTask is `metaflow-engine task-runner --spec s3://...`, run inside a
// Batch job: it downloads the code bundle and inputs the spec names, runs
// the base-R task runtime (embedded in this binary) on them with Rscript
// (uploading its stdout.log and stderr.log every METAFLOW_BATCH_LOG_INTERVAL
// seconds while it runs, when they grew, for the executor to follow),
// uploads the staged artifacts (content addressed), the result, the error
// message and the logs under the task's S3 prefix, and finally the exit
// record. It returns the task's exit code. Credentials and endpoint come
// from the SDK's default chain (the job role on AWS).
func RunTask(ctx context.Context, specURL string) (int, error) {
	bucket, key, err := s3io.ParseURL(specURL)
	if err != nil {
		return 1, fmt.Errorf("--spec: %w", err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return 1, fmt.Errorf("load AWS configuration: %w", err)
	}
	s3 := s3io.New(awsCfg)
	b, err := s3.GetBytes(ctx, bucket, key)
	if err != nil {
		return 1, fmt.Errorf("read task spec: %w", err)
	}
	var rs remoteSpec
	if err := msgpack.Unmarshal(b, &rs); err != nil {
		return 1, fmt.Errorf("decode task spec: %w", err)
	}
	work, err := os.MkdirTemp("", "metaflow-task-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(work)
	spec := rs.Task
	dataDir := filepath.Join(work, "data")
	// Download every object once, in parallel.
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		seen = map[string]string{}
		sem  = make(chan struct{}, 8)
	)
	fetch := func(k string) string {
		mu.Lock()
		defer mu.Unlock()
		if p, ok := seen[k]; ok {
			return p
		}
		p := filepath.Join(dataDir, strings.ReplaceAll(k, "/", "_"))
		seen[k] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s3.GetFile(ctx, rs.Bucket, k, p); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
		return p
	}
	spec.Code = fetch(spec.Code)
	for i := range spec.Inputs {
		for name, a := range spec.Inputs[i].Artifacts {
			a.Path = fetch(a.Path)
			spec.Inputs[i].Artifacts[name] = a
		}
	}
	if spec.Input != nil {
		spec.Input.Path = fetch(spec.Input.Path)
	}
	wg.Wait()
	if len(errs) > 0 {
		return 1, fmt.Errorf("download task inputs: %w", errs[0])
	}
	spec.OutputDir = filepath.Join(work, "out")
	cwd := filepath.Join(work, "cwd")
	rt := filepath.Join(work, "runtime")
	for _, d := range []string{spec.OutputDir, cwd} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 1, err
		}
	}
	// The code package, at the paths the flow's folder has them, so that
	// read.csv("./movies.csv") in a step works here as it does locally.
	err = placePackage(rs.Package, cwd, func(key, dst string) error { return s3.GetFile(ctx, rs.Bucket, key, dst) })
	if err != nil {
		return 1, err
	}
	if err := shim.WriteRuntime(rt); err != nil {
		return 1, err
	}
	logs := map[string]string{"stdout": filepath.Join(work, "stdout.log"), "stderr": filepath.Join(work, "stderr.log")}
	local := &shim.Local{RuntimeDir: rt, KillGrace: 5 * time.Second}
	// While the task runs its logs go up every interval (when they grew),
	// for the executor to follow; the final upload below completes them.
	every, err := parseLogInterval(os.Getenv(logIntervalEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "metaflow task-runner:", err, "- using", DefaultLogInterval)
		every = DefaultLogInterval
	}
	stopLogs := uploadLogs(ctx, map[string]string{"stdout.log": logs["stdout"], "stderr.log": logs["stderr"]}, work, every,
		func(ctx context.Context, name, p string) error {
			// A stalled upload must not hold up the task's end (stop waits for it).
			ctx, cancel := context.WithTimeout(ctx, liveUploadTimeout)
			defer cancel()
			return s3.PutFile(ctx, rs.Bucket, rs.TaskPrefix+"/"+name, p)
		})
	var outMu sync.Mutex
	code, runErr := local.Run(ctx, &scheduler.Launch{
		Spec: &spec, Rscript: "Rscript", Workdir: cwd,
		StdoutPath: logs["stdout"], StderrPath: logs["stderr"],
		// The job's own output (CloudWatch Logs) gets the task's lines too.
		Line: func(stderr bool, text string) {
			outMu.Lock()
			defer outMu.Unlock()
			if stderr {
				fmt.Fprintln(os.Stderr, text)
			} else {
				fmt.Fprintln(os.Stdout, text)
			}
		},
	})
	stopLogs()
	// The uploads from here on have a context of their own: after SIGTERM
	// (Batch's own timeout, or the engine terminating the job), whether it
	// came before or comes during them, Batch waits 30 s before SIGKILL, and
	// they get 20 s of it to put up the logs, the error and the exit record.
	fctx, fcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer fcancel()
	stopDeadline := context.AfterFunc(ctx, func() { time.AfterFunc(sigtermUploadTime, fcancel) })
	defer stopDeadline()
	if runErr != nil {
		// Could not run or was killed: say so where the engine looks.
		_ = os.WriteFile(filepath.Join(spec.OutputDir, "_error.txt"), []byte(runErr.Error()+"\n"), 0o644)
		fmt.Fprintln(os.Stderr, "metaflow task-runner:", runErr)
		if code == 0 {
			code = 1
		}
		if code < 0 {
			code = 137
		}
	}
	up := func(name, local string) error {
		if _, err := os.Stat(local); err != nil {
			return nil
		}
		return s3.PutFile(fctx, rs.Bucket, rs.TaskPrefix+"/"+name, local)
	}
	// The logs in full, also when the periodic uploads had all of them.
	for _, s := range []string{"stdout", "stderr"} {
		if err := up(s+".log", logs[s]); err != nil {
			return 1, err
		}
	}
	if code == 0 {
		outputs := map[string]string{}
		ents, err := os.ReadDir(spec.OutputDir)
		if err != nil {
			return 1, err
		}
		var names []string
		for _, e := range ents {
			n := e.Name()
			if !strings.HasSuffix(n, ".mpk") || strings.HasPrefix(n, "_") {
				continue
			}
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p := filepath.Join(spec.OutputDir, n)
			sha, err := s3io.FileSHA(p)
			if err != nil {
				return 1, err
			}
			k := dataKey(rs.FlowPrefix, sha)
			if err := s3.PutFileIfMissing(fctx, rs.Bucket, k, p); err != nil {
				return 1, err
			}
			outputs[strings.TrimSuffix(n, ".mpk")] = sha
		}
		ob, _ := json.Marshal(outputs)
		if err := s3.PutBytes(fctx, rs.Bucket, rs.TaskPrefix+"/_outputs.json", ob); err != nil {
			return 1, err
		}
		if err := up("_result.mpk", filepath.Join(spec.OutputDir, "_result.mpk")); err != nil {
			return 1, err
		}
	} else if err := up("_error.txt", filepath.Join(spec.OutputDir, "_error.txt")); err != nil {
		return 1, err
	}
	eb, _ := json.Marshal(exitRecord{ExitCode: code})
	if err := s3.PutBytes(fctx, rs.Bucket, rs.TaskPrefix+"/_exit.json", eb); err != nil {
		return 1, err
	}
	return code, nil
}
