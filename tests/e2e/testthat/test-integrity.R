# Issue 9, item 1: every artifact a task or the client reads by path is the
# content its sha names, or the read is an error naming the artifact. The
# engine verifies a blob file (its stamp, else its hash) before it hands
# its path to a task or a client, and they check the stamp as they read.

corrupt_flow <- function(env = character()) {
  dir <- setup_flow("corruptflow.R")
  file.create(file.path(dir, "spoil"))
  list(dir = dir, res = run_flow(NULL, "run", workdir = dir, env = env))
}

# Runs R code with the metaflow client in dir; returns run_cmd's result.
client <- function(dir, ...) {
  run_cmd(dir, "Rscript", c("-e", paste0("suppressMessages(library(metaflow)); ", paste0(..., collapse = " "))))
}

CORRUPT_RE <- "blob [0-9a-f]{64} of flow CorruptFlowR in .*/\\.metaflow is corrupt: its content hashes to [0-9a-f]{64}"

test_that("a corrupt blob fails the task that reads it and the client; resume refuses until it is made again", {
  r <- corrupt_flow()
  dir <- r$dir
  res <- r$res
  expect_failure_exit(res)
  expect_line(res$stdout, task_line_re(1, "spoil", "spoiled [0-9a-f]{64} ?"), res)
  # The task that would read it never starts; the error names it, the
  # artifact, the task it comes from, and the fix.
  expect_match(error_line(res), paste0(
    "^Error: .*task CorruptFlowR/1/middle/[0-9]+ cannot start: its input artifact 'x' ",
    "\\(of CorruptFlowR/1/spoil/[0-9]+\\): ", CORRUPT_RE, ".*resume from the step that assigned it"))
  expect_no_line(res$stdout, "sum is", res)
  expect_length(task_ids(dir, "CorruptFlowR", "1", "middle"), 0)
  expect_equal(run_meta(dir, "CorruptFlowR", "1")$status, "failed")

  # The client: an error naming the task and the artifact, never a value;
  # the task's other artifacts read fine.
  got <- client(dir,
    "t <- task_client$new('CorruptFlowR/1/start/1');",
    "cat('start_task', t$artifact('start_task'), '\\n');",
    "v <- tryCatch(t$artifact('x'), error = function(e) cat('ERROR', conditionMessage(e), '\\n'));",
    "if (!is.null(v)) cat('VALUE', sum(v), '\\n')")
  expect_exit(got, 0)
  expect_line(got$stdout, "^start_task 1 $", got)
  expect_line(got$stdout, paste0("^ERROR artifact x of CorruptFlowR/1/start/1 is corrupt: ", CORRUPT_RE), got)
  expect_no_line(got$stdout, "VALUE", got)

  # resume clones start and spoil, and refuses to start middle.
  res2 <- run_flow(NULL, "resume", workdir = dir)
  expect_failure_exit(res2)
  expect_line(res2$stdout, "Cloning.*1/spoil/", res2)
  expect_match(error_line(res2), paste0(
    "task CorruptFlowR/2/middle/[0-9]+ cannot start: its input artifact 'x' .*", CORRUPT_RE))
  expect_no_line(res2$stdout, "sum is", res2)

  # Made again by start (the same content, so the same blob), it replaces
  # the corrupt file; every run's x reads right again.
  unlink(file.path(dir, "spoil"))
  res3 <- run_flow(NULL, c("resume", "start"), workdir = dir)
  expect_exit(res3, 0)
  expect_line(res3$stdout, task_line_re(3, "middle", "sum is 500500 ?"), res3)
  expect_line(res3$stdout, task_line_re(3, "end", "end sum is 500500 ?"), res3)
  got <- client(dir, "cat(sum(task_client$new('CorruptFlowR/1/start/1')$artifact('x')),",
                "sum(run_client$new('CorruptFlowR/3')$artifact('x')), '\\n')")
  expect_exit(got, 0)
  expect_line(got$stdout, "^500500 500500 $", got)
})

test_that("a blob changed after the engine verified it is not read by the task", {
  r <- corrupt_flow(env = c(SPOIL_MODE = "runtime"))
  res <- r$res
  expect_failure_exit(res)
  # spoil damages x after its spec was written, then reads it itself.
  expect_line(res$stdout, task_line_re(1, "spoil", "spoiled [0-9a-f]{64} ?"), res)
  expect_line(res$stderr, task_line_re(1, "spoil", paste0(
    "Error.*artifact 'x' of CorruptFlowR/1/start/1 changed after it was verified against its ",
    "content address: its file .*/data/[0-9a-f]{2}/[0-9a-f]{64} no longer has the size and times ",
    "it was verified with \\(the blob may be corrupt\\): it is not read")), res)
  expect_no_line(res$stdout, "sum is", res)
  expect_no_line(res$stderr, "quit\\(\\) was called", res)
})

test_that("a datastore copied with cp -r (new ctimes) is verified again and reads fine", {
  res <- run_flow("corruptflow.R", "run")
  expect_exit(res, 0)
  copy <- new_workdir("copied")
  expect_equal(system2("cp", c("-r", file.path(res$dir, "."), copy)), 0L)
  got <- client(copy, "cat(sum(run_client$new('CorruptFlowR/1')$artifact('x')), '\\n')")
  expect_exit(got, 0)
  expect_line(got$stdout, "^500500 $", got)
})
