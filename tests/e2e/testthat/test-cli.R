# 14. show, --help, and AWS Batch refusals (not configured: --with batch, batch list|kill).

test_that("show prints the graph and runs nothing", {
  res <- run_flow("branchflow.R", "show")
  expect_exit(res, 0)
  out <- res$stdout
  expect_line(out, "BranchFlowR", res, fixed = TRUE)
  for (s in c("start", "a", "b", "join", "end")) expect_line(out, paste0("^Step ", s, "\\b"), res)
  expect_line(out, "=> a, b", res, fixed = TRUE)
  expect_line(out, "^Step join.*join", res)
  expect_no_line(out, "Task is starting", res)
  expect_no_datastore(res)
})

test_that("show lists a foreach and the parameters", {
  res <- run_flow("paramflow.R", "show")
  expect_exit(res, 0)
  expect_line(res$stdout, "--alpha", res, fixed = TRUE)
  expect_line(res$stdout, "0.5", res, fixed = TRUE)
  expect_line(res$stdout, "--dataset", res, fixed = TRUE)
  res <- run_flow("foreachflow.R", "show")
  expect_exit(res, 0)
  expect_line(res$stdout, "foreach.*params", res)
  expect_no_datastore(res)
})

test_that("--help prints the usage", {
  res <- run_flow("paramflow.R", "--help")
  expect_exit(res, 0)
  out <- res$stdout
  expect_line(out, "^Usage: ", res)
  for (w in c("run", "resume", "logs", "show", "--max-workers", "--max-num-splits",
              "--with", "--tag", "--alpha", "--dataset")) {
    expect_line(out, w, res, fixed = TRUE)
  }
  expect_no_datastore(res)
  res <- run_flow("linearflow.R", c("run", "--help"))
  expect_exit(res, 0)
  expect_line(res$stdout, "^Usage: ", res)
})

test_that("--with batch without a Batch configuration says what to set and starts nothing", {
  res <- run_flow("linearflow.R", c("run", "--with", "batch"))
  expect_one_line_error(res, "AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE", fixed = TRUE)
  expect_match(error_line(res), "METAFLOW_DATASTORE_SYSROOT_S3", fixed = TRUE)
  expect_no_line(res$stdout, "Task is starting", res)
  expect_no_datastore(res)
})

test_that("batch list and batch kill without a Batch configuration say what to set", {
  for (cmd in c("list", "kill")) {
    res <- run_flow("linearflow.R", c("batch", cmd))
    expect_one_line_error(res, "AWS Batch is not configured: set METAFLOW_BATCH_JOB_QUEUE", fixed = TRUE)
    expect_no_datastore(res)
  }
})
