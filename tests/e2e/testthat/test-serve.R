# 12. A long-running engine on TCP with a token.

test_that("flows run on a long-running engine with a token; a wrong token is refused", {
  token <- random_token(24)
  port <- free_port()
  address <- sprintf("127.0.0.1:%d", port)
  engine_dir <- new_workdir("engine")
  eng <- start_bg(engine_dir, "metaflow-engine", c("serve", "--listen", address),
                  env = c(METAFLOW_ENGINE_TOKEN = token))
  on.exit(if (is.na(bg_status(eng))) tools::pskill(eng$pid_value, tools::SIGKILL), add = TRUE)
  up <- wait_until(function() any(grepl("serving on", bg_stderr(eng), fixed = TRUE)) ||
                     !is.na(bg_status(eng)), timeout = 30)
  expect_true(up && is.na(bg_status(eng)),
              info = paste(c(bg_stdout(eng), bg_stderr(eng)), collapse = "\n"))

  env_ok <- c(METAFLOW_ENGINE_ADDRESS = address, METAFLOW_ENGINE_TOKEN = token)
  res <- run_flow("linearflow.R", "run", env = env_ok)
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "end", "end says hi there ?"), res)
  expect_line(res$stdout, sprintf("^%s Done!$", TS_RE), res)
  expect_equal(run_meta(res$dir, "LinearFlowR", "1")$status, "completed")

  # The client API through the same engine.
  writeLines(c(
    'suppressPackageStartupMessages(library(metaflow))',
    'cat("LATEST", flow_client$new("LinearFlowR")$latest_run, "\\n")',
    'cat("GREETING", run_client$new("LinearFlowR", "1")$artifact("greeting"), "\\n")'
  ), file.path(res$dir, "client.R"))
  cl <- run_cmd(res$dir, "Rscript", "client.R", env = env_ok)
  expect_exit(cl, 0)
  expect_line(cl$stdout, "^LATEST 1 $", cl)
  expect_line(cl$stdout, "^GREETING hi there $", cl)

  # A wrong token: refused, nothing runs.
  bad <- run_flow("linearflow.R", "run",
                  env = c(METAFLOW_ENGINE_ADDRESS = address,
                          METAFLOW_ENGINE_TOKEN = random_token(24)))
  expect_one_line_error(bad, "token", fixed = TRUE)
  expect_no_line(bad$stdout, "Task is starting", bad)
  expect_no_datastore(bad)

  # No token at all: refused too.
  none <- run_flow("linearflow.R", "run", env = c(METAFLOW_ENGINE_ADDRESS = address))
  expect_one_line_error(none, "token", fixed = TRUE)
  expect_no_datastore(none)

  # The engine serving was what ran the flow: once it is stopped, the same
  # address cannot be reached.
  tools::pskill(eng$pid_value, tools::SIGTERM)
  expect_false(is.na(bg_wait(eng, timeout = 30)))
  gone <- run_flow("linearflow.R", "run", env = env_ok, timeout = 60)
  expect_one_line_error(gone, address, fixed = TRUE)
  expect_no_datastore(gone)
})

test_that("serve on TCP without a token refuses to start", {
  res <- run_cmd(new_workdir("engine"), "metaflow-engine",
                 c("serve", "--listen", sprintf("127.0.0.1:%d", free_port())), timeout = 30)
  expect_failure_exit(res)
  expect_output_match(res, "token")
})
