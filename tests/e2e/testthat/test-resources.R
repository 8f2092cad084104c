# resources() locally: a fake machine of 1000 MB and 2 GPUs
# (METAFLOW_LOCAL_MEMORY, METAFLOW_LOCAL_GPUS).

test_that("a step larger than the machine is warned about once, runs alone, and the flow completes", {
  res <- run_flow("resourcesflow.R", c("run", "--max-workers", "4"),
                  env = c(METAFLOW_LOCAL_MEMORY = "1000", METAFLOW_LOCAL_GPUS = "2"))
  expect_exit(res, 0)
  warning_re <- paste0("^", TS_RE, " Warning: step 'big' asks for 60000 MB of memory; this machine has 1000 MB\\. ",
                       ".*run it on AWS Batch with --with batch")
  warned <- grep(warning_re, res$stdout, perl = TRUE)
  expect_length(warned, 1)
  expect_false(any(grepl("Warning: step '(start|join|gpu|end)'", res$stdout)))
  starting <- grep("Workflow starting", res$stdout)
  expect_true(length(starting) == 1 && warned < starting)
  expect_line(res$stdout, sprintf("^%s Done!$", TS_RE), res)

  # The two big tasks did not overlap.
  ids <- task_ids(res$dir, "ResourcesFlowR", "1", "big")
  expect_length(ids, 2)
  spans <- lapply(ids, function(id) {
    a <- task_meta(res$dir, "ResourcesFlowR", "1", "big", id)$attempts[[1]]
    as.POSIXct(c(a$started_at, a$finished_at), format = "%Y-%m-%dT%H:%M:%OS", tz = "UTC")
  })
  expect_true(spans[[1]][2] <= spans[[2]][1] || spans[[2]][2] <= spans[[1]][1],
              info = paste(format(unlist(spans)), collapse = " "))

  # The GPU step gets one of the GPUs; steps that asked for none are left alone.
  expect_line(res$stdout, task_line_re(1, "gpu", "gpu sees CUDA_VISIBLE_DEVICES \\[0\\]"), res)
  expect_line(res$stdout, task_line_re(1, "start", "start sees CUDA_VISIBLE_DEVICES \\[unset\\]"), res)
  expect_line(res$stdout, task_line_re(1, "end", "end sees CUDA_VISIBLE_DEVICES \\[unset\\]"), res)
})

test_that("a bad METAFLOW_LOCAL_CPUS fails in one line before anything is written", {
  res <- run_flow("resourcesflow.R", "run", env = c(METAFLOW_LOCAL_CPUS = "lots"))
  expect_one_line_error(res, 'METAFLOW_LOCAL_CPUS="lots" is not a number of CPUs', fixed = TRUE)
  expect_no_datastore(res)
})
