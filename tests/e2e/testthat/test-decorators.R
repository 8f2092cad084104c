# 13. retry, catch and timeout.

test_that("--with retry retries a step that fails on its first attempt", {
  res <- run_flow("retryflow.R", c("run", "--with", "retry"))
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", "attempt 0 ?"), res)
  expect_line(res$stdout, task_line_re(1, "start", "attempt 1 ?"), res)
  expect_line(c(res$stdout, res$stderr), "first attempt fails", res)
  expect_line(res$stdout, task_line_re(1, "start", ".*[Rr]etrying.*"), res)
  expect_line(res$stdout, task_line_re(1, "end", "needed 2 attempts"), res)
  expect_line(res$stdout, sprintf("^%s Done!$", TS_RE), res)

  sid <- task_ids(res$dir, "RetryFlowR", "1", "start")
  expect_length(sid, 1)
  t <- task_meta(res$dir, "RetryFlowR", "1", "start", sid)
  expect_equal(t$status, "completed")
  expect_length(t$attempts, 2)
  expect_equal(vapply(t$attempts, function(a) a$status, ""), c("failed", "completed"))
  expect_equal(vapply(t$attempts, function(a) as.integer(a$attempt), 0L), c(0L, 1L))
  # Each attempt keeps its own output.
  expect_equal(trimws(readLines(mf_path(res$dir, "RetryFlowR", "1", "start", sid, "0.stdout"))),
               "attempt 0")
  expect_equal(trimws(readLines(mf_path(res$dir, "RetryFlowR", "1", "start", sid, "1.stdout"))),
               "attempt 1")

  # logs shows the latest attempt; --attempt 0 the failed one, --stderr
  # only its errors; an attempt the task never had is a one-line error.
  latest <- run_flow(NULL, c("logs", "1/start"), workdir = res$dir)
  expect_exit(latest, 0)
  expect_line(latest$stdout, "^attempt 1 ?$", latest)
  expect_no_line(c(latest$stdout, latest$stderr), "first attempt fails", latest)
  first <- run_flow(NULL, c("logs", "1/start", "--attempt", "0"), workdir = res$dir)
  expect_exit(first, 0)
  expect_line(first$stdout, "^attempt 0 ?$", first)
  expect_line(first$stderr, "first attempt fails", first)
  errs <- run_flow(NULL, c("logs", paste0("1/start/", sid), "--attempt=0", "--stderr"), workdir = res$dir)
  expect_exit(errs, 0)
  expect_no_line(errs$stdout, "attempt 0", errs)
  expect_line(errs$stderr, "first attempt fails", errs)
  none <- run_flow(NULL, c("logs", paste0("1/start/", sid), "--attempt", "5"), workdir = res$dir)
  expect_one_line_error(none, sprintf("task 1/start/%s has no attempt 5: its attempts are 0, 1", sid),
                        fixed = TRUE)
})

test_that("without retry the same flow fails", {
  res <- run_flow("retryflow.R", "run")
  expect_failure_exit(res)
  expect_match(error_line(res), "first attempt fails")
  sid <- task_ids(res$dir, "RetryFlowR", "1", "start")
  expect_length(task_meta(res$dir, "RetryFlowR", "1", "start", sid)$attempts, 1)
})

test_that("--with catch:var=err lets the flow finish with the error in err", {
  res <- run_flow("catchflow.R", c("run", "--with", "catch:var=err"))
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "end", "caught: .*kaboom in a.*"), res)
  expect_line(res$stdout, sprintf("^%s Done!$", TS_RE), res)
  aid <- task_ids(res$dir, "CatchFlowR", "1", "a")
  expect_true("err" %in% names(task_artifacts(res$dir, "CatchFlowR", "1", "a", aid)))
  eid <- task_ids(res$dir, "CatchFlowR", "1", "end")
  expect_true("err" %in% names(task_artifacts(res$dir, "CatchFlowR", "1", "end", eid)))
  expect_equal(run_meta(res$dir, "CatchFlowR", "1")$status, "completed")

  # Read the artifact back with the client API.
  cl <- run_client_script(res$dir, c(
    'suppressPackageStartupMessages(library(metaflow))',
    'r <- run_client$new("CatchFlowR", "1")',
    'cat("ERR<<", r$artifact("err"), ">>\\n", sep = "")'
  ))
  expect_exit(cl, 0)
  expect_line(cl$stdout, "^ERR<<.*kaboom in a.*>>$", cl)
})

test_that("--with catch (no var) lets the flow go on and stores no artifact, as Metaflow", {
  res <- run_flow("catchflow.R", c("run", "--with", "catch"))
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "end", "caught: \\(not stored\\) ?"), res)
  aid <- task_ids(res$dir, "CatchFlowR", "1", "a")
  expect_equal(sort(names(task_artifacts(res$dir, "CatchFlowR", "1", "a", aid))), "x")
  # The client still has the error.
  cl <- run_client_script(res$dir, c(
    'suppressPackageStartupMessages(library(metaflow))',
    'r <- run_client$new("CatchFlowR", "1")',
    't <- r$step("a")$task(r$step("a")$tasks[1])',
    'cat("EXC<<", t$exception, ">> OK", t$successful, "\n", sep = "")'
  ))
  expect_exit(cl, 0)
  expect_line(cl$stdout, "^EXC<<.*kaboom in a.*>> OKTRUE$", cl)
})

test_that("without catch the same flow fails", {
  res <- run_flow("catchflow.R", "run")
  expect_failure_exit(res)
  expect_match(error_line(res), "kaboom in a")
  expect_equal(run_meta(res$dir, "CatchFlowR", "1")$status, "failed")
})

test_that("a step over its timeout is killed and fails the run", {
  res <- run_flow("timeoutflow.R", "run", timeout = 120)
  expect_failure_exit(res)
  # Killed after 2 s, not after the 60 s sleep.
  expect_lt(res$elapsed, 40)
  # (Its own output may or may not have appeared: R's start-up counts too.)
  expect_line(res$stdout, task_line_re(1, "slow", ".*timed out.*"), res)
  expect_match(error_line(res), "timed out")
  expect_match(error_line(res), "slow")
  expect_no_line(res$stdout, "never reached", res)
  sid <- task_ids(res$dir, "TimeoutFlowR", "1", "slow")
  expect_equal(task_meta(res$dir, "TimeoutFlowR", "1", "slow", sid)$status, "failed")
  expect_equal(run_meta(res$dir, "TimeoutFlowR", "1")$status, "failed")
})

test_that("the environment decorator sets variables for its step only", {
  res <- run_flow("envflow.R", "run")
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", "greeting is hello there ?"), res)
  expect_line(res$stdout, task_line_re(1, "end", "greeting in end is \\[\\]"), res)
})
