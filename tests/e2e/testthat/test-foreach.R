# 3. The foreach example, then on the same datastore:
# 8. logs, 10. the R client API, 11. the engine's CLI without R.

foreach_res <- run_flow("foreachflow.R", "run")
fe_dir <- foreach_res$dir

test_that("a foreach of 20 splits is squared and summed to 2870", {
  res <- foreach_res
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", "Foreach yields 20 child steps\\."), res)
  # message() goes to stderr, under the end task's prefix.
  expect_line(res$stderr, task_line_re(1, "end", "total is: 2870"), res)
  expect_line(res$stdout, sprintf("^%s Done!$", TS_RE), res)

  tl <- parse_task_lines(res$stdout)
  work <- tl[tl$step == "work", ]
  expect_equal(sum(work$text == "Task is starting."), 20)
  expect_equal(sum(work$text == "Task finished successfully."), 20)
  expect_equal(length(unique(work$pid)), 20)
  for (i in c(1, 7, 20)) {
    expect_line(res$stdout, task_line_re(1, "work", sprintf("work %d squared is %d ?", i, i^2)), res)
  }

  ids <- task_ids(fe_dir, "ForeachFlowR", "1", "work")
  expect_length(ids, 20)
  idx <- vapply(ids, function(id) {
    t <- task_meta(fe_dir, "ForeachFlowR", "1", "work", id)
    expect_equal(t$status, "completed")
    stack <- t$foreach_stack
    stack[[length(stack)]]$index
  }, 0)
  expect_setequal(idx, 0:19)
  expect_equal(run_meta(fe_dir, "ForeachFlowR", "1")$status, "completed")
  expect_length(task_ids(fe_dir, "ForeachFlowR", "1", "join"), 1)
})

test_that("logs RUN/end prints the end task's output", {
  res <- run_flow(NULL, c("logs", "1/end"), workdir = fe_dir)
  expect_exit(res, 0)
  expect_line(c(res$stdout, res$stderr), "^total is: 2870$", res)
  # Only the end task: no work output.
  expect_no_line(c(res$stdout, res$stderr), "squared is", res)
})

test_that("logs RUN/work prints every split's output", {
  res <- run_flow(NULL, c("logs", "1/work"), workdir = fe_dir)
  expect_exit(res, 0)
  for (i in 1:20) {
    expect_line(res$stdout, sprintf("^work %d squared is %d ?$", i, i^2), res)
  }
  expect_equal(sum(grepl("squared is", res$stdout)), 20)
})

test_that("logs of a run that does not exist is an error", {
  res <- run_flow(NULL, c("logs", "999/end"), workdir = fe_dir)
  expect_one_line_error(res, "999")
  expect_no_line(res$stdout, "total is", res)
  # A command the error suggests (`metaflow-engine ...`) must work as written.
  err <- error_line(res)
  hint <- regmatches(err, regexpr("`metaflow-engine [^`]+`", err))
  if (length(hint)) {
    words <- strsplit(gsub("`", "", hint), " ", fixed = TRUE)[[1]]
    suggested <- run_cmd(fe_dir, words[1], words[-1])
    expect_exit(suggested, 0)
  }
})

test_that("the client API reads runs, artifacts and output", {
  script <- file.path(fe_dir, "client.R")
  writeLines(c(
    'suppressPackageStartupMessages(library(metaflow))',
    'f <- flow_client$new("ForeachFlowR")',
    'cat("LATEST", f$latest_run, "\\n")',
    'r <- run_client$new(f, f$latest_run)',
    'cat("SUCCESSFUL", r$successful, "\\n")',
    'total <- r$artifact("total")',
    'cat("TOTAL", total, "\\n")',
    'cat("TOTAL_IDENTICAL", identical(total, 2870), "\\n")',
    'w <- r$step("work")',
    'cat("NTASKS", length(w$tasks), "\\n")',
    'sq <- vapply(w$tasks, function(id) w$task(id)$artifact("sq"), 0)',
    'cat("SQS", sort(sq), "\\n")',
    't <- w$task(w$tasks[1])',
    'cat("SQ1", t$artifact("sq"), "\\n")',
    'cat("STDOUT1", t$stdout)',
    'e <- r$step("end")$task(r$end_task)',
    'cat("END_STDERR", e$stderr)'
  ), script)
  res <- run_cmd(fe_dir, "Rscript", "client.R")
  expect_exit(res, 0)
  out <- res$stdout
  expect_line(out, "^LATEST 1 $", res)
  expect_line(out, "^SUCCESSFUL TRUE $", res)
  expect_line(out, "^TOTAL 2870 $", res)
  expect_line(out, "^TOTAL_IDENTICAL TRUE $", res)
  expect_line(out, "^NTASKS 20 $", res)
  expect_line(out, paste0("^SQS ", paste((1:20)^2, collapse = " "), " $"), res)
  sq1 <- as.numeric(sub("^SQ1 ([0-9]+) $", "\\1", grep("^SQ1 ", out, value = TRUE)))
  expect_length(sq1, 1)
  expect_true(sq1 %in% (1:20)^2)
  # The first task's stdout is its own line, with the same square.
  expect_line(out, sprintf("^STDOUT1 work %d squared is %d ?$", as.integer(sqrt(sq1)), sq1), res)
  expect_line(out, "^END_STDERR total is: 2870$", res)
})

test_that("the engine CLI lists runs and prints artifacts without R", {
  res <- run_cmd(fe_dir, "metaflow-engine", c("runs", "ForeachFlowR"))
  expect_exit(res, 0)
  expect_line(res$stdout, "^1\\s+completed\\b", res)

  jid <- task_ids(fe_dir, "ForeachFlowR", "1", "join")
  expect_length(jid, 1)
  res <- run_cmd(fe_dir, "metaflow-engine",
                 c("artifact", sprintf("ForeachFlowR/1/join/%s", jid), "total"))
  expect_exit(res, 0)
  expect_line(res$stdout, "\\b2870\\b", res)
  expect_no_line(res$stdout, "\\b2871\\b", res)

  # Unknown artifact: an error naming it.
  res <- run_cmd(fe_dir, "metaflow-engine",
                 c("artifact", sprintf("ForeachFlowR/1/join/%s", jid), "nothere"))
  expect_failure_exit(res)
  expect_output_match(res, "nothere")
})

test_that("self$input is x[[i]] for every kind of foreach value", {
  res <- run_flow("foreachkindsflow.R", c("run", "--max-workers", "4"), timeout = 300)
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "end", paste0(
    "report: chr:3:TRUE dates:2:TRUE dbl:4:TRUE df:2:TRUE fct:3:TRUE lst:3:TRUE named:3:TRUE ?")), res)
  expect_no_line(c(res$stdout, res$stderr), "MISMATCH", res)
})
