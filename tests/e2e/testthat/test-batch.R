# AWS Batch end to end against moto_server: the batch decorator on one step
# (BigSumFlowR: start in a container, end locally) and --with batch on a
# small foreach. moto runs each job as a docker container of the local
# base-R image (tests/batch/build-image.sh, built here when absent) on the
# host network, so jobs reach moto's S3 on 127.0.0.1. Skipped, with a
# message, when docker or moto_server is missing.

REPO_ROOT <- normalizePath(file.path(E2E_DIR, "..", ".."))

# moto for this file's tests, started on first use (helper-moto.R).
batch_state <- local({
  state <- NULL
  function() {
    if (is.null(state)) {
      state <<- moto_batch("metaflow-queue", "metaflow-e2e", label = "AWS Batch tests",
                           flows = c("BigSumFlowR", "BatchForeachFlowR", "BatchFailFlowR",
                                     "BatchLiveLogFlowR", "BatchRoleFlowR", "BatchOrphanFlowR"))
    }
    state
  }
})

skip_without_batch <- function() {
  st <- batch_state()
  if (!is.null(st$skip)) testthat::skip(st$skip)
  st$env
}

JOB_RE <- "[0-9a-f-]{36}"

# Python tools run without R's LD_LIBRARY_PATH (helper-moto.R).
py_system2 <- moto_py

# A console line of a task that ran as a Batch job (no local pid).
batch_line_re <- function(run_id, step, text, task_id = "[0-9]+") {
  sprintf("^%s \\[%s/%s/%s \\(pid 0\\)\\] %s$", TS_RE, run_id, step, task_id, text)
}

test_that("decorator(\"batch\") runs start as a Batch job and end locally", {
  env <- skip_without_batch()
  res <- run_flow("batchsumflow.R", "run", env = env, timeout = 240)
  expect_exit(res, 0)
  expect_line(res$stdout, batch_line_re(1, "start", sprintf(
    "Batch job %s submitted to queue metaflow-queue \\(1 vCPU, 1000 MB memory, 0 GPU, image %s\\)\\.",
    JOB_RE, BATCH_IMAGE), task_id = 1), res)
  expect_line(res$stdout, batch_line_re(1, "start", sprintf("Batch job %s is RUNNING\\.", JOB_RE), 1), res)
  expect_line(res$stdout, batch_line_re(1, "start", sprintf("Batch job %s is SUCCEEDED\\.", JOB_RE), 1), res)
  expect_line(res$stdout, batch_line_re(1, "start", sprintf("start ran in job %s ", JOB_RE), 1), res)
  expect_line(res$stderr, task_line_re(1, "end", "sum is: 800020000", task_id = 2), res)
  expect_line(res$stderr, task_line_re(1, "end", "start's job was a Batch job", task_id = 2), res)
  expect_line(res$stderr, task_line_re(1, "end", "end's job is local", task_id = 2), res)
  expect_no_line(res$stdout, "\\[1/end/.*Batch job", res)
  # The local datastore is the store of record: start's task, artifacts
  # and log are there as for a local task.
  expect_equal(task_meta(res$dir, "BigSumFlowR", "1", "start", "1")$status, "completed")
  expect_true(all(c("sum", "job", "size") %in% names(task_artifacts(res$dir, "BigSumFlowR", "1", "start", "1"))))
  log <- read_lines_safe(mf_path(res$dir, "BigSumFlowR", "1", "start", "1", "0.stdout"))
  expect_true(any(grepl("start ran in job", log, fixed = TRUE)), info = paste(log, collapse = "\n"))
  # The client API reads the artifact the container produced.
  got <- run_cmd(res$dir, "Rscript", c("-e", paste(
    "suppressMessages(library(metaflow));",
    "cat(format(task_client$new('BigSumFlowR/1/start/1')$artifact('sum'), scientific = FALSE))")))
  expect_equal(got$stdout, "800020000", info = describe_result(got))
})

# The container properties of a job's definition in moto, through boto3:
# moto's DescribeJobs leaves jobRoleArn, executionRoleArn and linuxParameters
# out of the job's container block (AWS copies them there from the
# definition), so they are read from the definition the job names.
moto_job_container <- function(endpoint, job) {
  py <- paste(
    "import boto3, json, sys",
    "c = boto3.client('batch', endpoint_url=sys.argv[1], region_name='us-east-1',",
    "                 aws_access_key_id='testing', aws_secret_access_key='testing')",
    "j = c.describe_jobs(jobs=[sys.argv[2]])['jobs'][0]",
    "d = c.describe_job_definitions(jobDefinitions=[j['jobDefinition']])['jobDefinitions'][0]",
    "print(json.dumps(d['containerProperties']))", sep = "\n")
  out <- suppressWarnings(py_system2("python3", c("-c", shQuote(py), endpoint, job),
                                     stdout = TRUE, stderr = FALSE))
  jsonlite::fromJSON(paste(out, collapse = "\n"), simplifyVector = FALSE)
}

test_that("batch(iam_role=, execution_role=, shared_memory=, max_swap=, swappiness=) reach the job", {
  env <- skip_without_batch()
  res <- run_flow("batchroleflow.R", "run", env = env, timeout = 240)
  expect_exit(res, 0)
  expect_line(res$stderr, task_line_re(1, "end", "start's job was a Batch job", task_id = 2), res)
  # get_metadata() and get_namespace() work in a Batch step without the package.
  expect_line(res$stderr, task_line_re(1, "end", paste0(
    "start saw metadata local@", normalizePath(res$dir), "/.metaflow namespace user:[^ ]+ package FALSE"),
    task_id = 2), res)
  # get_metadata() and get_namespace() work in a Batch step without the package.
  expect_line(res$stderr, task_line_re(1, "end", paste0(
    "start saw metadata local@", normalizePath(res$dir), "/.metaflow namespace user:[^ ]+ package FALSE"),
    task_id = 2), res)
  line <- grep("Batch job .* submitted to queue", res$stdout, value = TRUE)
  expect_length(line, 1)
  job <- regmatches(line[1], regexpr(JOB_RE, line[1]))
  p <- moto_job_container(env[["AWS_ENDPOINT_URL"]], job)
  expect_equal(p$jobRoleArn, "arn:aws:iam::123456789012:role/step-role")
  expect_equal(p$executionRoleArn, "arn:aws:iam::123456789012:role/step-exec")
  expect_equal(p$linuxParameters[c("sharedMemorySize", "maxSwap", "swappiness")],
               list(sharedMemorySize = 256L, maxSwap = 512L, swappiness = 10L))
  mem <- Filter(function(r) identical(r$type, "MEMORY"), p$resourceRequirements)
  expect_equal(vapply(mem, function(r) r$value, ""), "1000")

  # A value Batch would refuse fails the run before anything is written.
  dir <- setup_flow("batchroleflow.R")
  flow <- readLines(file.path(dir, "flow.R"))
  writeLines(sub("swappiness = 10", "swappiness = 101", flow, fixed = TRUE), file.path(dir, "flow.R"))
  bad <- run_flow(NULL, "run", env = env, workdir = dir, timeout = 60)
  expect_one_line_error(bad, paste0('step "start": decorator "batch" argument swappiness = "101": ',
                                    "must be a whole number from 0 to 100"), fixed = TRUE)
  expect_no_datastore(bad)
})

test_that("with the S3 datastore a Batch run is read from another directory", {
  env <- skip_without_batch()
  env["METAFLOW_DATASTORE_SYSROOT_S3"] <- "s3://metaflow-e2e/s3store"
  env <- c(env, METAFLOW_DEFAULT_DATASTORE = "s3")
  res <- run_flow("batchsumflow.R", c("run", "--with", "batch:memory=512"), env = env, timeout = 300)
  expect_exit(res, 0)
  expect_line(res$stderr, batch_line_re(1, "end", "sum is: 800020000", task_id = 2), res)
  expect_false(dir.exists(mf_path(res$dir, "BigSumFlowR")))
  # Blobs stay in S3: jobs read and write them there, and the engine only
  # names them. The blobs here are the ones the engine stores: the parameter
  # and the code package's one file (flow.R).
  cached <- list.files(mf_path(res$dir, "_s3cache"), recursive = TRUE)
  blobs <- grep("/data/", cached, value = TRUE)
  expect_length(blobs, 2)
  flow_r <- readBin(file.path(res$dir, "flow.R"), "raw", 1e6)
  expect_true(any(vapply(blobs, function(b) {
    identical(readBin(file.path(mf_path(res$dir, "_s3cache"), b), "raw", 1e6), flow_r)
  }, NA)), info = paste(blobs, collapse = ", "))
  # Another machine: an empty directory, nothing cached.
  other <- new_workdir("s3reader")
  got <- run_cmd(other, "Rscript", c("-e", paste(
    "suppressMessages(library(metaflow));",
    "t <- task_client$new('BigSumFlowR/1/start/1');",
    "cat(format(t$artifact('sum'), scientific = FALSE), nzchar(t$artifact('job')), '\n');",
    "cat(t$stdout)")), env = env)
  expect_exit(got, 0)
  expect_line(got$stdout, "^800020000 TRUE $", got)
  expect_line(got$stdout, sprintf("^start ran in job %s $", JOB_RE), got)
})

test_that("a step its queue can never run is refused before the run starts", {
  env <- skip_without_batch()
  dir <- new_workdir("batchtoobig")
  writeLines(c(
    "library(metaflow)",
    "metaflow('BatchTooBigFlowR') %>%",
    "  step(step = 'start', r_function = function(self) NULL, next_step = 'big') %>%",
    "  step(decorator('batch', cpu = 8, queue = 'metaflow-queue-small'), step = 'big',",
    "       r_function = function(self) NULL, next_step = 'end') %>%",
    "  step(step = 'end', r_function = function(self) NULL) %>%",
    "  run()"), file.path(dir, "flow.R"))
  res <- run_flow(NULL, "run", env = env, workdir = dir, timeout = 120)
  expect_one_line_error(res, paste(
    "step big cannot run on AWS Batch: job queue metaflow-queue-small cannot run a job of 8 vCPU"), fixed = TRUE)
  expect_match(error_line(res), "maxvCpus is 4", fixed = TRUE)
  expect_no_datastore(res)
  expect_no_line(res$stdout, "Task is starting", res)
})

test_that("--with batch runs every step of a foreach as Batch jobs", {
  env <- skip_without_batch()
  res <- run_flow("batchforeachflow.R", c("run", "--with", "batch:memory=512"), env = env, timeout = 300)
  expect_exit(res, 0)
  expect_line(res$stderr, batch_line_re(1, "end", "total is: 55"), res)
  tl <- parse_task_lines(res$stdout)
  submitted <- tl[grepl("^Batch job .* submitted to queue metaflow-queue \\(1 vCPU, 512 MB", tl$text), ]
  # start, 5 splits, join, end: 8 jobs, one per task; the 5 splits are the
  # children of one array job (one SubmitJob), each followed as its own job.
  expect_equal(nrow(submitted), 8)
  expect_setequal(unique(submitted$step), c("start", "work", "join", "end"))
  works <- submitted$text[submitted$step == "work"]
  parents <- unique(sub("^Batch job ([^ ]+):([0-9]+) \\(a child of array job ([^ )]+)\\).*$", "\\1 \\3", works))
  expect_length(parents, 1)
  expect_equal(strsplit(parents, " ")[[1]][1], strsplit(parents, " ")[[1]][2])
  expect_setequal(sub("^Batch job [^ ]+:([0-9]+) .*$", "\\1", works), as.character(0:4))
  for (i in 1:5) {
    expect_line(res$stdout, batch_line_re(1, "work", sprintf("work %d squared is %d in a job: TRUE ", i, i^2)), res)
  }
  expect_equal(length(task_ids(res$dir, "BatchForeachFlowR", "1", "work")), 5)
})

test_that("a step failing in its Batch job fails the run with the step's error", {
  env <- skip_without_batch()
  dir <- new_workdir("batchfail")
  writeLines(c(
    "library(metaflow)",
    "metaflow('BatchFailFlowR') %>%",
    "  step(decorator('batch', memory = 512), step = 'start',",
    "       r_function = function(self) stop('boom in the container'), next_step = 'end') %>%",
    "  step(step = 'end', r_function = function(self) NULL) %>%",
    "  run()"), file.path(dir, "flow.R"))
  res <- run_flow(NULL, "run", env = env, workdir = dir, timeout = 240)
  expect_failure_exit(res)
  expect_line(res$stdout, batch_line_re(1, "start", sprintf("Batch job %s is FAILED\\.", JOB_RE), 1), res)
  expect_output_match(res, "boom in the container", fixed = TRUE)
  # What Batch and the task runner tell: here (moto) the exit code only.
  expect_line(res$stderr, batch_line_re(1, "start", sprintf("Batch job %s failed: .*exit code 1\\.", JOB_RE), 1), res)
  expect_equal(task_meta(dir, "BatchFailFlowR", "1", "start", "1")$status, "failed")
})

test_that("logs RUN/STEP shows a Batch task's output while it runs and after; the console once", {
  env <- skip_without_batch()
  # Jobs upload their logs, and the engine fetches them, every second.
  env <- c(env, METAFLOW_BATCH_LOG_INTERVAL = "1")
  dir <- new_workdir("batchlivelog")
  writeLines(c(
    "library(metaflow)",
    "start <- function(self) {",
    "  cat('live line one\\n')",
    "  message('live warning one')",
    "  Sys.sleep(10)",
    "  cat('live line two\\n')",
    "}",
    "metaflow('BatchLiveLogFlowR') %>%",
    "  step(decorator('batch', memory = 512), step = 'start', r_function = start, next_step = 'end') %>%",
    "  step(step = 'end', r_function = function(self) NULL) %>%",
    "  run()"), file.path(dir, "flow.R"))
  bg <- start_bg(dir, "Rscript", c("flow.R", "run"), env = env)
  on.exit(if (is.na(bg_status(bg))) tools::pskill(bg$pid_value, tools::SIGKILL), add = TRUE)
  # While the job runs: `logs 1/start` (the R CLI, reading the local
  # datastore) shows the first lines, not yet the last.
  during <- NULL
  seen <- wait_until(function() {
    if (!is.na(bg_status(bg))) return(TRUE) # the run ended first: fails below
    r <- run_cmd(dir, "Rscript", c("flow.R", "logs", "1/start"), timeout = 60)
    if (identical(r$status, 0L) && any(r$stdout == "live line one")) {
      during <<- r
      return(TRUE)
    }
    FALSE
  }, timeout = 150, interval = 0.5)
  running_then <- is.na(bg_status(bg))
  console_then <- bg_stdout(bg)
  expect_true(seen && !is.null(during),
              info = paste(c(bg_stdout(bg), bg_stderr(bg)), collapse = "\n"))
  expect_true(running_then, info = "the run had ended before logs showed the line")
  expect_no_line(console_then, "is SUCCEEDED\\.")
  if (!is.null(during)) {
    expect_no_line(during$stdout, "live line two", during)
    expect_line(during$stderr, "^live warning one$", during)
  }
  # The console had the line before the job ended, too.
  expect_line(console_then, batch_line_re(1, "start", "live line one", 1))

  status <- bg_wait(bg, timeout = 180)
  out <- bg_stdout(bg)
  err <- bg_stderr(bg)
  expect_identical(status, 0L, info = paste(c(out, err), collapse = "\n"))
  # Each line exactly once on the console, in order.
  for (l in c("live line one", "live line two")) {
    expect_equal(sum(grepl(batch_line_re(1, "start", l, 1), c(out, err))), 1,
                 info = paste(c(out, err), collapse = "\n"))
  }
  expect_equal(sum(grepl(batch_line_re(1, "start", "live warning one", 1), c(out, err))), 1,
               info = paste(c(out, err), collapse = "\n"))
  i1 <- grep(batch_line_re(1, "start", "live line one", 1), out)
  i2 <- grep(batch_line_re(1, "start", "live line two", 1), out)
  expect_true(length(i1) == 1 && length(i2) == 1 && i1 < i2)
  # After the run: every line.
  after <- run_cmd(dir, "Rscript", c("flow.R", "logs", "1/start"))
  expect_exit(after, 0)
  expect_equal(after$stdout, c("live line one", "live line two"), info = describe_result(after))
  expect_line(after$stderr, "^live warning one$", after)
})

# The status of a job in moto, through boto3.
moto_job_status <- function(endpoint, job) {
  describe <- paste(
    "import boto3, sys",
    "c = boto3.client('batch', endpoint_url=sys.argv[1], region_name='us-east-1',",
    "                 aws_access_key_id='testing', aws_secret_access_key='testing')",
    "print(c.describe_jobs(jobs=[sys.argv[2]])['jobs'][0]['status'])", sep = "\n")
  out <- suppressWarnings(py_system2("python3", c("-c", shQuote(describe), endpoint, job),
                                     stdout = TRUE, stderr = FALSE))
  tail(out, 1)
}

test_that("logs of a Batch task whose engine died come from the job's own uploads", {
  env <- skip_without_batch()
  env <- c(env, METAFLOW_BATCH_LOG_INTERVAL = "1")
  dir <- new_workdir("batchcrash")
  writeLines(c(
    "library(metaflow)",
    "start <- function(self) {",
    "  cat('before the crash\\n')",
    "  Sys.sleep(8)",
    "  cat('after the crash\\n')",
    "}",
    "metaflow('BatchCrashFlowR') %>%",
    "  step(decorator('batch', memory = 512), step = 'start', r_function = start, next_step = 'end') %>%",
    "  step(step = 'end', r_function = function(self) NULL) %>%",
    "  run()"), file.path(dir, "flow.R"))
  bg <- start_bg(dir, "Rscript", c("flow.R", "run"), env = env)
  on.exit(if (is.na(bg_status(bg))) tools::pskill(bg$pid_value, tools::SIGKILL), add = TRUE)
  printed <- wait_until(function() any(grepl("before the crash", bg_stdout(bg))), timeout = 150)
  expect_true(printed, info = paste(c(bg_stdout(bg), bg_stderr(bg)), collapse = "\n"))
  line <- grep("is RUNNING\\.", bg_stdout(bg), value = TRUE)[1]
  job <- regmatches(line, regexpr(JOB_RE, line))
  expect_length(job, 1)
  # The client and its engine die at once, with no chance to stop the job.
  engine <- processes_matching(sprintf("--parent-pid %d", bg$pid_value))$pid
  expect_length(engine, 1)
  tools::pskill(c(bg$pid_value, engine), tools::SIGKILL)
  expect_false(is.na(bg_wait(bg, timeout = 10)))
  done <- wait_until(function() identical(moto_job_status(env[["AWS_ENDPOINT_URL"]], job), "SUCCEEDED"),
                     timeout = 90, interval = 0.5)
  expect_true(done, info = paste("job", job, "status", moto_job_status(env[["AWS_ENDPOINT_URL"]], job)))
  # The task's record still says running; its logs are the job's.
  expect_equal(task_meta(dir, "BatchCrashFlowR", "1", "start", "1")$status, "running")
  logs <- run_cmd(dir, "Rscript", c("flow.R", "logs", "1/start"), env = env)
  expect_exit(logs, 0)
  expect_equal(logs$stdout, c("before the crash", "after the crash"), info = describe_result(logs))
})

test_that("retry resubmits a failed Batch job and records each attempt", {
  env <- skip_without_batch()
  dir <- new_workdir("batchretry")
  writeLines(c(
    "library(metaflow)",
    "start <- function(self) {",
    "  if (current('retry_count') == 0) stop('first attempt fails')",
    "  self$ok <- TRUE",
    "}",
    "metaflow('BatchRetryFlowR') %>%",
    "  step(decorator('batch', memory = 512), decorator('retry', times = 1),",
    "       step = 'start', r_function = start, next_step = 'end') %>%",
    "  step(step = 'end', r_function = function(self) cat('ok is', self$ok, '\\n')) %>%",
    "  run()"), file.path(dir, "flow.R"))
  res <- run_flow(NULL, "run", env = env, workdir = dir, timeout = 300)
  expect_exit(res, 0)
  submitted <- grep("Batch job .* submitted to queue", res$stdout, value = TRUE)
  expect_length(submitted, 2)
  expect_output_match(res, "first attempt fails", fixed = TRUE)
  expect_line(res$stdout, task_line_re(1, "end", "ok is TRUE ?"), res)
  a <- task_meta(dir, "BatchRetryFlowR", "1", "start", "1")$attempts
  expect_length(a, 2)
  expect_equal(vapply(a, function(x) x$status, ""), c("failed", "completed"))
})

test_that("SIGINT terminates the run's Batch jobs", {
  env <- skip_without_batch()
  dir <- new_workdir("batchint")
  writeLines(c(
    "library(metaflow)",
    "metaflow('BatchSleepFlowR') %>%",
    "  step(decorator('batch', memory = 512), step = 'start',",
    "       r_function = function(self) { Sys.sleep(90); self$x <- 1 }, next_step = 'end') %>%",
    "  step(step = 'end', r_function = function(self) NULL) %>%",
    "  run()"), file.path(dir, "flow.R"))
  bg <- start_bg(dir, "Rscript", c("flow.R", "run"), env = env)
  on.exit(if (is.na(bg_status(bg))) tools::pskill(bg$pid_value, tools::SIGKILL), add = TRUE)
  running <- wait_until(function() any(grepl("is RUNNING\\.", bg_stdout(bg))), timeout = 120)
  expect_true(running, info = paste(c(bg_stdout(bg), bg_stderr(bg)), collapse = "\n"))
  line <- grep("is RUNNING\\.", bg_stdout(bg), value = TRUE)[1]
  job <- regmatches(line, regexpr(JOB_RE, line))
  expect_length(job, 1)

  tools::pskill(bg$pid_value, tools::SIGINT)
  status <- bg_wait(bg, timeout = 90)
  expect_true(!is.na(status) && status != 0, info = paste("exit status", status))
  # It says what it did: the job was terminated, nothing is left running.
  expect_line(bg_stderr(bg), "^Run 1 interrupted: ended 1 task\\(s\\) \\(1 of them AWS Batch job\\(s\\), terminated\\)\\.$")
  expect_equal(run_meta(dir, "BatchSleepFlowR", "1")$status, "failed")

  # The job itself is stopped, not left RUNNING in Batch.
  job_status <- function() moto_job_status(env[["AWS_ENDPOINT_URL"]], job)
  stopped <- wait_until(function() identical(job_status(), "FAILED"), timeout = 60, interval = 0.5)
  expect_true(stopped, info = paste("job", job, "status", job_status()))
})

test_that("R killed mid-run: its Batch job runs on, and the run record says so and how to end it", {
  env <- skip_without_batch()
  dir <- new_workdir("batchorphan")
  writeLines(c(
    "library(metaflow)",
    "metaflow('BatchOrphanFlowR') %>%",
    "  step(decorator('batch', memory = 512), step = 'start',",
    "       r_function = function(self) { Sys.sleep(12); self$x <- 1 }, next_step = 'end') %>%",
    "  step(step = 'end', r_function = function(self) NULL) %>%",
    "  run()"), file.path(dir, "flow.R"))
  bg <- start_bg(dir, "Rscript", c("flow.R", "run"), env = env)
  on.exit(if (is.na(bg_status(bg))) tools::pskill(bg$pid_value, tools::SIGKILL), add = TRUE)
  running <- wait_until(function() any(grepl("is RUNNING\\.", bg_stdout(bg))), timeout = 120)
  expect_true(running, info = paste(c(bg_stdout(bg), bg_stderr(bg)), collapse = "\n"))
  line <- grep("is RUNNING\\.", bg_stdout(bg), value = TRUE)[1]
  job <- regmatches(line, regexpr(JOB_RE, line))
  expect_length(job, 1)
  engine <- processes_matching(sprintf("--parent-pid %d", bg$pid_value))$pid
  expect_length(engine, 1)

  # R dies (no Ctrl-C, no chance to cancel); its engine records the run
  # and stops, leaving the job to end on its own (or at its timeout).
  tools::pskill(bg$pid_value, tools::SIGKILL)
  gone <- wait_until(function() !isTRUE(tools::pskill(engine, 0L)), timeout = 20)
  expect_true(gone, info = "the engine outlived its R session by 20 s")
  meta <- run_meta(dir, "BatchOrphanFlowR", "1")
  expect_equal(meta$status, "failed")
  expect_match(meta$error, "the R session that started the run went away", fixed = TRUE)
  expect_match(meta$error, job, fixed = TRUE)
  expect_match(meta$error, "batch kill --run-id 1", fixed = TRUE)
  expect_equal(vapply(meta$jobs_left_running, function(j) j$job_id, ""), job)
  a <- task_meta(dir, "BatchOrphanFlowR", "1", "start", "1")$attempts
  expect_true(isTRUE(a[[length(a)]]$job_left_running))
  # batch list finds it, and the client API names it.
  listed <- run_cmd(dir, "Rscript", c("flow.R", "batch", "list", "--run-id", "1"), env = env)
  expect_exit(listed, 0)
  expect_line(listed$stdout, sprintf("^Job %s \\(step start, task 1, run 1\\) is RUNNING$", job), listed)
  got <- run_cmd(dir, "Rscript", c("-e", paste(
    "suppressMessages(library(metaflow));",
    "cat(run_client$new('BatchOrphanFlowR/1')$jobs_left_running)")), env = env)
  expect_equal(got$stdout, job, info = describe_result(got))
  # Not terminated: the job finishes its work.
  job_status <- function() moto_job_status(env[["AWS_ENDPOINT_URL"]], job)
  done <- wait_until(function() identical(job_status(), "SUCCEEDED"), timeout = 90, interval = 0.5)
  expect_true(done, info = paste("job", job, "status", job_status()))
})
