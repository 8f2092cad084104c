# One engine per R session: started on first use, reused by client calls and
# runs, restarted when its settings change, stopped when R exits.

test_that("an R session starts one engine and stops it at exit", {
  dir <- setup_flow("linearflow.R")
  writeLines(c(
    'suppressPackageStartupMessages(library(metaflow))',
    'ns <- asNamespace("metaflow")',
    'pid <- function() ns$engine_session$engine$pid',
    'cat("BEFORE", is.null(ns$engine_session$engine), "\\n")',
    'source("flow.R")',
    'p1 <- pid()',
    'f <- flow_client$new("LinearFlowR")',
    'r <- run_client$new("LinearFlowR/1")',
    'x <- r$artifact(r$artifacts[1])',
    'cat("SAME", identical(p1, pid()), "\\n")',
    'Sys.setenv(METAFLOW_BATCH_JOB_QUEUE = "another-queue")',
    'f <- flow_client$new("LinearFlowR")',
    'p2 <- pid()',
    '# (An engine that exited may be a zombie until init reaps it: not alive.)',
    'cat("RESTARTED", !identical(p1, p2), !ns$engine_alive(list(pid = p1)), "\\n")',
    'writeLines(as.character(p2), "engine.pid")'
  ), file.path(dir, "session.R"))
  res <- run_cmd(dir, "Rscript", "session.R")
  expect_exit(res, 0)
  expect_line(res$stdout, "^BEFORE TRUE $", res)
  expect_line(res$stdout, "^SAME TRUE $", res)
  expect_line(res$stdout, "^RESTARTED TRUE TRUE $", res)
  pid <- as.integer(readLines(file.path(dir, "engine.pid")))
  expect_true(wait_until(function() !pid_alive(pid), timeout = 10), info = "the engine outlived R")
})

test_that("the engine exits when R is killed", {
  dir <- setup_flow("linearflow.R")
  writeLines(c(
    'suppressPackageStartupMessages(library(metaflow))',
    'invisible(list_flows())',
    'writeLines(as.character(asNamespace("metaflow")$engine_session$engine$pid), "engine.pid")',
    'Sys.sleep(60)'
  ), file.path(dir, "session.R"))
  bg <- start_bg(dir, "Rscript", "session.R")
  expect_true(wait_until(function() file.exists(file.path(dir, "engine.pid")) &&
                           length(readLines(file.path(dir, "engine.pid"))) == 1, timeout = 20))
  pid <- as.integer(readLines(file.path(dir, "engine.pid")))
  expect_true(pid_alive(pid))
  tools::pskill(bg$pid_value, tools::SIGKILL)
  expect_true(wait_until(function() !pid_alive(pid), timeout = 10), info = "the engine outlived a killed R")
})
