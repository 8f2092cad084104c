# Warm task starts (docs/ARCHITECTURE.md): local tasks fork from the run's
# zygote; METAFLOW_WARM_START=0 (the run's environment, or a step's
# environment decorator) starts a fresh Rscript instead.

parents <- function(res, step) {
  tl <- parse_task_lines(res$stdout)
  l <- tl$text[tl$step == step & grepl("^parent=", tl$text)]
  data.frame(ppid = sub("^parent=([0-9]+) .*", "\\1", l), kind = sub("^parent=[0-9]+ (\\S+).*", "\\1", l),
             seed = sub(".*seed=(\\S+).*", "\\1", l))
}

test_that("splits start warm from one zygote; a step opting out starts a fresh Rscript", {
  res <- run_flow("warmflow.R", "run")
  expect_exit(res, 0)
  work <- parents(res, "work")
  expect_equal(nrow(work), 4)
  expect_equal(unique(work$kind), "zygote")
  expect_length(unique(work$ppid), 1)
  expect_length(unique(work$seed), 4)
  expect_equal(parents(res, "join")$kind, "engine")
  # Warm and cold, the step's calls into the runtime compile none of it,
  # and the step's own code keeps R's JIT.
  tl <- parse_task_lines(res$stdout)
  state <- tl$text[tl$step %in% c("work", "join") & grepl("^compiled=", tl$text)]
  expect_length(state, 5)
  expect_true(all(grepl("^compiled=0 jit=[1-3]", state)), info = paste(state, collapse = "\n"))
})

test_that("METAFLOW_WARM_START=0 starts every task as a fresh Rscript", {
  res <- run_flow("warmflow.R", "run", env = c(METAFLOW_WARM_START = "0"))
  expect_exit(res, 0)
  expect_equal(unique(parents(res, "work")$kind), "engine")
})

test_that("a bad METAFLOW_WARM_START is refused in one line", {
  res <- run_flow("warmflow.R", "run", env = c(METAFLOW_WARM_START = "maybe"))
  expect_failure_exit(res)
  expect_line(c(res$stdout, res$stderr), "METAFLOW_WARM_START must be 1 .* or 0 .*got \"maybe\"", res)
})
