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
