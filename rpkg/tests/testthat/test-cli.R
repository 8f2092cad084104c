params <- example_flow()$parameters

cli <- function(...) parse_cli(c(...), params)
opts <- function(cli_args = character(0), r_args = list()) {
  r <- parse_r_args(r_args, params)
  merge_run_options(r, parse_cli(cli_args, params,
                                 default_command = if (is.null(r$command)) "run" else r$command))
}

test_that("no arguments means run with defaults", {
  o <- opts()
  expect_equal(o$command, "run")
  expect_null(o$max_workers)
  expect_null(o$max_num_splits)
  expect_length(o$with, 0)
  expect_length(o$params, 0)
})

test_that("run options are parsed", {
  o <- cli("run", "--max-workers", "32", "--max-num-splits=200", "--tag", "a",
           "--tag=b", "--with", "retry", "--with", "timeout:seconds=30",
           "--with=catch:var=err")
  expect_equal(o$command, "run")
  expect_identical(o$max_workers, 32L)
  expect_identical(o$max_num_splits, 200L)
  expect_equal(o$tags, c("a", "b"))
  expect_equal(vapply(o$with, `[[`, "", "name"), c("retry", "timeout", "catch"))
  expect_equal(o$with[[2]]$args, list(seconds = "30"))
  expect_equal(o$with[[3]]$args, list(var = "err"))
  # The command is optional; options may come first.
  expect_null(cli("--max-workers", "3")$command)
  expect_equal(cli("--max-workers", "3", "run")$command, "run")
  # _ and - are interchangeable.
  expect_identical(cli("--max_workers", "3")$max_workers, 3L)
})

test_that("--with takes several key=value pairs", {
  d <- parse_with_spec("retry:times=3,minutes_between_retries=0")
  expect_equal(d$args, list(times = "3", minutes_between_retries = "0"))
  expect_equal(parse_with_spec("environment:vars=a=b")$args, list(vars = "a=b"))
  expect_error(parse_with_spec("retry:times"), "invalid --with value 'retry:times'")
  expect_error(parse_with_spec("retry:"), "invalid --with value")
  expect_error(parse_with_spec("1retry"), "invalid --with value")
})

test_that("bad option values are rejected in R", {
  expect_error(cli("run", "--max-workers", "abc"),
               "invalid value 'abc' for --max-workers: expected an integer")
  expect_error(cli("run", "--max-num-splits", "1.5"), "expected an integer")
  expect_error(cli("run", "--max-workers"), "option --max-workers needs a value")
  expect_error(cli("run", "--tag", "--max-workers", "1"), "option --tag needs a value")
  # Range checks (0, negative) are the engine's.
  expect_identical(cli("run", "--max-workers", "0")$max_workers, 0L)
  expect_identical(cli("run", "--max-workers", "-1")$max_workers, -1L)
})

test_that("unknown options and commands are errors", {
  expect_error(cli("run", "--foo"), "unknown option '--foo' for 'run'; see --help", fixed = TRUE)
  expect_error(cli("--foo"), "unknown option '--foo' for 'run'; see --help", fixed = TRUE)
  expect_error(cli("resume", "--foo=1"), "unknown option '--foo' for 'resume'", fixed = TRUE)
  expect_error(cli("run", "-x"), "unknown option '-x' for 'run'", fixed = TRUE)
  expect_error(cli("frobnicate"), "unknown command 'frobnicate'; see --help", fixed = TRUE)
  expect_error(cli("run", "extra"), "unexpected argument 'extra' for 'run'", fixed = TRUE)
  expect_error(cli("run", "--origin-run-id", "3"),
               "unknown option '--origin-run-id' for 'run'", fixed = TRUE)
  expect_error(cli("logs", "15/end", "--max-workers", "2"),
               "unknown option '--max-workers' for 'logs'", fixed = TRUE)
  expect_error(cli("logs", "15/end", "--alpha=2"), "unknown option '--alpha' for 'logs'",
               fixed = TRUE)
})

test_that("flow parameters are taken as --name value", {
  o <- cli("run", "--alpha", "0.5", "--epochs=3", "--learning-rate", "1e-3", "--label", "-x")
  expect_equal(o$params$alpha$value, "0.5")
  expect_equal(o$params$alpha$label, "--alpha")
  expect_equal(o$params$epochs$value, "3")
  expect_equal(o$params$learning_rate$value, "1e-3")
  expect_equal(o$params$label$value, "-x")
  expect_equal(cli("--learning_rate", "2")$params$learning_rate$value, "2")
  # A logical parameter works as a flag, or takes a logical value.
  expect_identical(cli("run", "--verbose")$params$verbose$value, TRUE)
  expect_identical(cli("run", "--verbose", "--alpha", "1")$params$verbose$value, TRUE)
  expect_equal(cli("run", "--verbose", "false")$params$verbose$value, "false")
  expect_equal(cli("run", "--verbose=no")$params$verbose$value, "no")
  expect_error(cli("run", "--alpha"), "option --alpha needs a value")
})

test_that("resume, logs, show and help are parsed", {
  o <- cli("resume")
  expect_equal(o$command, "resume")
  expect_null(o$resume_step)
  o <- cli("resume", "train", "--origin-run-id", "15", "--max-workers", "2")
  expect_equal(o$resume_step, "train")
  expect_equal(o$origin_run_id, "15")
  expect_identical(o$max_workers, 2L)
  expect_error(cli("resume", "a", "b"), "unexpected argument 'b' for 'resume'")
  o <- cli("logs", "15/end")
  expect_equal(o$command, "logs")
  expect_equal(o$logs, "15/end")
  expect_error(cli("logs"), "logs needs one argument")
  expect_equal(cli("show")$command, "show")
  expect_equal(cli("show", "--with", "retry")$with[[1]]$name, "retry")
  for (h in list("help", "--help", "-h", c("run", "--foo", "--help"), c("run", "-h"))) {
    expect_equal(cli(h)$command, "help")
  }
})

test_that("--with batch and run(batch = TRUE) ask for AWS Batch", {
  expect_equal(cli("run", "--with", "batch")$with[[1]]$name, "batch")
  d <- cli("run", "--with", "batch:cpu=4,queue=q")$with[[1]]
  expect_equal(d$name, "batch")
  expect_equal(d$args, list(cpu = "4", queue = "q"))
  expect_equal(parse_r_args(list(batch = TRUE), params)$with[[1]]$name, "batch")
  expect_length(parse_r_args(list(batch = FALSE), params)$with, 0)
  expect_equal(vapply(parse_r_args(list(with = c("retry", "batch")), params)$with, `[[`, "", "name"),
               c("retry", "batch"))
  expect_error(parse_r_args(list(batch = NA), params), "batch must be TRUE or FALSE", fixed = TRUE)
})

test_that("batch list|kill and their options are parsed on the command line", {
  o <- cli("batch", "list")
  expect_equal(c(o$command, o$batch_action), c("batch", "list"))
  expect_null(o$my_runs)
  expect_null(o$run_id)
  expect_null(o$batch_user)
  o <- cli("batch", "kill", "--my-runs")
  expect_equal(o$batch_action, "kill")
  expect_true(o$my_runs)
  expect_equal(cli("batch", "kill", "--run-id", "456")$run_id, "456")
  expect_equal(cli("batch", "kill", "--run-id=456")$run_id, "456")
  expect_equal(cli("batch", "list", "--user", "savin")$batch_user, "savin")
  # Options may come before the action.
  o <- cli("batch", "--user", "savin", "--run-id", "3", "kill")
  expect_equal(c(o$batch_action, o$batch_user, o$run_id), c("kill", "savin", "3"))
  expect_error(cli("batch"), "batch needs list or kill", fixed = TRUE)
  expect_error(cli("batch", "stop"), "batch needs list or kill (batch list, batch kill), got 'stop'",
               fixed = TRUE)
  expect_error(cli("batch", "list", "extra"), "unexpected argument 'extra' for 'batch'", fixed = TRUE)
  expect_error(cli("batch", "kill", "--run-id", "abc"),
               "invalid value 'abc' for --run-id: expected a run id", fixed = TRUE)
  expect_error(cli("batch", "kill", "--run-id"), "option --run-id needs a value", fixed = TRUE)
  expect_error(cli("batch", "kill", "--my-runs=yes"), "--my-runs takes no value", fixed = TRUE)
  expect_error(cli("batch", "kill", "--my-runs", "--user", "x"),
               "--my-runs and --user are mutually exclusive", fixed = TRUE)
  expect_error(cli("batch", "kill", "--my-runs", "--run-id", "4"),
               "--my-runs and --run-id are mutually exclusive", fixed = TRUE)
  expect_error(cli("batch", "list", "--max-workers", "2"),
               "unknown option '--max-workers' for 'batch'", fixed = TRUE)
  # The batch options belong to batch only.
  expect_error(cli("run", "--my-runs"), "unknown option '--my-runs' for 'run'", fixed = TRUE)
  expect_error(cli("run", "--run-id", "3"), "unknown option '--run-id' for 'run'", fixed = TRUE)
})

test_that("run(batch = \"list\"|\"kill\") and its options are parsed in R", {
  r <- parse_r_args(list(batch = "list"), params)
  expect_equal(c(r$command, r$batch_action), c("batch", "list"))
  expect_length(r$with, 0)
  r <- parse_r_args(list(batch = "kill", my_runs = TRUE), params)
  expect_equal(r$batch_action, "kill")
  expect_true(r$my_runs)
  expect_equal(parse_r_args(list(batch = "kill", run_id = "456"), params)$run_id, "456")
  expect_equal(parse_r_args(list(batch = "kill", run_id = 456), params)$run_id, "456")
  expect_equal(parse_r_args(list(batch = "kill", user = "savin"), params)$batch_user, "savin")
  expect_null(parse_r_args(list(batch = "list", my_runs = FALSE), params)$my_runs)
  expect_error(parse_r_args(list(batch = "stop"), params),
               "batch must be TRUE or FALSE (run on AWS Batch), or \"list\" or \"kill\"", fixed = TRUE)
  expect_error(parse_r_args(list(batch = "kill", run_id = "x1"), params),
               "invalid value 'x1' for run_id", fixed = TRUE)
  expect_error(parse_r_args(list(batch = "kill", my_runs = TRUE, user = "u"), params),
               "my_runs and user are mutually exclusive", fixed = TRUE)
  expect_error(parse_r_args(list(batch = "kill", my_runs = TRUE, run_id = "3"), params),
               "my_runs and run_id are mutually exclusive", fixed = TRUE)
  expect_error(parse_r_args(list(batch = "list", user = ""), params), "user must be a user name",
               fixed = TRUE)
  expect_error(parse_r_args(list(run_id = "3"), params),
               "run_id only applies to run(batch = \"list\")", fixed = TRUE)
  expect_error(parse_r_args(list(batch = "list", show = TRUE), params), "only one of")
  # A flow parameter named user stays a parameter outside batch list|kill.
  f <- metaflow("F") %>% parameter("user", default = "x")
  expect_equal(parse_r_args(list(user = "y"), f$parameters)$params$user$value, "y")
  expect_equal(parse_cli(c("run", "--user", "y"), f$parameters)$params$user$value, "y")
  expect_equal(parse_cli(c("batch", "list", "--user", "y"), f$parameters)$batch_user, "y")
  # The command line wins; a different command drops the R batch options.
  o <- opts(c("batch", "kill"), list(batch = "list", run_id = "3"))
  expect_equal(c(o$command, o$batch_action, o$run_id), c("batch", "kill", "3"))
  o <- opts("--my-runs", list(batch = "list"))
  expect_equal(o$command, "batch")
  expect_true(o$my_runs)
  o <- opts("show", list(batch = "kill", user = "u"))
  expect_equal(o$command, "show")
  expect_null(o$batch_user)
})

test_that("batch list|kill requests select the latest run, a run or a user's runs", {
  f <- metaflow("BatchListFlowR")
  withr::local_envvar(METAFLOW_USER = "alice")
  req <- function(...) batch_jobs_request(f, opts(c(...)))
  r <- req("batch", "list")
  expect_equal(r[c("flow", "run_id", "user", "all_runs", "kill")],
               list(flow = "BatchListFlowR", run_id = "", user = "alice", all_runs = FALSE, kill = FALSE))
  r <- req("batch", "kill", "--my-runs")
  expect_equal(r[c("run_id", "user", "all_runs", "kill")],
               list(run_id = "", user = "alice", all_runs = TRUE, kill = TRUE))
  r <- req("batch", "kill", "--run-id", "456")
  expect_equal(r[c("run_id", "user", "all_runs")], list(run_id = "456", user = "alice", all_runs = FALSE))
  r <- req("batch", "kill", "--user", "savin")
  expect_equal(r[c("run_id", "user", "all_runs")], list(run_id = "", user = "savin", all_runs = TRUE))
  r <- req("batch", "list", "--user", "savin", "--run-id", "7")
  expect_equal(r[c("run_id", "user", "all_runs")], list(run_id = "7", user = "savin", all_runs = FALSE))
  expect_true(startsWith(r$datastore_root, "/"))
  # The request encodes as the engine expects.
  expect_identical(proto_decode(proto_encode(r, "BatchJobsRequest"), "BatchJobsRequest")[names(r)], r)
})

test_that("batch list|kill print one line per job and a summary", {
  job <- function(id, step, task, run, status = "RUNNING", attempt = 0L, error = "") {
    list(job_id = id, name = "", status = status, run_id = run, step = step, task_id = task,
         user = "alice", attempt = attempt, error = error)
  }
  req <- list(all_runs = FALSE, kill = FALSE, user = "alice")
  res <- list(jobs = list(job("1234-abcd", "start", "1", "15"),
                          job("5678-ef", "work", "3", "15", "RUNNABLE", attempt = 1L)),
              killed = 0L, run_id = "15")
  expect_equal(format_batch_jobs("F", req, res)$out, c(
    "Job 1234-abcd (step start, task 1, run 15) is RUNNING",
    "Job 5678-ef (step work, task 3, run 15, attempt 1) is RUNNABLE",
    "2 running AWS Batch jobs for flow F run 15."))
  expect_equal(format_batch_jobs("F", req, list(jobs = list(), killed = 0L, run_id = "15"))$out,
               "No running AWS Batch jobs for flow F run 15.")
  req$all_runs <- TRUE
  expect_equal(format_batch_jobs("F", req, list(jobs = list(), killed = 0L, run_id = ""))$out,
               "No running AWS Batch jobs for flow F, runs of user alice.")
  req$kill <- TRUE
  res$jobs[[2]]$error <- "terminate job 5678-ef: denied"
  res$killed <- 1L
  got <- format_batch_jobs("F", req, res)
  expect_equal(got$out, c("Killing job 1234-abcd (step start, task 1, run 15) (was RUNNING)",
                          "Killed 1 AWS Batch job of flow F, runs of user alice."))
  expect_equal(got$err, "Could not kill job 5678-ef (step work, task 3, run 15, attempt 1): terminate job 5678-ef: denied")
})

test_that("an interrupt reports the tasks it ended and the jobs it could not stop", {
  job <- function(id, ended, error = "", task = "2") {
    list(job_id = id, step = "work", task_id = task, attempt = 0L, executor = "AWS Batch",
         decorator = "batch", ended = ended, error = error)
  }
  # Nothing left running: one line, counting what ended.
  expect_equal(format_cancel_report("12", list(killed_tasks = 2L, jobs = list())),
               "Run 12 interrupted: ended 2 task(s).")
  expect_equal(format_cancel_report("12", list(killed_tasks = 3L, jobs = list(job("a", TRUE), job("b", TRUE)))),
               "Run 12 interrupted: ended 3 task(s) (2 of them AWS Batch job(s), terminated).")
  # Jobs that could not be stopped are listed (never counted), with the
  # command that ends them as the user would type it.
  cause <- "TerminateJob failed for 30s: the AWS Batch API could not be reached"
  res <- list(killed_tasks = 2L, jobs = list(job("job-1", FALSE, cause), job("job-2", TRUE),
                                             job("job-3", FALSE, cause, "4")))
  got <- format_cancel_report("12", res, interactive = TRUE)
  expect_equal(got, paste0(
    "Run 12 interrupted: ended 2 task(s) (1 of them AWS Batch job(s), terminated); ",
    "2 AWS Batch job(s) could not be stopped (", cause, "): job-1, job-3. ",
    "They run until they end or reach their timeout. End them with: ",
    'run(batch = "kill", run_id = "12")'))
  got <- format_cancel_report("12", res, interactive = FALSE)
  expect_match(got, "End them with: Rscript \\S+ batch kill --run-id 12$")
  # Different causes are all given, once each.
  res$jobs[[3]]$error <- "AWS Batch answered AccessDeniedException: no"
  expect_match(format_cancel_report("12", res), paste0("(", cause, "; AWS Batch answered AccessDeniedException: no)"),
               fixed = TRUE)
  # The response decodes as the engine sends it.
  enc <- proto_encode(list(killed_tasks = 1L, jobs = list(job("job-1", FALSE, cause))), "CancelRunResponse")
  dec <- proto_decode(enc, "CancelRunResponse")
  expect_equal(dec$jobs[[1]]$job_id, "job-1")
  expect_false(dec$jobs[[1]]$ended)
  expect_equal(dec$jobs[[1]]$error, cause)
})

test_that("a parameter whose name starts with batch is just a parameter", {
  f <- metaflow("F") %>% parameter("batch_size", default = 8L)
  r <- parse_r_args(list(batch_size = 32L), f$parameters)
  expect_identical(r$params$batch_size$value, 32L)
})

test_that("run() arguments in R are parsed", {
  r <- parse_r_args(list(max_workers = 32, max_num_splits = 200L, tag = c("a", "b"),
                         with = c("retry", "catch:var=err"), alpha = 0.1), params)
  expect_identical(r$max_workers, 32L)
  expect_identical(r$max_num_splits, 200L)
  expect_equal(r$tags, c("a", "b"))
  expect_equal(vapply(r$with, `[[`, "", "name"), c("retry", "catch"))
  expect_equal(r$params$alpha$value, 0.1)
  r <- parse_r_args(list(with = list(decorator("retry", times = 2))), params)
  expect_equal(r$with[[1]]$args, list(times = 2))
  expect_equal(parse_r_args(list(resume = TRUE), params)$command, "resume")
  r <- parse_r_args(list(resume = "train", origin_run_id = 15), params)
  expect_equal(r$resume_step, "train")
  expect_equal(r$origin_run_id, "15")
  expect_null(parse_r_args(list(resume = FALSE), params)$command)
  expect_equal(parse_r_args(list(logs = "15/end"), params)$logs, "15/end")
  expect_equal(parse_r_args(list(show = TRUE), params)$command, "show")
  expect_equal(parse_r_args(list(help = TRUE, show = TRUE), params)$command, "help")
  expect_equal(parse_r_args(list(learning_rate = 2), params)$params$learning_rate$value, 2)
})

test_that("bad run() arguments are errors", {
  expect_error(parse_r_args(list(max_workers = 2.5), params),
               "invalid value '2.5' for max_workers: expected an integer")
  expect_error(parse_r_args(list(max_workers = "abc"), params), "expected an integer")
  expect_error(parse_r_args(list(foo = 1), params),
               "unknown argument 'foo' for run(): not a run option nor a parameter", fixed = TRUE)
  expect_error(parse_r_args(list(1), params), "must be named")
  expect_error(parse_r_args(list(show = TRUE, resume = TRUE), params), "only one of")
  expect_error(parse_r_args(list(origin_run_id = "3"), params), "only applies when resuming")
  expect_error(parse_r_args(list(resume = 1), params), "resume must be TRUE or the name")
  expect_error(parse_r_args(list(tag = 1), params), "tag must be a character vector")
  expect_error(run_main(NULL, list(max_workers = 2), character(0), FALSE), "needs a flow")
})

test_that("the command line wins over run() arguments", {
  o <- opts(c("--max-workers", "8", "--alpha", "0.2", "--tag", "cli",
              "--with", "retry:times=5"),
            list(max_workers = 4, max_num_splits = 50, alpha = 0.1, epochs = 2L,
                 tag = "r", with = c("retry", "catch")))
  expect_equal(o$command, "run")
  expect_identical(o$max_workers, 8L)
  expect_identical(o$max_num_splits, 50L)
  expect_equal(o$params$alpha$value, "0.2")
  expect_equal(o$params$epochs$value, 2L)
  expect_equal(o$tags, c("r", "cli"))
  # --with retry:times=5 replaces run(with = "retry"); catch stays.
  expect_equal(vapply(o$with, `[[`, "", "name"), c("catch", "retry"))
  expect_equal(o$with[[2]]$args, list(times = "5"))
  # A command on the command line replaces the one of run().
  o <- opts("run", list(resume = "train", origin_run_id = "3"))
  expect_equal(o$command, "run")
  expect_null(o$resume_step)
  expect_null(o$origin_run_id)
  o <- opts(c("--origin-run-id", "7"), list(resume = "train"))
  expect_equal(o$command, "resume")
  expect_equal(o$resume_step, "train")
  expect_equal(o$origin_run_id, "7")
  expect_equal(opts(character(0), list(show = TRUE))$command, "show")
  o <- opts(character(0), list(logs = "15/end"))
  expect_equal(o$command, "logs")
  expect_equal(o$logs, "15/end")
  o <- opts(character(0), list(resume = "b", origin_run_id = "2"))
  expect_equal(c(o$command, o$resume_step, o$origin_run_id), c("resume", "b", "2"))
  expect_equal(opts("logs 1/end" |> strsplit(" ") |> unlist(), list(show = TRUE))$logs, "1/end")
})

test_that("logs takes --attempt, --stdout, --stderr and --both; --timestamps says why not", {
  o <- cli("logs", "15/train", "--attempt", "0", "--stderr")
  expect_equal(c(o$command, o$logs), c("logs", "15/train"))
  expect_identical(o$logs_attempt, 0L)
  expect_equal(o$logs_streams, "stderr")
  expect_equal(cli("logs", "15/train", "--attempt=2")$logs_attempt, 2L)
  expect_null(cli("logs", "15/train")$logs_attempt)
  expect_null(cli("logs", "15/train")$logs_streams)
  expect_equal(cli("logs", "15/train", "--stdout", "--both")$logs_streams, c("stdout", "stderr"))
  expect_error(cli("logs", "15/train", "--attempt", "-1"), "attempts count from 0")
  expect_error(cli("logs", "15/train", "--attempt", "x"), "invalid value 'x' for --attempt")
  expect_error(cli("logs", "15/train", "--stderr=yes"), "takes no value")
  expect_error(cli("logs", "15/train", "--timestamps"), "logs --timestamps is not available")
  # Only logs has them.
  expect_error(cli("run", "--attempt", "1"), "unknown option '--attempt' for 'run'")
  # In R: run(logs = ..., other_args = "--attempt 0").
  o <- opts(c("--attempt", "0"), list(logs = "15/train"))
  expect_equal(c(o$command, o$logs), c("logs", "15/train"))
  expect_identical(o$logs_attempt, 0L)
})
