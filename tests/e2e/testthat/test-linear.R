# 1. A linear flow: the console shows Metaflow-style prefixed lines.

test_that("a linear flow runs with Metaflow's console lines", {
  res <- run_flow("linearflow.R", "run")
  expect_exit(res, 0)
  out <- res$stdout

  expect_line(out, sprintf("^%s Workflow starting \\(run-id 1\\):$", TS_RE), res)

  # start: is starting, its own output under the same prefix, finished.
  starting <- expect_line(out, task_line_re(1, "start", "Task is starting\\."), res)
  tl <- parse_task_lines(out)
  start_lines <- tl[tl$run == "1" & tl$step == "start", ]
  expect_equal(length(unique(start_lines$pid)), 1)
  expect_equal(length(unique(start_lines$task)), 1)
  expect_equal(start_lines$text,
               c("Task is starting.", "hello from start", "Task finished successfully."))

  end_lines <- tl[tl$run == "1" & tl$step == "end", ]
  expect_equal(length(unique(end_lines$pid)), 1)
  expect_equal(trimws(end_lines$text),
               c("Task is starting.", "end says hi there", "Task finished successfully."))
  # Each step is its own Rscript process.
  expect_false(identical(unique(start_lines$pid), unique(end_lines$pid)))
  expect_true(all(start_lines$line_no < min(end_lines$line_no)))

  done <- expect_line(out, sprintf("^%s Done!$", TS_RE), res)
  expect_equal(grep("Done!", out)[1], length(out))

  # The datastore has the run and the artifact.
  meta <- run_meta(res$dir, "LinearFlowR", "1")
  expect_equal(meta$status, "completed")
  sid <- task_ids(res$dir, "LinearFlowR", "1", "start")
  expect_length(sid, 1)
  expect_equal(task_meta(res$dir, "LinearFlowR", "1", "start", sid)$status, "completed")
  expect_true("greeting" %in% names(task_artifacts(res$dir, "LinearFlowR", "1", "start", sid)))
  expect_equal(readLines(mf_path(res$dir, "LinearFlowR", "1", "start", sid, "0.stdout")),
               "hello from start")

  # A second run gets the next run id.
  res2 <- run_flow(NULL, "run", workdir = res$dir)
  expect_exit(res2, 0)
  expect_line(res2$stdout, task_line_re(2, "end", "end says hi there ?"), res2)
})
