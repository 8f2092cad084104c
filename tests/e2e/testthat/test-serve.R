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
  cl <- run_client_script(res$dir, c(
    'suppressPackageStartupMessages(library(metaflow))',
    'cat("LATEST", flow_client$new("LinearFlowR")$latest_run, "\\n")',
    'cat("GREETING", run_client$new("LinearFlowR", "1")$artifact("greeting"), "\\n")'
  ), env = env_ok)
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

test_that("run() and the client work against an engine on another machine (no shared files)", {
  why <- batch_skip_reason()
  if (!is.null(why)) skip(paste("remote engine test skipped:", why))
  if (system2("docker", c("image", "inspect", BATCH_IMAGE), stdout = FALSE, stderr = FALSE) != 0) {
    st <- system2("bash", normalizePath(file.path(E2E_DIR, "..", "batch", "build-image.sh")))
    if (st != 0) stop("tests/batch/build-image.sh failed")
  }
  # The "other machine": a container with base R and the engine binary only,
  # on the host's loopback network.
  token <- random_token(24)
  port <- free_port()
  address <- sprintf("127.0.0.1:%d", port)
  engine <- unname(Sys.which("metaflow-engine"))
  name <- paste0("mf-remote-engine-", port)
  st <- system2("docker", c("run", "-d", "--rm", "--name", name, "--network", "host",
                            "-e", paste0("METAFLOW_ENGINE_TOKEN=", token),
                            "-v", paste0(engine, ":/usr/local/bin/metaflow-engine:ro"),
                            "-w", "/srv", BATCH_IMAGE,
                            "/usr/local/bin/metaflow-engine", "serve", "--listen", address),
                stdout = FALSE)
  expect_equal(st, 0)
  on.exit(system2("docker", c("rm", "-f", name), stdout = FALSE, stderr = FALSE), add = TRUE)
  logs <- function() paste(suppressWarnings(system2("docker", c("logs", name), stdout = TRUE, stderr = TRUE)),
                           collapse = "\n")
  expect_true(wait_until(function() grepl("serving on", logs(), fixed = TRUE), timeout = 30), info = logs())

  env <- c(METAFLOW_ENGINE_ADDRESS = address, METAFLOW_ENGINE_TOKEN = token)
  dir <- new_workdir("remote")
  writeLines(c("genre,gross", "a,1", "b,5", "b,7"), file.path(dir, "movies.csv"))
  writeLines(c(
    'library(metaflow)',
    'start <- function(self) {',
    '  self$df <- read.csv("./movies.csv")',
    '  self$big <- seq_len(3e5)',
    '}',
    'end <- function(self) cat("rows:", nrow(self$df), "wd has csv:", file.exists("movies.csv"), "\\n")',
    'metaflow("RemoteFlowR") %>%',
    '  step(step = "start", r_function = start, next_step = "end") %>%',
    '  step(step = "end", r_function = end) %>% run()'
  ), file.path(dir, "flow.R"))
  res <- run_flow(args = c("--package-suffixes=.csv", "run"), workdir = dir, env = env)
  expect_exit(res, 0)
  expect_line(res$stdout, task_line_re(1, "end", "rows: 3 wd has csv: TRUE ?"), res)
  expect_line(res$stdout, "is not on the engine's machine: tasks run in", res)
  # Nothing was written on this machine: the runs live in the container.
  expect_no_datastore(res)

  cl <- run_client_script(dir, c(
    'suppressPackageStartupMessages(library(metaflow))',
    'r <- run_client$new("RemoteFlowR/1")',
    'df <- r$step("start")$task(r$step("start")$a_task)$artifact("df")',
    'big <- r$step("start")$task(r$step("start")$a_task)$artifact("big")',
    'cat("DF", sum(df$gross), "BIG", length(big), identical(big, seq_len(3e5)), "\\n")',
    'cat("STDOUT", r$step("end")$task(r$end_task)$stdout)',
    'cat("FLOWS", list_flows(), "\\n")'
  ), env = env)
  expect_exit(cl, 0)
  expect_line(cl$stdout, "^DF 13 BIG 300000 TRUE $", cl)
  expect_line(cl$stdout, "^STDOUT rows: 3 wd has csv: TRUE $", cl)
  expect_line(cl$stdout, "^FLOWS RemoteFlowR $", cl)
  lg <- run_flow(args = c("logs", "1/end"), workdir = dir, env = env)
  expect_exit(lg, 0)
  expect_line(lg$stdout, "rows: 3 wd has csv: TRUE", lg)
})
