# 9. Bad input: each is refused with a one-line error and a non-zero exit.
#    Graph, decorator and option errors are found before anything is
#    written (no .metaflow folder); errors only a running task can see
#    (artifacts) fail the run with a clear message.

bad_flow <- function(case, args = "run") {
  run_flow("badflow.R", args, env = c(E2E_CASE = case))
}

expect_refused <- function(res, pattern, fixed = FALSE) {
  expect_one_line_error(res, pattern, fixed = fixed)
  expect_no_line(res$stdout, "Task is starting", res)
  expect_no_datastore(res)
}

test_that("a flow without a start step is refused", {
  expect_refused(bad_flow("no_start"), "\"start\"", fixed = TRUE)
})

test_that("a flow without an end step is refused", {
  expect_refused(bad_flow("no_end"), "\"end\"", fixed = TRUE)
})

test_that("next_step naming an unknown step is refused", {
  res <- bad_flow("unknown_next")
  expect_refused(res, "nowhere", fixed = TRUE)
  expect_match(error_line(res), "start")
})

test_that("a cycle is refused", {
  res <- bad_flow("cycle")
  expect_refused(res, "cycle")
})

test_that("an unreachable step is refused", {
  res <- bad_flow("unreachable")
  expect_refused(res, "lonely", fixed = TRUE)
  expect_match(error_line(res), "unreachable")
})

test_that("a step defined twice replaces the first, saying so, as in Metaflow R", {
  # (the engine refuses a graph with two steps of one name from any client:
  # engine/graph's tests)
  res <- bad_flow("duplicate")
  expect_exit(res, 0)
  expect_line(res$stderr, "step 'a' replaces the step of that name already in flow BadFlowR", res)
})

test_that("a join with only one parent is refused", {
  res <- bad_flow("join_one_parent")
  expect_refused(res, "join", fixed = TRUE)
  expect_match(error_line(res), "\"j\"", fixed = TRUE)
  expect_match(error_line(res), "parent")
})

test_that("an unknown decorator is refused", {
  res <- bad_flow("unknown_decorator")
  expect_refused(res, "bogus", fixed = TRUE)
  expect_match(error_line(res), "decorator")
})

test_that("resources with a negative memory is refused", {
  res <- bad_flow("negative_memory")
  expect_refused(res, "memory", fixed = TRUE)
  expect_match(error_line(res), "-1", fixed = TRUE)
})

test_that("resources with a non-numeric cpu is refused", {
  res <- bad_flow("text_cpu")
  expect_refused(res, "cpu", fixed = TRUE)
  expect_match(error_line(res), "number")
})

test_that("an unknown command-line flag is refused", {
  res <- run_flow("linearflow.R", c("run", "--bogus-flag", "1"))
  expect_refused(res, "--bogus-flag", fixed = TRUE)
})

test_that("--max-workers 0 is refused", {
  res <- run_flow("linearflow.R", c("run", "--max-workers", "0"))
  expect_refused(res, "--max-workers", fixed = TRUE)
})

test_that("a non-integer --max-workers is refused", {
  res <- run_flow("linearflow.R", c("run", "--max-workers", "many"))
  expect_refused(res, "many", fixed = TRUE)
})

# ---- errors found by the running task: the run fails ----

expect_run_fails_with <- function(res, pattern, fixed = FALSE) {
  expect_failure_exit(res)
  err <- grep("^Error", res$stderr, value = TRUE)
  testthat::expect(length(err) == 1,
                   sprintf("expected one `Error: ...` line.\n%s", describe_result(res)))
  ok <- if (fixed) grepl(pattern, error_line(res), fixed = TRUE) else grepl(pattern, error_line(res))
  testthat::expect(ok, sprintf("the final error does not match /%s/.\n%s", pattern,
                               describe_result(res)))
  expect_no_line(res$stdout, "Done!", res)
  expect_equal(run_meta(res$dir, "BadFlowR", "1")$status, "failed")
}

test_that("foreach naming an artifact the step does not set fails the run", {
  res <- bad_flow("foreach_missing")
  expect_run_fails_with(res, "nothere", fixed = TRUE)
  expect_match(error_line(res), "not found|not set|no artifact")
  expect_false(dir.exists(mf_path(res$dir, "BadFlowR", "1", "work")))
})

test_that("foreach over a function fails the run", {
  res <- bad_flow("foreach_function")
  expect_run_fails_with(res, "iterable", fixed = TRUE)
  expect_match(error_line(res), "fn", fixed = TRUE)
  expect_false(dir.exists(mf_path(res$dir, "BadFlowR", "1", "work")))
})

test_that("assigning a reserved artifact name fails the run", {
  res <- bad_flow("reserved_artifact")
  expect_run_fails_with(res, "reserved", fixed = TRUE)
  expect_match(error_line(res), "input", fixed = TRUE)
})

test_that("assigning an invalid artifact name fails the run", {
  res <- bad_flow("invalid_artifact")
  expect_run_fails_with(res, "my var", fixed = TRUE)
  expect_match(error_line(res), "not a valid artifact name", fixed = TRUE)
})
