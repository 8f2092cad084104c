# 6. --max-num-splits: too many splits fail the run before any split starts.

test_that("a foreach of 101 elements exceeds the default --max-num-splits 100", {
  res <- run_flow("splitsflow.R", "run")
  expect_failure_exit(res)
  err <- error_line(res)
  expect_match(err, "^Error: ")
  expect_match(err, "101")
  expect_match(err, "100")
  expect_match(err, "--max-num-splits", fixed = TRUE)
  expect_no_line(res$stdout, "\\[1/work/", res)
  expect_false(dir.exists(mf_path(res$dir, "SplitsFlowR", "1", "work")))
  expect_equal(run_meta(res$dir, "SplitsFlowR", "1")$status, "failed")
})

test_that("--max-num-splits 0 is refused before anything is written", {
  res <- run_flow("splitsflow.R", c("run", "--max-num-splits", "0"))
  expect_one_line_error(res, "--max-num-splits", fixed = TRUE)
  expect_no_datastore(res)
})
