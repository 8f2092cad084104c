# METAFLOW_DEFAULT_DATASTORE=s3: runs, tasks, artifacts and logs are kept in
# S3 (moto_server here), so a second machine (another working directory,
# with an empty local cache) reads and resumes them. Tasks run locally.

s3_state <- local({
  state <- NULL
  function() {
    if (is.null(state)) state <<- moto_s3("mf-s3-e2e")
    state
  }
})

s3_env <- function() {
  st <- s3_state()
  if (!is.null(st$skip)) testthat::skip(paste("S3 datastore tests skipped:", st$skip))
  c(st$env, METAFLOW_DEFAULT_DATASTORE = "s3", METAFLOW_DATASTORE_SYSROOT_S3 = "s3://mf-s3-e2e/metaflow",
    METAFLOW_HOME = new_workdir("mfhome"))
}

s3_keys <- function(prefix) {
  st <- s3_state()
  r <- curl::curl_fetch_memory(sprintf("%s/mf-s3-e2e?list-type=2&prefix=%s", st$endpoint, prefix))
  x <- rawToChar(r$content)
  m <- regmatches(x, gregexpr("<Key>[^<]+</Key>", x))[[1]]
  gsub("</?Key>", "", m)
}

s3_dir <- NULL

test_that("a run's record goes to S3, not to the local datastore", {
  env <- s3_env()
  s3_dir <<- setup_flow("foreachflow.R")
  res <- run_flow(workdir = s3_dir, env = env)
  expect_exit(res, 0)
  expect_output_match(res, "total is: 2870", fixed = TRUE)
  keys <- s3_keys("metaflow/ForeachFlowR/1/")
  expect_true("metaflow/ForeachFlowR/1/_run.json" %in% keys, info = paste(keys, collapse = "\n"))
  expect_true(any(grepl("^metaflow/ForeachFlowR/1/end/[0-9]+/_task.json$", keys)))
  expect_equal(sum(grepl("^metaflow/ForeachFlowR/1/work/[0-9]+/_task.json$", keys)), 20)
  expect_true(any(grepl("^metaflow/ForeachFlowR/1/work/[0-9]+/0.stdout$", keys)))
  expect_true(length(s3_keys("metaflow/ForeachFlowR/data/")) > 0)
  # Locally only the cache: no run folder of the local datastore.
  expect_false(dir.exists(mf_path(s3_dir, "ForeachFlowR")))
  expect_true(dir.exists(mf_path(s3_dir, "_s3cache", "mf-s3-e2e", "metaflow", "ForeachFlowR")))
})

test_that("another machine reads the run's artifacts and logs from S3", {
  env <- s3_env()
  other <- setup_flow("foreachflow.R")
  res <- run_client_script(other, c(
    'suppressPackageStartupMessages(library(metaflow))',
    'f <- flow_client$new("ForeachFlowR")',
    'cat("LATEST", f$latest_run, "\\n")',
    'r <- run_client$new(f, f$latest_run)',
    'cat("TOTAL", r$artifact("total"), "\\n")',
    'w <- r$step("work")',
    'sq <- vapply(w$tasks, function(id) w$task(id)$artifact("sq"), 0)',
    'cat("SQS", sort(sq), "\\n")',
    'cat("STDOUT1", w$task(w$tasks[1])$stdout)'
  ), env = env)
  expect_exit(res, 0)
  expect_line(res$stdout, "^LATEST 1 $", res)
  expect_line(res$stdout, "^TOTAL 2870 $", res)
  expect_line(res$stdout, paste0("^SQS ", paste((1:20)^2, collapse = " "), " $"), res)
  expect_line(res$stdout, "^STDOUT1 work [0-9]+ squared is [0-9]+ $", res)
  logs <- run_flow(workdir = other, args = c("logs", "1/end"), env = env)
  expect_exit(logs, 0)
  expect_output_match(logs, "total is: 2870", fixed = TRUE)
  # Only what was asked for came down into this machine's cache.
  blobs <- list.files(mf_path(other, "_s3cache"), recursive = TRUE)
  expect_length(grep("/data/", blobs), 21)
})

test_that("resume on another machine clones the S3 run's tasks", {
  env <- s3_env()
  other <- setup_flow("foreachflow.R")
  res <- run_flow(workdir = other, args = c("resume", "join", "--origin-run-id", "1"), env = env)
  expect_exit(res, 0)
  expect_output_match(res, "Cloning results of a previously run task", fixed = TRUE)
  expect_true("metaflow/ForeachFlowR/2/_run.json" %in% s3_keys("metaflow/ForeachFlowR/2/"))
})

test_that("another machine sees a running local task's logs", {
  env <- s3_env()
  flow <- c(
    "library(metaflow)",
    "start <- function(self) {",
    "  cat('early line\\n')",
    "  # Until the test has seen the early line elsewhere (at most 2 min).",
    "  for (i in 1:1200) if (file.exists(Sys.getenv('MF_SENTINEL'))) break else Sys.sleep(0.1)",
    "  cat('late line\\n')",
    "}",
    "metaflow('S3LiveLogFlowR') %>%",
    "  step(step = 'start', r_function = start, next_step = 'end') %>%",
    "  step(step = 'end', r_function = function(self) NULL) %>%",
    "  run()")
  here <- new_workdir("s3live")
  there <- new_workdir("s3livereader")
  writeLines(flow, file.path(here, "flow.R"))
  writeLines(flow, file.path(there, "flow.R"))
  sentinel <- file.path(here, "seen")
  bg <- start_bg(here, "Rscript", c("flow.R", "run"), env = c(env, MF_SENTINEL = sentinel))
  on.exit(if (is.na(bg_status(bg))) tools::pskill(bg$pid_value, tools::SIGKILL), add = TRUE)
  during <- NULL
  seen <- wait_until(function() {
    if (!is.na(bg_status(bg))) return(TRUE) # ended first: fails below
    r <- run_cmd(there, "Rscript", c("flow.R", "logs", "1/start"), env = env, timeout = 60)
    if (identical(r$status, 0L) && any(r$stdout == "early line")) {
      during <<- r
      return(TRUE)
    }
    FALSE
  }, timeout = 90, interval = 0.5)
  running_then <- is.na(bg_status(bg))
  file.create(sentinel)
  expect_true(seen && !is.null(during) && running_then,
              info = paste(c(bg_stdout(bg), bg_stderr(bg)), collapse = "\n"))
  if (!is.null(during)) expect_no_line(during$stdout, "late line", during)
  expect_identical(bg_wait(bg, timeout = 60), 0L)
  after <- run_cmd(there, "Rscript", c("flow.R", "logs", "1/start"), env = env)
  expect_equal(after$stdout, c("early line", "late line"), info = describe_result(after))
})

test_that("S3 datastore settings are checked before anything is written", {
  env <- s3_env()
  dir <- setup_flow("linearflow.R")
  no_root <- env[names(env) != "METAFLOW_DATASTORE_SYSROOT_S3"]
  res <- run_flow(workdir = dir, env = no_root)
  expect_one_line_error(res, "METAFLOW_DEFAULT_DATASTORE is s3 but METAFLOW_DATASTORE_SYSROOT_S3 is not set", fixed = TRUE)
  no_bucket <- env
  no_bucket["METAFLOW_DATASTORE_SYSROOT_S3"] <- "s3://no-such-bucket/x"
  res <- run_flow(workdir = dir, env = no_bucket)
  expect_one_line_error(res, "no-such-bucket", fixed = TRUE)
  bad <- env
  bad["METAFLOW_DEFAULT_DATASTORE"] <- "gcs"
  res <- run_flow(workdir = dir, env = bad)
  expect_one_line_error(res, "METAFLOW_DEFAULT_DATASTORE is \"gcs\": use local or s3", fixed = TRUE)
  expect_false(dir.exists(mf_path(dir, "LinearFlowR")))
  expect_length(s3_keys("metaflow/LinearFlowR/"), 0)
})

test_that("--datastore=s3 selects S3 and set_metadata('s3@...') reads it from elsewhere", {
  env <- s3_env()
  env <- env[names(env) != "METAFLOW_DEFAULT_DATASTORE"]
  dir <- setup_flow("linearflow.R")
  res <- run_flow(workdir = dir, args = c("--datastore=s3", "--metadata=local", "run"), env = env)
  expect_exit(res, 0)
  # Kept in S3, not in the local datastore.
  expect_false(dir.exists(mf_path(dir, "LinearFlowR")))
  expect_true(any(grepl("^metaflow/LinearFlowR/[0-9]+/_run.json$", s3_keys("metaflow/LinearFlowR/"))))
  other <- new_workdir("s3-metadata")
  cl <- run_client_script(other, c(
    'suppressPackageStartupMessages(library(metaflow))',
    'cat("LOCAL", "LinearFlowR" %in% list_flows(), "\\n")',
    'cat("SET", set_metadata("s3@s3://mf-s3-e2e/metaflow"), "\\n")',
    'cat("FLOWS", "LinearFlowR" %in% list_flows(), "\\n")',
    'f <- flow_client$new("LinearFlowR")',
    'r <- f$run(f$latest_run)',
    'cat("RUN", r$successful, r$step("end")$task(r$end_task)$metadata_dict[["ds-type"]], "\\n")'
  ), env = env)
  expect_exit(cl, 0)
  expect_line(cl$stdout, "^LOCAL FALSE $", cl)
  expect_line(cl$stdout, "^SET s3@s3://mf-s3-e2e/metaflow $", cl)
  expect_line(cl$stdout, "^FLOWS TRUE $", cl)
  expect_line(cl$stdout, "^RUN TRUE s3 $", cl)
})
