# 4. Parameters: defaults, command-line values, required and typed values.

test_that("a parameter's default is what steps see", {
  res <- run_flow("paramflow.R", c("run", "--dataset", "iris"))
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", "alpha is 0\\.5 of class numeric ?"), res)
  expect_line(res$stdout, task_line_re(1, "start", "dataset is iris ?"), res)
  expect_line(res$stdout, task_line_re(1, "end", "scaled is 50 ?"), res)
})

test_that("--alpha on the command line changes what steps see", {
  res <- run_flow("paramflow.R", c("run", "--alpha", "0.25", "--dataset", "mtcars"))
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "start", "alpha is 0\\.25 of class numeric ?"), res)
  expect_line(res$stdout, task_line_re(1, "start", "dataset is mtcars ?"), res)
  expect_line(res$stdout, task_line_re(1, "end", "scaled is 25 ?"), res)
  expect_no_line(res$stdout, "alpha is 0\\.5 ", res)
  # The parameter is stored with the run.
  arts <- task_artifacts(res$dir, "ParamFlowR", "1", "_parameters", "0")
  expect_true(all(c("alpha", "dataset") %in% names(arts)))
})

test_that("a missing required parameter is an error naming its flag", {
  res <- run_flow("paramflow.R", c("run", "--alpha", "0.25"))
  expect_one_line_error(res, "--dataset", fixed = TRUE)
  expect_output_match(res, "required")
  expect_no_datastore(res)
})

test_that("a non-numeric value for a numeric parameter is a clear error", {
  res <- run_flow("paramflow.R", c("run", "--alpha", "abc", "--dataset", "iris"))
  expect_one_line_error(res, "abc")
  expect_output_match(res, "--alpha", fixed = TRUE)
  expect_output_match(res, "number")
  expect_no_datastore(res)
})
