package datastore

import (
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// The layout: where every record, blob and log is, as a "/"-separated path
// relative to a datastore's root. Local joins these to its folder
// (LocalPath), S3 to its bucket prefix (Key). The Batch executor and its task
// runner keep their transport files in the bucket beside the datastore's own
// (JobDir and below), the S3 cache sits in a local root (CacheDir). Nothing
// outside this file spells a name of the layout:
//
//	<Flow>/data/<sha[0:2]>/<sha>                  blobs (Blob)
//	<Flow>/_stamps/<sha[0:2]>/<sha>               a local blob file's verified stamp (BlobStamp)
//	<Flow>/_staging/                              files about to become blobs (StagingDir)
//	<Flow>/_staging/<run>-<task>-<random>/        a task attempt's outputs (TaskStagingPrefix)
//	<Flow>/<run>/_run.json                        run record (RunRecord)
//	<Flow>/<run>/_code.rds                        code bundle (CodeBundle)
//	<Flow>/<run>/_package.json                    code package manifest (PackageManifest)
//	<Flow>/<run>/<step>/<task>/_task.json         task record (TaskRecord)
//	<Flow>/<run>/<step>/<task>/_artifacts.json    artifact index (ArtifactIndex)
//	<Flow>/<run>/<step>/<task>/<attempt>.<stream> an attempt's log (AttemptLog)
//	<Flow>/<run>/<step>/<task>/<attempt>-<nonce>/ a Batch job's files (JobDir, JobFile)
//	<Flow>/code/<sha>                             code bundles shipped to Batch (CodeBlob)
//	_engine/<sha>/metaflow-engine                 the engine binary Batch jobs run (EngineBinary)
//	_s3cache/<bucket>/<prefix>/                   an S3 datastore's local copies (CacheDir)

// Stdout and Stderr name an attempt's two log streams.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Streams are the log streams, in the order they are read and saved.
var Streams = []string{Stdout, Stderr}

// ParamsStep and ParamsTask name the pseudo-task whose artifacts are a
// run's parameters (start inherits them).
const (
	ParamsStep = "_parameters"
	ParamsTask = "0"
)

// Names of records and folders, private: the functions below are the API.
const (
	dataDir         = "data"
	stagingDir      = "_staging"
	stampDir        = "_stamps"
	runRecord       = "_run.json"
	codeBundle      = "_code.rds"
	packageManifest = "_package.json"
	taskRecord      = "_task.json"
	artifactIndex   = "_artifacts.json"
	codeBlobDir     = "code"
	engineDir       = "_engine"
	engineName      = "metaflow-engine"
	cacheDir        = "_s3cache"
)

// Files of a Batch job's folder (JobDir): the spec the task runner reads,
// and what it leaves for the executor.
const (
	JobSpec    = "_spec.mpk"     // the remote task spec (msgpack)
	JobOutputs = "_outputs.json" // artifact name -> sha of the blobs it stored
	JobResult  = "_result.mpk"   // the runtime's task result
	JobError   = "_error.txt"    // why the task failed
	JobExit    = "_exit.json"    // the exit record, written last
)

// FlowDir is a flow's folder.
func FlowDir(flow string) string { return flow }

// RunDir is a run's folder.
func RunDir(flow, runID string) string { return flow + "/" + runID }

// RunRecord is a run's metadata.
func RunRecord(flow, runID string) string { return RunDir(flow, runID) + "/" + runRecord }

// CodeBundle is a run's code bundle (R serialization).
func CodeBundle(flow, runID string) string { return RunDir(flow, runID) + "/" + codeBundle }

// PackageManifest is a run's code package: {"path": {"sha":..., "size":...}}.
func PackageManifest(flow, runID string) string {
	return RunDir(flow, runID) + "/" + packageManifest
}

// StepDir is the folder of a step's tasks.
func StepDir(flow, runID, step string) string { return RunDir(flow, runID) + "/" + step }

// TaskDir is a task's folder.
func TaskDir(flow, runID, step, taskID string) string {
	return StepDir(flow, runID, step) + "/" + taskID
}

// TaskRecord is a task's metadata: status, attempts, timestamps.
func TaskRecord(flow, runID, step, taskID string) string {
	return TaskDir(flow, runID, step, taskID) + "/" + taskRecord
}

// ArtifactIndex is a task's artifacts: {"name": {"sha":..., "size":...}}.
func ArtifactIndex(flow, runID, step, taskID string) string {
	return TaskDir(flow, runID, step, taskID) + "/" + artifactIndex
}

// AttemptLog is one stream (Stdout, Stderr) of an attempt's output.
func AttemptLog(flow, runID, step, taskID string, attempt int, stream string) string {
	return TaskDir(flow, runID, step, taskID) + "/" + strconv.Itoa(attempt) + "." + stream
}

// Blob is where the content-addressed blob sha of a flow is.
func Blob(flow, sha string) string { return BlobDir(flow) + "/" + sha[:2] + "/" + sha }

// BlobStamp is where the stamp of the blob file Blob(flow, sha) is: its
// stat when its content was last hashed (stamp.go). Only local folders have
// stamps (a Local, an S3's cache); they are never uploaded.
func BlobStamp(flow, sha string) string {
	return flow + "/" + stampDir + "/" + sha[:2] + "/" + sha
}

// BlobDir is the folder of a flow's blobs.
func BlobDir(flow string) string { return flow + "/" + dataDir }

// StagingDir is the folder of a flow's files about to become blobs (on the
// blobs' filesystem, so that they are renamed into place).
func StagingDir(flow string) string { return flow + "/" + stagingDir }

// TaskStagingPrefix starts the name of the private folder, in a flow's
// staging folder, where an attempt of a task of run runID (name tells the
// task apart) leaves its outputs; a random suffix completes it.
func TaskStagingPrefix(runID, name string) string { return runID + "-" + name + "-" }

// TaskStagingRun returns the run whose task made the staging folder called
// name (TaskStagingPrefix).
func TaskStagingRun(name string) (string, bool) {
	id, _, ok := strings.Cut(name, "-")
	if !ok {
		return "", false
	}
	if _, ok := runIDOf(id); !ok {
		return "", false
	}
	return id, true
}

// JobDir is the folder of one Batch job of a task attempt (nonce tells
// apart jobs of the same attempt number, as after a resume).
func JobDir(flow, runID, step, taskID string, attempt int, nonce string) string {
	return TaskDir(flow, runID, step, taskID) + "/" + strconv.Itoa(attempt) + "-" + nonce
}

// JobFile is a file of a job's folder (a key: the folder joined by Key).
func JobFile(jobDir, name string) string { return jobDir + "/" + name }

// JobLogName is the name, in a job's folder, of the log stream the task
// runner uploads while the task runs.
func JobLogName(stream string) string { return stream + ".log" }

// CodeBlob is where a code bundle shipped to Batch jobs is, by its sha256.
func CodeBlob(flow, sha string) string { return flow + "/" + codeBlobDir + "/" + sha }

// EngineBinary is where the engine binary Batch jobs run is, by its sha256.
func EngineBinary(sha string) string { return engineDir + "/" + sha + "/" + engineName }

// CacheDir is an S3 datastore's local cache below a local root (flow names
// start with a letter, so no flow's folder is ever called that).
func CacheDir(localRoot, bucket, prefix string) string {
	return filepath.Join(localRoot, cacheDir, bucket, filepath.FromSlash(prefix))
}

// Key is a layout path in a bucket under prefix ("" for the bucket's top).
func Key(prefix, rel string) string {
	if prefix == "" {
		return rel
	}
	return path.Join(prefix, rel)
}

// LocalPath is a layout path in the folder root.
func LocalPath(root, rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

// runIDOf returns the run id (or task id) a folder name is: a canonical
// non-negative integer.
func runIDOf(name string) (int, bool) {
	n, err := strconv.Atoi(name)
	return n, err == nil && n >= 0 && strconv.Itoa(n) == name
}

// isStep reports whether a run's folder name is a step's (not a record or
// the parameters pseudo-step).
func isStep(name string) bool { return name != "" && !strings.HasPrefix(name, "_") }

// taskOfRecord returns the task id of a key relative to a step's folder
// when it is that task's record (<task>/_task.json).
func taskOfRecord(rel string) (int, bool) {
	id, file, ok := strings.Cut(rel, "/")
	if !ok || file != taskRecord {
		return 0, false
	}
	return runIDOf(id)
}
