run_opts <- function(cli_args = character(0), r_args = list(), flow = example_flow()) {
  r <- parse_r_args(r_args, flow$parameters)
  merge_run_options(r, parse_cli(cli_args, flow$parameters,
                                 default_command = if (is.null(r$command)) "run" else r$command))
}

test_that("the RunRequest describes steps, parameters and options", {
  local_envvars(METAFLOW_USER = "alice", METAFLOW_DATASTORE_SYSROOT_LOCAL = tempdir())
  flow <- example_flow()
  req <- build_run_request(flow, run_opts(c("--alpha", "0.5", "--with", "retry:times=2",
                                            "--tag", "t1", "--max-workers", "4")))
  expect_equal(req$flow$name, "ExampleFlow")
  st <- req$flow$steps
  expect_equal(vapply(st, `[[`, "", "name"), c("start", "a", "join", "end"))
  expect_equal(st[[1]]$`next`, "a")
  expect_equal(st[[1]]$foreach, "xs")
  expect_equal(st[[1]]$decorators[[1]],
               list(name = "retry", args = list(list(key = "times", value = "3"))))
  expect_true(st[[3]]$join)
  expect_equal(st[[4]]$`next`, character(0))
  ps <- req$flow$parameters
  expect_equal(vapply(ps, `[[`, "", "name"),
               c("alpha", "epochs", "verbose", "label", "learning_rate"))
  expect_true(all(vapply(ps, `[[`, NA, "has_value")))
  expect_identical(ps[[1]]$value, mp_pack(0.5))
  expect_identical(ps[[2]]$value, mp_pack(10L))
  expect_equal(ps[[1]]$help, "learning rate")
  o <- req$options
  expect_identical(o$max_workers, 4L)
  expect_identical(o$max_num_splits, 100L)
  expect_equal(o$tags, "t1")
  expect_equal(o$with[[1]], list(name = "retry", args = list(list(key = "times", value = "2"))))
  expect_false(o$resume)
  expect_equal(o$user, "alice")
  expect_equal(o$datastore_root, normalizePath(file.path(tempdir(), ".metaflow"), mustWork = FALSE))
  expect_equal(o$rscript, file.path(R.home("bin"), "Rscript"))
  expect_equal(o$workdir, getwd())
  # The request goes through the protobuf codec.
  expect_gt(length(proto_encode(req, "RunRequest")), 100)
})

test_that("resume options reach the request", {
  req <- build_run_request(example_flow(),
                           run_opts(c("resume", "a", "--origin-run-id", "15")))
  expect_true(req$options$resume)
  expect_equal(req$options$resume_step, "a")
  expect_equal(req$options$origin_run_id, "15")
  req <- build_run_request(example_flow(), run_opts(r_args = list(resume = TRUE)))
  expect_true(req$options$resume)
  expect_equal(req$options$resume_step, "")
})

test_that("the code bundle has step functions, globals and packages", {
  env <- new.env(parent = globalenv())
  local(envir = env, {
    helper <- function(x) x + 1
    threshold <- 42
    start <- function(self) self$x <- helper(threshold)
    the_flow <- metaflow("CodeFlow") %>%
      step(step = "start", r_function = start, next_step = "end") %>%
      step(step = "end")
  })
  bundle <- unserialize(code_bundle(env$the_flow))
  expect_equal(names(bundle), c("functions", "globals", "packages"))
  expect_equal(names(bundle$functions), c("start", "end"))
  # A step without a function gets a no-op that does not need this package.
  expect_identical(environment(bundle$functions$end), globalenv())
  expect_null(bundle$functions$end(list()))
  expect_equal(body(bundle$functions$start), body(env$start))
  expect_equal(bundle$globals$threshold, 42)
  expect_true(is.function(bundle$globals$helper))
  expect_false("the_flow" %in% names(bundle$globals))
  expect_false(any(vapply(bundle$globals, inherits, NA, "metaflow_flow")))
  expect_false("metaflow" %in% bundle$packages)
  expect_false("stats" %in% bundle$packages)
  expect_true("testthat" %in% bundle$packages)
})

test_that("validation requests leave out the code and required values", {
  f <- metaflow("F") %>% parameter("name", required = TRUE) %>% step(step = "start")
  req <- build_run_request(f, run_opts(flow = f), validate_only = TRUE)
  expect_length(req$flow$code, 0)
  expect_false(req$flow$parameters[[1]]$has_value)
  expect_error(build_run_request(f, run_opts(flow = f)), "missing required parameter --name")
})

test_that("help covers commands, options and the flow's parameters", {
  out <- capture.output(run_main(example_flow(), list(), "--help", FALSE))
  txt <- paste(out, collapse = "\n")
  for (s in c("run", "resume [STEP]", "logs RUN/STEP[/TASK]", "show", "--max-workers N",
              "--max-num-splits N", "--tag TAG", "--with DECO", "--origin-run-id",
              "--NAME VALUE", "run(max_workers = 32)", "run(max_num_splits = 200)",
              "run(tag = c(\"a\", \"b\"))", "origin_run_id = \"15\"", "run(logs = \"15/end\")",
              "run(show = TRUE)", "run(resume = TRUE)", "Parameters of ExampleFlow",
              "--alpha", "default 0.01", "learning rate", "--learning-rate",
              "AWS Batch")) {
    expect_true(grepl(s, txt, fixed = TRUE), info = s)
  }
  expect_equal(capture.output(run_main(example_flow(), list(help = TRUE), character(0), TRUE)), out)
  expect_output(run_main(NULL, list(), "help", FALSE), "Usage:")
  expect_output(run_main(example_flow(), list(), c("run", "-h"), FALSE), "Commands:")
})

test_that("show lays the steps out like Metaflow", {
  flow <- example_flow()
  lines <- format_flow(flow, c("start", "a", "join", "end"), list(decorator("catch")))
  expect_true("Step start" %in% lines)
  expect_true("    @retry(times=3)" %in% lines)
  expect_true("    => a  (foreach over self$xs)" %in% lines)
  expect_true("Step join  (join)" %in% lines)
  expect_true("    => end" %in% lines)
  expect_true("With every step: @catch" %in% lines)
  expect_true(which(lines == "Step a") < which(lines == "Step join  (join)"))
})
