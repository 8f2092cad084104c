# 5. A failing step fails the run; resume clones what succeeded and reruns
#    the rest under a new run id.

test_that("a failed step fails the run and resume clones the start step", {
  res <- run_flow("resumeflow.R", "run")
  dir <- res$dir
  expect_failure_exit(res)
  # The R error and a call stack, under the failing task's prefix.
  expect_line(res$stderr, task_line_re(1, "fragile", "Error.*boom"), res)
  expect_line(res$stderr, task_line_re(1, "fragile", "Call stack:"), res)
  expect_line(res$stderr, task_line_re(1, "fragile", ".*explode\\(\\)"), res)
  expect_line(res$stdout, task_line_re(1, "fragile", "Task failed\\."), res)
  # The final error names the step and the cause.
  expect_match(error_line(res), "^Error: .*fragile.*boom")
  expect_no_line(res$stdout, "Done!", res)

  expect_equal(run_meta(dir, "ResumeFlowR", "1")$status, "failed")
  fid <- task_ids(dir, "ResumeFlowR", "1", "fragile")
  expect_length(fid, 1)
  expect_equal(task_meta(dir, "ResumeFlowR", "1", "fragile", fid)$status, "failed")
  expect_length(task_ids(dir, "ResumeFlowR", "1", "end"), 0)
  expect_equal(readLines(file.path(dir, "start_count.txt")), "1")

  # Fix the cause and resume.
  file.create(file.path(dir, "fixed"))
  res2 <- run_flow(NULL, "resume", workdir = dir)
  expect_exit(res2, 0)
  expect_line(res2$stdout, "Cloning", res2)
  expect_line(res2$stdout, "Cloning.*1/start/", res2)
  expect_line(res2$stdout, task_line_re(2, "fragile", "Task finished successfully\\."), res2)
  expect_line(res2$stdout, task_line_re(2, "end", "result is 10 ?"), res2)
  expect_line(res2$stdout, sprintf("^%s Done!$", TS_RE), res2)
  # start was not run again.
  expect_no_line(res2$stdout, task_line_re(2, "start", "Task is starting\\."), res2)
  expect_equal(readLines(file.path(dir, "start_count.txt")), "1")

  meta2 <- run_meta(dir, "ResumeFlowR", "2")
  expect_equal(meta2$status, "completed")
  expect_equal(meta2$origin_run_id, "1")
  sid <- task_ids(dir, "ResumeFlowR", "2", "start")
  expect_length(sid, 1)
  expect_match(task_meta(dir, "ResumeFlowR", "2", "start", sid)$cloned_from, "^1/start/")
  # The origin run is untouched.
  expect_equal(run_meta(dir, "ResumeFlowR", "1")$status, "failed")
})
