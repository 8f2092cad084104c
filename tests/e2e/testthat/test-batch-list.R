# batch list / batch kill against moto_server. Jobs are frozen in SUBMITTED
# (moto's state manager), so no docker is needed: they are submitted by a
# small boto3 script with the names the engine gives its jobs
# (mf-<flow>-<user>-<run>-<step>-<task>-<attempt>), for this flow's latest
# run, an older run, another user and another flow. Skipped, with a message,
# when moto_server or boto3 is missing.

BL_REPO_ROOT <- normalizePath(file.path(E2E_DIR, "..", ".."))

bl_py <- function(args, ...) system2("env", c("-u", "LD_LIBRARY_PATH", "python3", args), ...)

# Submits jobs and reads their status reasons in a moto_server.
BL_TOOL <- '
import json, sys
try:
    import boto3
except ImportError:
    sys.exit(3)
endpoint, queue, cmd = sys.argv[1:4]
b = boto3.client("batch", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing")
if cmd == "submit":
    jd = b.register_job_definition(jobDefinitionName="bl-none", type="container",
        containerProperties={"image": "127.0.0.1:9/none:0", "vcpus": 1, "memory": 512,
                             "command": ["true"]})["jobDefinitionArn"]
    out = {}
    for name in sys.argv[4:]:
        out[name] = b.submit_job(jobName=name, jobQueue=queue, jobDefinition=jd)["jobId"]
    print(json.dumps(out))
elif cmd == "reasons":
    jobs = b.describe_jobs(jobs=sys.argv[4:])["jobs"]
    print(json.dumps({j["jobId"]: j.get("statusReason", "") for j in jobs}))
'

bl_state <- local({
  state <- NULL
  function() {
    if (!is.null(state)) return(state)
    if (!nzchar(Sys.which("moto_server"))) {
      state <<- list(skip = "batch list tests skipped: moto_server is not installed (pip install 'moto[server]')")
      return(state)
    }
    port <- free_port()
    moto <- file.path(BL_REPO_ROOT, "tests/batch/moto.sh")
    if (system2("env", c("-u", "LD_LIBRARY_PATH", "bash", moto, "start", port), stdout = FALSE) != 0) {
      stop("could not start moto_server")
    }
    withr::defer(system2("env", c("-u", "LD_LIBRARY_PATH", "bash", moto, "stop", port), stdout = FALSE),
                 testthat::teardown_env())
    endpoint <- sprintf("http://127.0.0.1:%d", port)
    # Every job stays SUBMITTED: nothing is ever run.
    h <- curl::new_handle(postfields = '{"model_name": "batch::job", "transition": {"progression": "manual", "times": 1000000}}')
    curl::handle_setheaders(h, "Content-Type" = "application/json")
    r <- curl::curl_fetch_memory(paste0(endpoint, "/moto-api/state-manager/set-transition"), handle = h)
    if (r$status_code %/% 100 != 2) stop("moto: could not freeze job states: HTTP ", r$status_code)
    st <- bl_py(c(file.path(BL_REPO_ROOT, "tests/batch/moto-setup.py"), endpoint, "bl-queue", "bl-bucket"))
    if (st == 3) {
      state <<- list(skip = "batch list tests skipped: python3 has no boto3 (it comes with moto)")
      return(state)
    }
    if (st != 0) stop("tests/batch/moto-setup.py failed (exit status ", st, ")")
    tool <- tempfile(fileext = ".py")
    writeLines(BL_TOOL, tool)
    names <- c(
      mine2a = "mf-BatchListFlowR-alice-2-start-1-0",
      mine2b = "mf-BatchListFlowR-alice-2-work-3-1",
      mine1 = "mf-BatchListFlowR-alice-1-start-1-0",
      bob2 = "mf-BatchListFlowR-bob-2-start-1-0",
      other2 = "mf-OtherFlowR-alice-2-start-1-0")
    out <- bl_py(c(tool, endpoint, "bl-queue", "submit", names), stdout = TRUE)
    ids <- unlist(jsonlite::fromJSON(paste(out, collapse = "")))[names]
    names(ids) <- names(names)
    # The local datastore: run 1 (an empty folder, as if from long ago) and
    # run 2, a real local run: the latest.
    dir <- new_workdir("batchlist")
    setup_flow("batchlistflow.R", dir)
    dir.create(mf_path(dir, "BatchListFlowR", "1"), recursive = TRUE)
    env <- c(METAFLOW_USER = "alice", METAFLOW_BATCH_JOB_QUEUE = "bl-queue",
             METAFLOW_DATASTORE_SYSROOT_S3 = "s3://bl-bucket/metaflow",
             AWS_ENDPOINT_URL = endpoint, AWS_ACCESS_KEY_ID = "testing", AWS_SECRET_ACCESS_KEY = "testing",
             AWS_REGION = "us-east-1", AWS_CONFIG_FILE = "/dev/null", AWS_SHARED_CREDENTIALS_FILE = "/dev/null",
             AWS_EC2_METADATA_DISABLED = "true")
    res <- run_flow(NULL, "run", env = env, workdir = dir)
    if (res$status != 0) stop("the local run of batchlistflow.R failed:\n", describe_result(res))
    state <<- list(skip = NULL, env = env, dir = dir, ids = ids, tool = tool, endpoint = endpoint)
    state
  }
})

skip_without_moto <- function() {
  st <- bl_state()
  if (!is.null(st$skip)) testthat::skip(st$skip)
  st
}

# Which of the test's jobs were terminated by batch kill.
killed_jobs <- function(st) {
  out <- bl_py(c(st$tool, st$endpoint, "bl-queue", "reasons", st$ids), stdout = TRUE)
  reasons <- jsonlite::fromJSON(paste(out, collapse = ""))
  sort(names(st$ids)[vapply(st$ids, function(id) identical(reasons[[id]], "killed by metaflow batch kill"), NA)])
}

bl_run <- function(st, args) run_flow(NULL, args, env = st$env, workdir = st$dir, timeout = 120)

job_line <- function(st, key, step, task, run, attempt = 0) {
  sprintf("Job %s (step %s, task %s, run %s%s) is SUBMITTED", st$ids[[key]], step, task, run,
          if (attempt > 0) sprintf(", attempt %d", attempt) else "")
}

test_that("batch list shows the jobs of the latest run of this flow by this user", {
  st <- skip_without_moto()
  expect_true(dir.exists(mf_path(st$dir, "BatchListFlowR", "2")))
  res <- bl_run(st, c("batch", "list"))
  expect_exit(res, 0)
  expect_equal(sort(res$stdout), sort(c(
    job_line(st, "mine2a", "start", 1, 2), job_line(st, "mine2b", "work", 3, 2, attempt = 1),
    "2 running AWS Batch jobs for flow BatchListFlowR run 2.")), info = describe_result(res))
  res <- bl_run(st, c("batch", "list", "--my-runs"))
  expect_exit(res, 0)
  expect_line(res$stdout, job_line(st, "mine1", "start", 1, 1), res, fixed = TRUE)
  expect_line(res$stdout, "^3 running AWS Batch jobs for flow BatchListFlowR, runs of user alice\\.$", res)
  res <- bl_run(st, c("batch", "list", "--user", "bob"))
  expect_exit(res, 0)
  expect_equal(res$stdout, c(job_line(st, "bob2", "start", 1, 2),
                             "1 running AWS Batch job for flow BatchListFlowR, runs of user bob."),
               info = describe_result(res))
  res <- bl_run(st, c("batch", "list", "--run-id", "99"))
  expect_exit(res, 0)
  expect_equal(res$stdout, "No running AWS Batch jobs for flow BatchListFlowR run 99.", info = describe_result(res))
  expect_length(killed_jobs(st), 0)
})

test_that("batch kill terminates exactly the jobs selected, never other users' or flows'", {
  st <- skip_without_moto()
  res <- bl_run(st, c("batch", "kill", "--run-id", "1"))
  expect_exit(res, 0)
  expect_equal(res$stdout, c(sprintf("Killing job %s (step start, task 1, run 1) (was SUBMITTED)", st$ids[["mine1"]]),
                             "Killed 1 AWS Batch job of flow BatchListFlowR run 1."), info = describe_result(res))
  expect_equal(killed_jobs(st), "mine1")
  res <- bl_run(st, c("batch", "kill"))
  expect_exit(res, 0)
  expect_line(res$stdout, "^Killed 2 AWS Batch jobs of flow BatchListFlowR run 2\\.$", res)
  expect_equal(killed_jobs(st), c("mine1", "mine2a", "mine2b"))
  # The R form: run(batch = "kill", user = "bob") in the flow file.
  flow <- readLines(file.path(st$dir, "flow.R"))
  writeLines(sub("run()", 'run(batch = "kill", user = "bob")', flow, fixed = TRUE),
             file.path(st$dir, "flow-kill-bob.R"))
  res <- run_cmd(st$dir, "Rscript", "flow-kill-bob.R", env = st$env, timeout = 120)
  expect_exit(res, 0)
  expect_line(res$stdout, sprintf("Killing job %s (step start, task 1, run 2) (was SUBMITTED)", st$ids[["bob2"]]),
              res, fixed = TRUE)
  expect_equal(killed_jobs(st), c("bob2", "mine1", "mine2a", "mine2b"))
  # OtherFlowR's job is never touched.
  expect_false("other2" %in% killed_jobs(st))
})

test_that("batch list refuses conflicting options before asking Batch", {
  st <- skip_without_moto()
  res <- bl_run(st, c("batch", "kill", "--my-runs", "--run-id", "2"))
  expect_one_line_error(res, "--my-runs and --run-id are mutually exclusive", fixed = TRUE)
  res <- bl_run(st, c("batch", "stop"))
  expect_one_line_error(res, "batch needs list or kill", fixed = TRUE)
})
