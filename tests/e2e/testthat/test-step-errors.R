# Mistakes inside steps get a clear message naming the step or artifact.

step_flow <- function(label, body) {
  dir <- new_workdir(label)
  writeLines(c(
    'library(metaflow)',
    body,
    'metaflow("StepErrorFlowR") %>%',
    '  step(step = "start", r_function = start, next_step = "end") %>%',
    '  step(step = "end") %>% run()'
  ), file.path(dir, "flow.R"))
  dir
}

test_that("quit() in a step is an error naming the step", {
  dir <- step_flow("quit", 'start <- function(self) { self$x <- 1; quit(status = 0) }')
  res <- run_flow(args = "run", workdir = dir)
  expect_failure_exit(res)
  expect_match(error_line(res), "quit\\(\\) was called in step start: a step ends by returning")
})

test_that("a connection or external pointer is refused by artifact name", {
  dir <- step_flow("conn", 'start <- function(self) { self$ok <- 1; self$con <- list(a = 1, b = file(tempfile(), "w")) }')
  res <- run_flow(args = "run", workdir = dir)
  expect_failure_exit(res)
  expect_match(error_line(res), "artifact 'con' holds a connection, which does not survive the end of the step")
  dir <- step_flow("extptr", 'start <- function(self) self$p <- methods::new("externalptr")')
  res <- run_flow(args = "run", workdir = dir)
  expect_failure_exit(res)
  expect_match(error_line(res), "artifact 'p' holds an external pointer")
})

test_that("a step function with the wrong arguments is refused before anything runs", {
  dir <- step_flow("arity", 'start <- function(self, inputs) self$x <- 1')
  res <- run_flow(args = "run", workdir = dir)
  expect_one_line_error(res, "step 'start': r_function must take one argument (self), but its arguments are: self, inputs (add join = TRUE",
                        fixed = TRUE)
  expect_no_datastore(res)
})

test_that("a huge output line is cut on the console, kept whole in the log", {
  dir <- step_flow("longline", 'start <- function(self) cat(strrep("x", 5e6), "\\n", sep = "")')
  res <- run_flow(args = "run", workdir = dir, timeout = 120)
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", paste0(
    "x+ \\[\\.\\.\\. line cut at 64 KiB: it has 5000000 bytes; the task's log file has all of it\\]")), res)
  cut <- grep("line cut at 64 KiB", res$stdout, value = TRUE)
  expect_equal(nchar(sub("^.*\\] (x+) \\[.*$", "\\1", cut)), 65536)
  lg <- run_flow(args = c("logs", "1/start"), workdir = dir)
  expect_exit(lg, 0)
  expect_equal(max(nchar(lg$stdout)), 5e6)
})
