# 7. Ctrl-C (SIGINT to the Rscript client) cancels the run: every task and
#    what it started is killed, the run is marked failed, R exits non-zero.

test_that("SIGINT to the client kills every task and fails the run", {
  dir <- setup_flow("sleepflow.R")
  # The child each task starts; its command line holds the working dir, so
  # every process of this run can be found by it. Bounded, in case a kill fails.
  writeLines(c("i=0", "while [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done"),
             file.path(dir, "sleeper.sh"))
  marker <- dir
  bg <- start_bg(dir, "Rscript", c("flow.R", "run"))
  on.exit({
    # Whatever is left of this run (only on failure), by pid.
    left <- processes_matching(marker)
    for (p in left$pid) tools::pskill(p, tools::SIGKILL)
    if (is.na(bg_status(bg))) tools::pskill(bg$pid_value, tools::SIGKILL)
  }, add = TRUE)

  started <- wait_until(function() {
    sum(grepl(task_line_re(1, "nap", "Task is starting\\."), bg_stdout(bg), perl = TRUE)) == 3
  }, timeout = 90)
  expect_true(started, info = paste(c(bg_stdout(bg), bg_stderr(bg)), collapse = "\n"))
  # The three tasks and their sleeper children are running now.
  seen <- wait_until(function() {
    sum(grepl("sleeper.sh", processes_matching(marker)$args, fixed = TRUE)) >= 3
  }, timeout = 30)
  expect_true(seen, info = paste(processes_matching(marker)$args, collapse = "\n"))
  # A task is recorded while it runs once it has run for a second.
  wait_until(function() length(task_ids(dir, "SleepFlowR", "1", "nap")) == 3, timeout = 10)
  ids <- task_ids(dir, "SleepFlowR", "1", "nap")
  expect_length(ids, 3)
  task_pids <- vapply(ids, function(id) {
    a <- task_meta(dir, "SleepFlowR", "1", "nap", id)$attempts
    as.integer(a[[length(a)]]$pid)
  }, 0L)
  expect_true(all(vapply(task_pids, pid_alive, NA)))

  tools::pskill(bg$pid_value, tools::SIGINT)
  status <- bg_wait(bg, timeout = 60)
  expect_false(is.na(status), info = "the client did not exit within 60 s of SIGINT")
  expect_true(!is.na(status) && status != 0,
              info = paste("exit status", status))
  out <- c(bg_stdout(bg), bg_stderr(bg))
  expect_line(out, "interrupted")
  expect_no_line(out, "woke up")

  # No task process (nor anything it started) survives.
  gone <- wait_until(function() nrow(processes_matching(marker)) == 0, timeout = 10)
  expect_true(gone, info = paste(processes_matching(marker)$args, collapse = "\n"))
  expect_false(any(vapply(task_pids, pid_alive, NA)))

  expect_equal(run_meta(dir, "SleepFlowR", "1")$status, "failed")
  for (id in ids) {
    expect_equal(task_meta(dir, "SleepFlowR", "1", "nap", id)$status, "failed")
  }
  expect_length(task_ids(dir, "SleepFlowR", "1", "end"), 0)
})

test_that("tasks die with the engine that started them (kill -9 of the engine)", {
  dir <- setup_flow("sleepflow.R")
  writeLines(c("i=0", "while [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done"),
             file.path(dir, "sleeper.sh"))
  bg <- start_bg(dir, "Rscript", c("flow.R", "run"))
  on.exit({
    for (p in processes_matching(dir)$pid) tools::pskill(p, tools::SIGKILL)
    if (is.na(bg_status(bg))) tools::pskill(bg$pid_value, tools::SIGKILL)
  }, add = TRUE)
  started <- wait_until(function() {
    sum(grepl(task_line_re(1, "nap", "Task is starting\\."), bg_stdout(bg), perl = TRUE)) == 3
  }, timeout = 90)
  expect_true(started, info = paste(c(bg_stdout(bg), bg_stderr(bg)), collapse = "\n"))
  # A task is recorded while it runs once it has run for a second.
  recorded <- wait_until(function() length(task_ids(dir, "SleepFlowR", "1", "nap")) == 3, timeout = 10)
  expect_true(recorded)
  ids <- task_ids(dir, "SleepFlowR", "1", "nap")
  task_pids <- vapply(ids, function(id) {
    a <- task_meta(dir, "SleepFlowR", "1", "nap", id)$attempts
    as.integer(a[[length(a)]]$pid)
  }, 0L)
  expect_true(length(task_pids) == 3 && all(vapply(task_pids, pid_alive, NA)))
  # The engine R started for this run: the one watching R's pid.
  engine <- processes_matching(sprintf("--parent-pid %d", bg$pid_value))
  expect_equal(nrow(engine), 1, info = paste(engine$args, collapse = "\n"))
  tools::pskill(engine$pid, tools::SIGKILL)
  gone <- wait_until(function() !any(vapply(task_pids, pid_alive, NA)), timeout = 10)
  expect_true(gone, info = "Rscript tasks outlived the engine's kill -9")
  status <- bg_wait(bg, timeout = 60)
  expect_true(!is.na(status) && status != 0, info = paste("client exit status", status))
})

test_that("a run whose engine was killed (kill -9) reads as failed and plain resume picks it up", {
  dir <- setup_flow("sleepflow.R")
  # The tasks nap while the marker exists: the resume (marker removed) is quick.
  marker <- file.path(dir, "napping")
  writeLines("x", marker)
  writeLines(c("i=0",
               sprintf("while [ -f %s ] && [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done", shQuote(marker))),
             file.path(dir, "sleeper.sh"))
  env <- c(METAFLOW_ENGINE_HEARTBEAT_SECONDS = "1")
  bg <- start_bg(dir, "Rscript", c("flow.R", "run"), env = env)
  on.exit({
    unlink(marker)
    for (p in processes_matching(dir)$pid) tools::pskill(p, tools::SIGKILL)
    if (is.na(bg_status(bg))) tools::pskill(bg$pid_value, tools::SIGKILL)
  }, add = TRUE)
  started <- wait_until(function() {
    sum(grepl(task_line_re(1, "nap", "Task is starting\\."), bg_stdout(bg), perl = TRUE)) == 3
  }, timeout = 90)
  expect_true(started, info = paste(c(bg_stdout(bg), bg_stderr(bg)), collapse = "\n"))
  expect_equal(run_meta(dir, "SleepFlowR", "1")$heartbeat_seconds, 1)
  engine <- processes_matching(sprintf("--parent-pid %d", bg$pid_value))
  expect_equal(nrow(engine), 1, info = paste(engine$args, collapse = "\n"))
  tmp <- Sys.getenv("TMPDIR", "/tmp")
  runtime <- Sys.glob(file.path(tmp, sprintf("metaflow-runtime-%d-*", engine$pid)))
  expect_length(runtime, 1)
  staging <- function() list.files(mf_path(dir, "SleepFlowR", "_staging"), pattern = "^1-")
  # One per running task (the run's pooled staging folders: "<run>-task-").
  expect_length(grep("^1-task-", staging(), value = TRUE), 3)
  tools::pskill(engine$pid, tools::SIGKILL)
  killed_at <- Sys.time()
  status <- bg_wait(bg, timeout = 60)
  expect_true(!is.na(status) && status != 0, info = paste("client exit status", status))
  # Nobody recorded the run's end...
  expect_equal(run_meta(dir, "SleepFlowR", "1")$status, "running")

  # ...yet within a few heartbeats the client reads it as failed.
  res <- run_cmd(dir, "Rscript", c("-e", paste0(
    "suppressPackageStartupMessages(library(metaflow)); t0 <- Sys.time(); ",
    "repeat { r <- run_client$new('SleepFlowR/1'); ",
    "if (r$status != 'running' || Sys.time() - t0 > 40) break; Sys.sleep(0.5) }; ",
    "cat('STATUS', r$status, r$finished, r$successful, '\\n')")), env = env, timeout = 90)
  waited <- as.numeric(difftime(Sys.time(), killed_at, units = "secs"))
  expect_exit(res, 0)
  # As in Metaflow, a failed run is not "finished" (its end step did not
  # complete).
  expect_line(res$stdout, "^STATUS failed FALSE FALSE", res)
  expect_lt(waited, 30)

  # Plain resume takes it for the run to resume, and completes quickly.
  unlink(marker)
  res <- run_cmd(dir, "Rscript", c("flow.R", "resume"), env = env, timeout = 180)
  expect_exit(res, 0)
  expect_line(res$stdout, "Resuming run 2 from step nap (origin run 1)", res, fixed = TRUE)
  expect_line(res$stdout, "woke up", res, fixed = TRUE)
  expect_equal(run_meta(dir, "SleepFlowR", "2")$status, "completed")
  expect_equal(run_meta(dir, "SleepFlowR", "2")$origin_run_id, "1")
  # What the killed engine left is gone: its tasks' staging folders and its
  # runtime folder (removed by the engines that started since).
  expect_length(staging(), 0)
  expect_false(any(file.exists(runtime)))
})
