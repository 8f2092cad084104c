# A datastore that fills up or turns read-only mid-run (a real tmpfs): the
# task whose writes fail fails with the OS's cause on the console, the run
# and every task end failed, the process exits non-zero, nothing is left
# half-written, and nothing reads "running".

# Mounts a tmpfs of size (mount's size=, e.g. "8m") on a fresh folder; it is
# unmounted when the calling test ends, also when it fails. Skips the test
# where mounting is not possible (not root).
local_tmpfs <- function(size, env = parent.frame()) {
  if (!identical(Sys.info()[["effective_user"]], "root")) {
    testthat::skip("mounting a tmpfs (a full or read-only datastore) needs root")
  }
  dir <- new_workdir("tmpfs")
  out <- suppressWarnings(system2("mount", c("-t", "tmpfs", "-o", paste0("size=", size), "tmpfs",
                                             shQuote(dir)), stdout = TRUE, stderr = TRUE))
  if (!is.null(attr(out, "status"))) {
    testthat::skip(paste("cannot mount a tmpfs here:", paste(out, collapse = " ")))
  }
  withr::defer(system2("umount", c("-l", shQuote(dir))), envir = env)
  dir
}

disk_flow <- function(label, flow_name, body, steps) {
  dir <- new_workdir(label)
  writeLines(c('library(metaflow)', body, sprintf('metaflow("%s") %%>%%', flow_name), steps),
             file.path(dir, "flow.R"))
  dir
}

# Reads a run and one of its tasks as a user does (through the client and a
# fresh engine, so the heartbeat rule applies): "status finished".
client_status <- function(dir, env, pathspec_run, pathspec_task) {
  res <- run_cmd(dir, "Rscript", c("-e", paste0(
    "suppressPackageStartupMessages(library(metaflow)); t0 <- Sys.time(); ",
    sprintf("repeat { r <- run_client$new('%s'); ", pathspec_run),
    "if (r$status != 'running' || Sys.time() - t0 > 30) break; Sys.sleep(0.25) }; ",
    sprintf("t <- task_client$new('%s'); ", pathspec_task),
    "cat('RUN', r$status, '\\n'); cat('TASK', t$status, '\\n')")), env = env, timeout = 90)
  expect_exit(res, 0)
  res
}

test_that("an artifact bigger than the space left fails its task with 'No space left on device'", {
  ds <- local_tmpfs("8m")
  dir <- disk_flow("diskfull", "DiskFullFlowR", c(
    'start <- function(self) { self$small <- 1; self$big <- rep(as.raw(1:255), length.out = 16e6) }',
    'end <- function(self) print(length(self$big))'), c(
    '  step(step = "start", r_function = start, next_step = "end") %>%',
    '  step(step = "end", r_function = end) %>% run()'))
  env <- c(METAFLOW_DATASTORE_SYSROOT_LOCAL = ds)
  res <- run_flow(args = "run", workdir = dir, env = env, timeout = 120)
  expect_failure_exit(res)
  expect_line(res$stderr, task_line_re(1, "start", paste0(
    "Error: cannot store artifact 'big': write .*/big\\.mpk: No space left on device$")), res)
  expect_match(error_line(res), paste0("step start failed \\(task 1/start/1\\): cannot store artifact 'big': ",
                                       "write .*/big\\.mpk: No space left on device$"))
  expect_no_line(res$stdout, task_line_re(1, "end", "Task is starting"), res)
  # The records (written: the partial file was removed) say failed.
  expect_equal(run_meta(ds, "DiskFullFlowR", "1")$status, "failed")
  task <- task_meta(ds, "DiskFullFlowR", "1", "start", "1")
  expect_equal(task$status, "failed")
  expect_match(task$attempts[[1]]$error, "cannot store artifact 'big': .*No space left on device")
  # Nothing half-written: no staged output left, no blob of the partial file.
  expect_length(list.files(mf_path(ds, "DiskFullFlowR", "_staging"), all.files = TRUE, no.. = TRUE), 0)
  blobs <- list.files(mf_path(ds, "DiskFullFlowR", "data"), recursive = TRUE, full.names = TRUE)
  expect_true(all(file.size(blobs) < 1e6), info = paste(blobs, file.size(blobs)))
})

test_that("a datastore turned read-only mid-run fails the task with 'Read-only file system'", {
  store <- local_tmpfs("8m")
  # The datastore is a bind mount of the tmpfs: the step swaps it for a
  # read-only one (a remount would wait for the task's open log files).
  ds <- new_workdir("ro-datastore")
  expect_equal(system2("mount", c("--bind", shQuote(store), shQuote(ds))), 0L)
  withr::defer(system2("umount", c("-l", shQuote(ds))))
  make_ro <- sprintf("umount -l %s && mount --bind -o ro %s %s", shQuote(ds), shQuote(store), shQuote(ds))
  dir <- disk_flow("readonly", "ReadOnlyFlowR", c(
    'start <- function(self) self$x <- 1',
    'mid <- function(self) { stopifnot(system(Sys.getenv("MAKE_RO")) == 0L); self$y <- 2 }',
    'end <- function(self) print(self$y)'), c(
    '  step(step = "start", r_function = start, next_step = "mid") %>%',
    '  step(step = "mid", r_function = mid, next_step = "end") %>%',
    '  step(step = "end", r_function = end) %>% run()'))
  env <- c(METAFLOW_DATASTORE_SYSROOT_LOCAL = ds, MAKE_RO = make_ro,
           METAFLOW_ENGINE_HEARTBEAT_SECONDS = "0.5")
  res <- run_flow(args = "run", workdir = dir, env = env, timeout = 120)
  expect_failure_exit(res)
  expect_line(res$stdout, task_line_re(1, "start", "Task finished successfully\\."), res)
  expect_line(res$stderr, task_line_re(1, "mid", paste0(
    "Error: cannot store artifact 'y': write .*/y\\.mpk: Read-only file system$")), res)
  # The staging folder took no error file either: the engine has the cause
  # from the task's error line.
  expect_match(error_line(res), paste0("step mid failed \\(task 1/mid/2\\): cannot store artifact 'y': ",
                                       "write .*/y\\.mpk: Read-only file system$"))
  expect_line(res$stdout, "Warning: record the end of run ReadOnlyFlowR/1: .*read-only file system", res)
  expect_no_line(res$stdout, task_line_re(1, "end", "Task is starting"), res)
  # Nothing could record the ends: the run's record says running, and mid
  # (shorter than a second) was never recorded running...
  expect_equal(run_meta(ds, "ReadOnlyFlowR", "1")$status, "running")
  expect_false(file.exists(mf_path(ds, "ReadOnlyFlowR", "1", "mid", "2", "_task.json")))
  # ...but its engine is gone: readers see the run failed (start completed).
  st <- client_status(dir, env, "ReadOnlyFlowR/1", "ReadOnlyFlowR/1/start/1")
  expect_line(st$stdout, "^RUN failed", st)
  expect_line(st$stdout, "^TASK completed", st)
})
