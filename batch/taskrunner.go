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

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/internal/s3io"
	"github.com/metaflow-r/metaflow/shim"
)

// sigtermUploadTime is what the final uploads get after SIGTERM, of the
// 30 s Batch waits before SIGKILL (R is stopped first, within a few seconds).
const sigtermUploadTime = 20 * time.Second

// liveUploadTimeout bounds one upload of a running task's log.
const liveUploadTimeout = 2 * time.Minute

// RunTask is `metaflow-engine task-runner --spec s3://...`, run inside a
// Batch job: it downloads the code bundle, and the input blobs the spec
// names from the S3 datastore at its root (checked as they come down), runs
// the base-R task runtime (embedded in this binary) on them with Rscript
// (uploading its logs to the job's folder every METAFLOW_BATCH_LOG_INTERVAL
// seconds while it runs, when they grew, for the executor to follow), puts
// the staged artifacts through the datastore's blobs (each hashed once, on
// its way into the blob store), uploads the result, the error message and
// the logs to the job's folder, and finally the exit record. It returns the
// task's exit code. Credentials and endpoint come from the SDK's default
// chain (the job role on AWS).
func RunTask(ctx context.Context, specURL string) (int, error) {
	bucket, key, err := s3io.ParseURL(specURL)
	if err != nil {
		return 1, fmt.Errorf("--spec: %w", err)
	}
	if key, err = arraySpecKey(key, strings.HasSuffix(specURL, "/"), os.Getenv); err != nil {
		return 1, err
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
	// The blobs' store, caching in the work folder: inputs come down into
	// it, outputs are renamed into it from the output folder and go up.
	blobs, err := datastore.NewS3(s3, rs.Root, filepath.Join(work, "cache"))
	if err != nil {
		return 1, fmt.Errorf("task spec: %w", err)
	}
	spec := rs.Task
	spec.Code = filepath.Join(work, "code.rds")
	if err := s3.GetFile(ctx, bucket, rs.Task.Code, spec.Code); err != nil {
		return 1, fmt.Errorf("download the code bundle: %w", err)
	}
	if err := fetchInputs(ctx, blobs, &spec); err != nil {
		return 1, err
	}
	// The runtime stages its outputs beside the cache's blobs (renamed in).
	staging, err := blobs.Staging(ctx, spec.Flow)
	if err != nil {
		return 1, err
	}
	if spec.OutputDir, err = os.MkdirTemp(staging, "out-"); err != nil {
		return 1, err
	}
	cwd := filepath.Join(work, "cwd")
	rt := filepath.Join(work, "runtime")
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return 1, err
	}
	// The code package, at the paths the flow's folder has them, so that
	// read.csv("./movies.csv") in a step works here as it does locally.
	err = scheduler.PlacePackage(rs.Package, cwd, func(sha, dst string) error { return scheduler.PlaceBlob(ctx, blobs, spec.Flow, sha, dst) })
	if err != nil {
		return 1, err
	}
	if err := shim.WriteRuntime(rt); err != nil {
		return 1, err
	}
	logs := map[string]string{datastore.Stdout: filepath.Join(work, datastore.Stdout), datastore.Stderr: filepath.Join(work, datastore.Stderr)}
	local := &shim.Local{RuntimeDir: rt, KillGrace: 5 * time.Second}
	// While the task runs its logs go up every interval (when they grew),
	// for the executor to follow; the final upload below completes them.
	every, err := parseLogInterval(os.Getenv(logIntervalEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "metaflow task-runner:", err, "- using", DefaultLogInterval)
		every = DefaultLogInterval
	}
	live := map[string]string{}
	for s, p := range logs {
		live[datastore.JobLogName(s)] = p
	}
	stopLogs := uploadLogs(ctx, live, work, every,
		func(ctx context.Context, name, p string) error {
			// A stalled upload must not hold up the task's end (stop waits for it).
			ctx, cancel := context.WithTimeout(ctx, liveUploadTimeout)
			defer cancel()
			return s3.PutFile(ctx, bucket, datastore.JobFile(rs.JobDir, name), p)
		})
	// The outputs are hashed as the task writes them (PutFile below), as a
	// local task's are.
	pre := datastore.WatchStaging(spec.OutputDir)
	defer pre.Close()
	var outMu sync.Mutex
	code, runErr := local.Run(ctx, &scheduler.Launch{
		Spec: &spec, Rscript: "Rscript", Workdir: cwd,
		StdoutPath: logs[datastore.Stdout], StderrPath: logs[datastore.Stderr],
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
	errFile := filepath.Join(spec.OutputDir, scheduler.ErrorFile)
	if runErr != nil || code != 0 {
		// No output is stored: the prehasher's open files would only hold
		// the space of outputs the runtime removed (a full disk), which the
		// error file needs.
		pre.Close()
	}
	if runErr != nil {
		// Could not run or was killed: say so where the engine looks.
		_ = os.WriteFile(errFile, []byte(runErr.Error()+"\n"), 0o644)
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
		return s3.PutFile(fctx, bucket, datastore.JobFile(rs.JobDir, name), local)
	}
	// The logs in full, also when the periodic uploads had all of them.
	for _, s := range datastore.Streams {
		if err := up(datastore.JobLogName(s), logs[s]); err != nil {
			return 1, err
		}
	}
	if code == 0 {
		outputs, err := putOutputs(fctx, blobs, pre, spec.Flow, spec.OutputDir)
		if err != nil {
			return 1, err
		}
		ob, _ := json.Marshal(outputs)
		if err := s3.PutBytes(fctx, bucket, datastore.JobFile(rs.JobDir, datastore.JobOutputs), ob); err != nil {
			return 1, err
		}
		if err := up(datastore.JobResult, filepath.Join(spec.OutputDir, scheduler.ResultFile)); err != nil {
			return 1, err
		}
	} else if err := up(datastore.JobError, errFile); err != nil {
		return 1, err
	}
	eb, _ := json.Marshal(exitRecord{ExitCode: code})
	if err := s3.PutBytes(fctx, bucket, datastore.JobFile(rs.JobDir, datastore.JobExit), eb); err != nil {
		return 1, err
	}
	return code, nil
}

// fetchInputs downloads each input blob of spec once (checked, in
// parallel) into the blob store's cache and points the spec at the files.
func fetchInputs(ctx context.Context, blobs datastore.Blobs, spec *scheduler.TaskSpec) error {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		first error
		files = map[string]datastore.BlobFile{}
		sem   = make(chan struct{}, 8)
	)
	fetch := func(sha string) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := files[sha]; ok {
			return
		}
		files[sha] = datastore.BlobFile{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			f, err := blobs.LocalFile(ctx, spec.Flow, sha)
			mu.Lock()
			defer mu.Unlock()
			files[sha] = f
			if err != nil && first == nil {
				first = fmt.Errorf("%s: %w", inputNamed(spec, sha), err)
			}
		}()
	}
	for _, in := range spec.Inputs {
		for _, a := range in.Artifacts {
			fetch(a.SHA)
		}
	}
	if spec.Input != nil {
		fetch(spec.Input.SHA)
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("download task inputs: %w", first)
	}
	for i := range spec.Inputs {
		for name, a := range spec.Inputs[i].Artifacts {
			spec.Inputs[i].Artifacts[name] = scheduler.SpecFile(a.SHA, files[a.SHA])
		}
	}
	if spec.Input != nil {
		f := files[spec.Input.SHA]
		spec.Input.Path, spec.Input.Stamp = f.Path, scheduler.StampOf(f.Stamp)
	}
	return nil
}

// inputNamed names an input artifact of spec whose blob is sha (the first
// in the order of the inputs), for errors: artifact 'x' of F/1/start/1.
func inputNamed(spec *scheduler.TaskSpec, sha string) string {
	for _, in := range spec.Inputs {
		names := make([]string, 0, len(in.Artifacts))
		for name := range in.Artifacts {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if in.Artifacts[name].SHA == sha {
				return fmt.Sprintf("artifact '%s' of %s/%s/%s/%s", name, spec.Flow, spec.RunID, in.Step, in.TaskID)
			}
		}
	}
	return "the foreach value " + sha
}

// putOutputs puts the artifacts the runtime staged in dir (<name>.mpk)
// into the blob store, each hashed once as it is renamed into the store's
// cache (pre, if set, followed dir while the task wrote them: only what it
// has not hashed is read), and returns their shas by name.
func putOutputs(ctx context.Context, blobs datastore.Blobs, pre *datastore.Prehasher, flow, dir string) (map[string]string, error) {
	ctx = datastore.WithPrehasher(ctx, pre)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
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
	outputs := map[string]string{}
	for _, n := range names {
		a, err := blobs.PutFile(ctx, flow, filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("store artifact %s: %w", strings.TrimSuffix(n, ".mpk"), err)
		}
		outputs[strings.TrimSuffix(n, ".mpk")] = a.SHA
	}
	return outputs, nil
}
