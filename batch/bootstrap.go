package batch

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"runtime"

	"github.com/metaflow-r/metaflow/engine/datastore"
	"github.com/metaflow-r/metaflow/internal/s3io"
)

// engineKey uploads the engine binary jobs run (once per executor) and
// returns its S3 key.
func (e *Executor) engineKey(ctx context.Context) (string, error) {
	e.engineMu.Lock()
	defer e.engineMu.Unlock()
	if e.engine != "" {
		return e.engine, nil
	}
	bin, err := EngineBinary(e.cfg.EngineBinary)
	if err != nil {
		return "", err
	}
	sha, err := s3io.FileSHA(bin)
	if err != nil {
		return "", err
	}
	key := datastore.Key(e.prefix, datastore.EngineBinary(sha))
	if err := e.upload(ctx, key, bin); err != nil {
		return "", err
	}
	e.engine = key
	return key, nil
}

// EngineBinary returns the metaflow-engine jobs download: given, or this
// executable if it can run in a linux/amd64 container with glibc (static,
// or dynamically linked to libc only, as `go build` makes it).
func EngineBinary(given string) (string, error) {
	if given != "" {
		return given, checkELF(given)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return "", fmt.Errorf("this engine is a %s/%s binary: set METAFLOW_BATCH_ENGINE_BINARY to a linux/amd64 metaflow-engine (CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build ./cmd/metaflow-engine)", runtime.GOOS, runtime.GOARCH)
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate the engine binary: %w", err)
	}
	return self, checkELF(self)
}

func checkELF(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("engine binary for Batch jobs %s: %w", p, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("engine binary for Batch jobs %s is not linux/amd64 (set METAFLOW_BATCH_ENGINE_BINARY)", p)
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("engine binary for Batch jobs %s: %w", p, err)
	}
	for _, l := range libs {
		switch l {
		case "libc.so.6", "libpthread.so.0", "libdl.so.2", "libresolv.so.2":
		default:
			return fmt.Errorf("engine binary %s needs %s, which an R image may lack: build a static one (CGO_ENABLED=0 go build ./cmd/metaflow-engine) and set METAFLOW_BATCH_ENGINE_BINARY", p, l)
		}
	}
	return nil
}

// jobCommand is a job's command, base R and sh only: R downloads the engine
// from a presigned URL (bootstrapR, passed in METAFLOW_BOOTSTRAP) and sh
// execs it, so the task runner is the container's PID 1 and receives the
// SIGTERM Batch sends before killing a job (a PID 1 without a handler, such
// as Rscript, ignores it, and its children never hear of it).
var jobCommand = []string{"sh", "-c",
	`f="${TMPDIR:-/tmp}/metaflow-engine-$$" && Rscript -e "$METAFLOW_BOOTSTRAP" "$f" && exec "$f" task-runner --spec "$METAFLOW_TASK_SPEC"`}

// bootstrapR downloads the engine to its argument; exit status 97 says the
// download failed.
const bootstrapR = `f <- commandArgs(TRUE)[1]; u <- Sys.getenv("METAFLOW_ENGINE_URL"); ` +
	`ok <- tryCatch(download.file(u, f, mode = "wb", quiet = TRUE) == 0, error = function(e) { message("metaflow: cannot download the engine: ", conditionMessage(e)); FALSE }); ` +
	`if (!isTRUE(ok)) quit(save = "no", status = 97); Sys.chmod(f, "0755")`
