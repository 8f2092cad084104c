# Flows and notebooks written for Metaflow's own R package run unchanged:
# decorator wrappers, parameter() in Metaflow's signature, steps' helpers,
# the client API with namespaces and metadata, top-level options.

test_that("a Metaflow R flow runs unchanged", {
  res <- run_flow("compatflow.R", c("--metadata=local", "--no-pylint", "run", "--verbose",
                                    "--words", "x,y,z", "--count", "7"),
                  env = c(USER = "alice"))
  expect_exit(res, 0)
  out <- res$stdout
  expect_line(out, task_line_re(1, "end", "seed: 42 ?"), res)
  expect_line(out, task_line_re(1, "end", "count: 7 class integer ?"), res)
  expect_line(out, task_line_re(1, "end", "ratio: 0.5 class numeric ?"), res)
  expect_line(out, task_line_re(1, "end", "verbose: TRUE ?"), res)
  expect_line(out, task_line_re(1, "end", "words: x\\|y\\|z ?"), res)
  expect_line(out, task_line_re(1, "end", "xs: 1 2 a_x: 1 b_x: 2 ?"), res)
  expect_line(out, task_line_re(1, "end", "shared: same everywhere ?"), res)
  expect_line(out, task_line_re(1, "end", "who: alice ns: user:alice ?"), res)
  expect_line(out, task_line_re(1, "end", "where: CompatFlowR/1/start/[0-9]+ ?"), res)
  expect_line(out, task_line_re(1, "end", "none param is NULL: TRUE ?"), res)
  expect_line(out, task_line_re(1, "end", "caught: .*Error in risky\\(self\\) : boom in risky ?"), res)
  expect_line(out, task_line_re(1, "end", "package current: TRUE origin NULL: TRUE ?"), res)
  expect_line(out, task_line_re(1, "end", "while running: running FALSE TRUE ?"), res)
  # print_exception = FALSE: the caught error is not printed by the task.
  all <- c(res$stdout, res$stderr)
  expect_false(any(grepl("\\[1/risky/[0-9]+ .*(boom in risky|Call stack)", all)), info = res$output)
  # The environment_variables() decorator reached the task.
  aid <- task_ids(res$dir, "CompatFlowR", "1", "branch_a")
  expect_true("animal" %in% names(task_artifacts(res$dir, "CompatFlowR", "1", "branch_a", aid)))

  # The client, as in a Metaflow R notebook.
  cl <- run_client_script(res$dir, c(
    'suppressPackageStartupMessages(library(metaflow))',
    'cat("NS:", get_namespace(), "\\n")',
    'cat("META:", get_metadata(), "\\n")',
    'cat("FLOWS:", list_flows(), "\\n")',
    'f <- flow_client$new("CompatFlowR")',
    'cat("RUNS:", f$runs, "LATEST:", f$latest_run, "OK:", f$latest_successful_run, "\\n")',
    'cat("FLOWTAGS:", sort(f$tags), "\\n")',
    'f$summary()',
    'print(f)',
    'r <- f$run(f$latest_run)',
    'r2 <- run_client$new("CompatFlowR/1")',
    'r3 <- run_client$new(f, 1)',
    'r4 <- new_run("CompatFlowR", "1")',
    'cat("SAME:", identical(r$pathspec, r2$pathspec), identical(r3$id, r4$id), "\\n")',
    'cat("RUN:", r$id, r$pathspec, r$parent$id, r$successful, r$finished, is.null(r$error), is.null(r$code), "\\n")',
    'cat("RUNTAGS:", sort(r$tags), "\\n")',
    'cat("STEPS:", r$steps, "\\n")',
    'cat("SEED:", r$artifact("seed"), "\\n")',
    'r$summary()',
    'print(r)',
    's <- r$step("branch_a")',
    's2 <- step_client$new("CompatFlowR/1/branch_a")',
    's3 <- new_step("CompatFlowR", "1", "branch_a")',
    'cat("STEP:", s$id, s$parent$id, s2$pathspec, s3$a_task == s$a_task, nzchar(s$created_at), "\\n")',
    'cat("STEPTAGS:", "user:alice" %in% s$tags, "\\n")',
    's$summary()',
    't <- s$task(s$a_task)',
    't2 <- task_client$new(paste0("CompatFlowR/1/branch_a/", s$a_task))',
    't3 <- new_task("CompatFlowR", "1", "branch_a", s$a_task)',
    'cat("TASK:", t$id == t2$id, t3$pathspec == t$pathspec, t$parent$id, t$successful, t$runtime_name, is.null(t$exception), "\\n")',
    'cat("ANIMAL:", t$artifact("animal"), "\\n")',
    'md <- t$metadata_dict',
    'cat("MD:", md$attempt, md[["ds-type"]], md$user, "\\n")',
    't$summary()',
    'rk <- r$step("risky")',
    'tr <- rk$task(rk$a_task)',
    'cat("RISKY:", tr$successful, grepl("boom in risky", tr$exception), "\\n")',
    'm <- mf_client$new()',
    'cat("MF:", m$flow("CompatFlowR")$run("1")$step("end")$task(r$end_task)$artifact("xs"), "\\n")',
    'cat("WITHTAGS:", length(f$runs_with_tags("runtime:dev")), length(f$runs_with_tags("nope")), "\\n")',
    'set_namespace("user:bob")',
    'e <- tryCatch(run_client$new("CompatFlowR/1"), error = conditionMessage)',
    'cat("BOB:", e, "\\n")',
    'e <- tryCatch(flow_client$new("CompatFlowR"), error = conditionMessage)',
    'cat("BOBFLOW:", e, "\\n")',
    'cat("BOBFLOWS:", length(list_flows()), "\\n")',
    'set_namespace(NULL)',
    'cat("GLOBAL:", run_client$new("CompatFlowR/1")$id, length(list_flows()), "\\n")',
    'cat("DEFAULT:", set_default_namespace(), "\\n")',
    'set_metadata(paste0("local@", file.path(tempdir(), "nowhere")))',
    'e <- tryCatch(flow_client$new("CompatFlowR"), error = conditionMessage)',
    'cat("ELSEWHERE:", e, "\\n")',
    'cat("RESET:", reset_default_metadata(), "\\n")'
  ), env = c(USER = "alice"))
  expect_exit(cl, 0)
  o <- c(cl$stdout, cl$stderr)
  dir <- normalizePath(res$dir)
  expect_line(o, "^NS: user:alice $", cl)
  expect_line(o, paste0("^META: local@", dir, "/.metaflow $"), cl, fixed = FALSE)
  expect_line(o, "^FLOWS: CompatFlowR $", cl)
  expect_line(o, "^RUNS: 1 LATEST: 1 OK: 1 $", cl)
  expect_line(o, "^FLOWTAGS: date:[0-9-]+ runtime:dev user:alice $", cl)
  expect_line(o, "Flow Summary: CompatFlowR", cl)
  expect_line(o, "^    Latest Successful Run: +1$", cl)
  expect_line(o, "^<FlowClient CompatFlowR: 1 run\\(s\\)", cl)
  expect_line(o, "^SAME: TRUE TRUE $", cl)
  expect_line(o, "^RUN: 1 CompatFlowR/1 CompatFlowR TRUE TRUE TRUE TRUE $", cl)
  expect_line(o, "^RUNTAGS: date:[0-9-]+ runtime:dev user:alice $", cl)
  expect_line(o, "^STEPS: start branch_a branch_b join middle risky end $", cl)
  expect_line(o, "^SEED: 42 $", cl)
  expect_line(o, "Run Summary: 1", cl)
  expect_line(o, "^    Successful: +TRUE$", cl)
  expect_line(o, "^    Time: +[0-9.]+ (secs|mins)$", cl)
  expect_line(o, "^<RunClient CompatFlowR/1: completed", cl)
  expect_line(o, "^STEP: branch_a 1 CompatFlowR/1/branch_a TRUE TRUE $", cl)
  expect_line(o, "^STEPTAGS: TRUE $", cl)
  expect_line(o, "Step Summary: branch_a", cl)
  expect_line(o, "^TASK: TRUE TRUE branch_a TRUE dev TRUE $", cl)
  expect_line(o, "^ANIMAL: corgi $", cl)
  expect_line(o, "^MD: 0 local alice $", cl)
  expect_line(o, "Task Summary: ", cl)
  expect_line(o, "^RISKY: TRUE TRUE $", cl)
  expect_line(o, "^MF: 1 2 $", cl)
  expect_line(o, "^WITHTAGS: 1 0 $", cl)
  expect_line(o, "^BOB: Object not in namespace 'user:bob' $", cl)
  expect_line(o, "^BOBFLOW: Object not in namespace 'user:bob' $", cl)
  expect_line(o, "^BOBFLOWS: 0 $", cl)
  expect_line(o, "^GLOBAL: 1 1 $", cl)
  expect_line(o, "^DEFAULT: user:alice $", cl)
  expect_line(o, "^ELSEWHERE: Flow\\('CompatFlowR'\\) does not exist in local@", cl)
  expect_line(o, paste0("^RESET: local@", dir, "/.metaflow $"), cl)
})

test_that("required parameters refuse a run before anything is written", {
  dir <- new_workdir("compat-required")
  writeLines(c(
    'library(metaflow)',
    'metaflow("RequiredFlowR") %>%',
    '  parameter("dataset", required = TRUE, help = "which data") %>%',
    '  step(step = "start", next_step = "end") %>%',
    '  step(step = "end") %>%',
    '  run()'
  ), file.path(dir, "flow.R"))
  res <- run_flow(args = "run", workdir = dir)
  expect_failure_exit(res)
  expect_match(error_line(res), "missing required parameter --dataset")
  expect_false(dir.exists(mf_path(dir, "RequiredFlowR")))
  res <- run_flow(args = c("run", "--dataset", "d1"), workdir = dir)
  expect_exit(res, 0)
})

test_that("source() and run(...) in an R session take the same options", {
  dir <- new_workdir("compat-source")
  writeLines(c(
    'library(metaflow)',
    'start <- function(self) self$files <- sort(list.files(".", recursive = TRUE))',
    'end <- function(self) cat("tags:", current("tags"), "\\n")',
    'flow <- metaflow("SourcedFlowR") %>%',
    '  step(step = "start", r_function = start, next_step = "end") %>%',
    '  step(step = "end", r_function = end)'
  ), file.path(dir, "flow.R"))
  writeLines(c(
    'source("flow.R")',
    'id <- run(flow, max_workers = 2, tag = "from-r", package_suffixes = ".R,.csv",',
    '          metadata = "local", datastore = "local", other_args = "--tag other")',
    'cat("ID:", id, "\\n")',
    'r <- run_client$new("SourcedFlowR", id)',
    'cat("CODE:", r$code$files$path, "\\n")',
    'cat("USERTAGS:", sort(r$user_tags), "\\n")'
  ), file.path(dir, "session.R"))
  writeLines("a,b", file.path(dir, "data.csv"))
  res <- run_cmd(dir, "Rscript", "session.R")
  expect_exit(res, 0)
  expect_line(res$stdout, "^ID: 1 $", res)
  expect_line(res$stdout, task_line_re(1, "end", "tags: from-r other ?"), res)
  # The code package: the flow's folder's .R and .csv files.
  expect_line(res$stdout, "^CODE: data.csv flow.R session.R $", res)
  expect_line(res$stdout, "^USERTAGS: from-r other $", res)
})

test_that("test() runs a tiny flow and version_info() names the versions", {
  dir <- new_workdir("compat-selftest")
  res <- run_cmd(dir, "Rscript", c("-e", "ok <- metaflow::test(); metaflow::version_info(); cat('OK', ok, exists('HelloWorldFlow'), '\\n')"))
  expect_exit(res, 0)
  expect_line(res$stdout, "Your Metaflow installation looks good!", res)
  # (and no global HelloWorldFlow is left, though metaflow() makes one)
  expect_line(res$stdout, "^OK TRUE FALSE $", res)
  expect_line(res$stderr, "^metaflow works: the test flow ran", res)
  expect_line(res$stderr, "^Metaflow \\(R\\) [0-9.]+$", res)
  expect_line(res$stderr, "^metaflow-engine [0-9.]+", res)
  # Nothing is left in the working directory.
  expect_false(dir.exists(file.path(dir, ".metaflow")))
  # With no engine it says so, and returns FALSE.
  res <- run_cmd(dir, "Rscript", c("-e", "cat('OK', metaflow::test(), '\\n')"),
                 env = c(METAFLOW_ENGINE_BIN = "/nonexistent/metaflow-engine"))
  expect_exit(res, 0)
  expect_line(res$stdout, "^OK FALSE $", res)
  expect_line(res$stderr, "The metaflow test flow failed: METAFLOW_ENGINE_BIN", res)
})

test_that("a step reads another flow's run with the client, from a shared ~/.metaflow", {
  top <- new_workdir("compat-shared")
  dir.create(file.path(top, ".metaflow"))
  dir.create(file.path(top, "producer"))
  dir.create(file.path(top, "consumer"))
  writeLines(c(
    'library(metaflow)',
    'start <- function(self) self$stats <- data.frame(genre = c("a", "b"), median = c(2, 5))',
    'metaflow("ProducerFlowR") %>%',
    '  step(step = "start", r_function = start, next_step = "end") %>%',
    '  step(step = "end") %>% run()'
  ), file.path(top, "producer", "flow.R"))
  writeLines(c(
    'library(metaflow)',
    'start <- function(self) {',
    '  message("Using metadata provider: ", get_metadata())',
    '  flow <- flow_client$new("ProducerFlowR")',
    '  run <- run_client$new(flow, flow$latest_successful_run)',
    '  self$stats <- run$artifact("stats")',
    '  self$from <- run$pathspec',
    '}',
    'end <- function(self) cat("best:", self$stats$genre[which.max(self$stats$median)], "from", self$from, "\\n")',
    'metaflow("ConsumerFlowR") %>%',
    '  step(step = "start", r_function = start, next_step = "end") %>%',
    '  step(step = "end", r_function = end) %>% run()'
  ), file.path(top, "consumer", "flow.R"))
  p <- run_flow(args = "run", workdir = file.path(top, "producer"))
  expect_exit(p, 0)
  c <- run_flow(args = "run", workdir = file.path(top, "consumer"))
  expect_exit(c, 0)
  expect_line(c$stdout, task_line_re(1, "end", "best: b from ProducerFlowR/1 ?"), c)
  expect_line(c$stderr, paste0("Using metadata provider: local@", normalizePath(top), "/.metaflow"), c)
  # Both runs went to the shared folder.
  expect_true(file.exists(file.path(top, ".metaflow", "ConsumerFlowR", "1", "_run.json")))
  expect_false(dir.exists(file.path(top, "consumer", ".metaflow")))
})

test_that("a code package over 100 MB fails before anything runs, naming its largest files", {
  dir <- setup_flow("linearflow.R")
  con <- file(file.path(dir, "big.csv"), "wb")
  writeBin(raw(60 * 2^20), con)
  close(con)
  con <- file(file.path(dir, "bigger.csv"), "wb")
  writeBin(raw(45 * 2^20), con)
  close(con)
  res <- run_flow(NULL, c("--package-suffixes=.csv", "run"), workdir = dir)
  expect_failure_exit(res)
  expect_one_line_error(res, paste0("code package .* over the limit of 100 MB.*big\\.csv \\(60 MB\\).*",
                                    "bigger\\.csv \\(45 MB\\).*--package-suffixes"))
  expect_false(dir.exists(mf_path(dir, "LinearFlowR")))
  # Without the option a local run takes no package and runs.
  ok <- run_flow(NULL, "run", workdir = dir)
  expect_exit(ok, 0)
  unlink(file.path(dir, c("big.csv", "bigger.csv")))
})
