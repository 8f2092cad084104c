# Metaflow R's API, unchanged: decorator wrappers, parameter()'s signature,
# top-level options, namespaces and metadata.

test_that("decorator wrappers return decorators with Metaflow's arguments", {
  withr_env <- function(vars, code) {
    old <- Sys.getenv(names(vars), unset = NA, names = TRUE)
    do.call(Sys.setenv, as.list(vars))
    on.exit(for (k in names(old)) if (is.na(old[[k]])) Sys.unsetenv(k) else
      do.call(Sys.setenv, stats::setNames(list(old[[k]]), k)))
    force(code)
  }
  home <- tempfile("mfhome")
  dir.create(home)
  b <- withr_env(c(METAFLOW_HOME = home, METAFLOW_BATCH_JOB_QUEUE = "q1",
                   METAFLOW_ECS_S3_ACCESS_IAM_ROLE = "arn:role/s3",
                   METAFLOW_ECS_FARGATE_EXECUTION_ROLE = "arn:role/exec"),
                 batch(memory = 60000, cpu = 1))
  expect_s3_class(b, "metaflow_decorator")
  expect_s3_class(b, "decorator")
  expect_equal(b$name, "batch")
  expect_equal(b$args, list(cpu = 1, gpu = 0L, memory = 60000, queue = "q1",
                            iam_role = "arn:role/s3", execution_role = "arn:role/exec"))
  # Unset settings are left out, so the engine's defaults apply.
  b <- withr_env(c(METAFLOW_HOME = home, METAFLOW_BATCH_JOB_QUEUE = "",
                   METAFLOW_ECS_S3_ACCESS_IAM_ROLE = "", METAFLOW_ECS_FARGATE_EXECUTION_ROLE = ""),
                 batch(shared_memory = 256, max_swap = 512, swappiness = 10, image = "img"))
  expect_equal(b$args, list(cpu = 1L, gpu = 0L, memory = 4000L, image = "img",
                            shared_memory = 256, max_swap = 512, swappiness = 10))
  # The config file counts when the environment does not set a value.
  writeLines('{"METAFLOW_BATCH_JOB_QUEUE": "from-file", "OTHER": 3}', file.path(home, "config.json"))
  b <- withr_env(c(METAFLOW_HOME = home), {
    Sys.unsetenv(c("METAFLOW_BATCH_JOB_QUEUE", "METAFLOW_ECS_S3_ACCESS_IAM_ROLE",
                   "METAFLOW_ECS_FARGATE_EXECUTION_ROLE"))
    batch()
  })
  expect_equal(b$args$queue, "from-file")
  expect_equal(resources()$args, list(cpu = 1L, gpu = 0L, memory = 4000L))
  expect_equal(resources(cpu = 2, shared_memory = 64)$args$shared_memory, 64)
  expect_equal(retry()$args, list(times = 3L, minutes_between_retries = 2L))
  expect_equal(catch()$args, list(print_exception = TRUE))
  expect_equal(catch(var = "err", print_exception = FALSE)$args,
               list(var = "err", print_exception = FALSE))
  expect_equal(format_decorator(catch(var = "e", print_exception = FALSE)),
               "@catch(var=e, print_exception=FALSE)")
  e <- environment_variables(A = "x", N = 3, L = TRUE)
  expect_equal(e$name, "environment")
  expect_equal(e$args, list(A = "x", N = "3", L = "TRUE"))
  expect_error(environment_variables("x"), "must be named")
  expect_equal(decorator("catch", print_exception = FALSE, .convert_args = FALSE)$args,
               list(print_exception = FALSE))
  expect_error(decorator("retry", times = 1, times = 2), "given twice")
  # The step() DSL takes them like decorator().
  f <- metaflow("F") %>%
    step(batch(memory = 60000, cpu = 1), retry(times = 0), step = "start", next_step = "end") %>%
    step(step = "end")
  expect_equal(vapply(f$steps[[1]]$decorators, `[[`, "", "name"), c("batch", "retry"))
})

test_that("run(batch = TRUE) still means --with batch", {
  f <- metaflow("F") %>% step(step = "start", next_step = "end") %>% step(step = "end")
  o <- parse_r_args(list(batch = TRUE))
  expect_equal(o$with[[1]]$name, "batch")
  expect_equal(parse_r_args(list(batch = "kill", run_id = "4"))$batch_action, "kill")
})

test_that("parameter() has Metaflow's signature and types", {
  expect_equal(names(formals(parameter)),
               c("flow", "parameter", "required", "help", "separator", "default", "type", "is_flag"))
  f <- metaflow("F") %>%
    parameter("a", type = "int", default = "3") %>%
    parameter("b", type = "float") %>%
    parameter("c", type = "bool") %>%
    parameter("d", type = "str", default = 1) %>%
    parameter("e", TRUE, "help text") %>%
    parameter("flag", is_flag = TRUE) %>%
    parameter("words", separator = ",", default = "x,y") %>%
    parameter("seed", default = function() 42L)
  types <- vapply(f$parameters, `[[`, "", "type")
  expect_equal(types, c("integer", "numeric", "logical", "character", "character",
                        "logical", "character", "character"))
  expect_true(f$parameters[[5]]$required)
  expect_equal(f$parameters[[5]]$help, "help text")
  expect_error(parameter(f, "x", type = "complex"), "type must be one of")
  expect_error(parameter(f, "x", type = "str", is_flag = TRUE), "is_flag")
  expect_message(parameter(f, "a", type = "int", default = "4"), "replaces the parameter")
  expect_equal(f$parameters[[1]]$default, "4")
  expect_length(f$parameters, 8)
  # Values: given ones are converted, a function default is called once at
  # run time (not for show), a flag takes no value, a separator splits.
  calls <- 0
  g <- metaflow("G") %>%
    parameter("seed", default = function() { calls <<- calls + 1; 7L }) %>%
    parameter("ctx", default = function(ctx) paste(ctx$flow_name, ctx$parameter_name)) %>%
    parameter("flag", is_flag = TRUE) %>%
    parameter("words", separator = ",") %>%
    parameter("n", type = "int") %>%
    parameter("none")
  o <- parse_cli(c("run", "--flag", "--words", "a,b,c", "--n", "5"), g$parameters)
  v <- resolve_parameters(g$parameters, o$params, flow_name = "G")
  vals <- stats::setNames(lapply(v, `[[`, "value"), vapply(v, `[[`, "", "name"))
  expect_identical(vals$seed, 7L)
  expect_identical(vals$ctx, "G ctx")
  expect_identical(vals$flag, TRUE)
  expect_identical(vals$words, c("a", "b", "c"))
  expect_identical(vals$n, 5L)
  expect_null(vals$none)
  expect_false(v[[6]]$has_value)
  expect_equal(calls, 1)
  resolve_parameters(g$parameters, list(), check_required = FALSE)
  expect_equal(calls, 1)
  # A flag does not swallow the next word.
  expect_error(parse_cli(c("run", "--flag", "TRUE"), g$parameters), "unknown command|unexpected argument")
  expect_error(resolve_parameters(g$parameters, parse_cli(c("run", "--n", "x"), g$parameters)$params),
               "invalid value 'x' for --n: expected an integer")
  bad <- metaflow("B") %>% parameter("p", default = function() stop("no network"))
  expect_error(resolve_parameters(bad$parameters, list()), "the default of parameter 'p' failed: no network")
})

test_that("top-level options are understood", {
  o <- parse_cli(c("--package-suffixes=.R,.csv", "--datastore=s3", "--metadata=local",
                   "--no-pylint", "run", "--with", "batch", "--max-workers", "4"))
  expect_equal(o$command, "run")
  expect_equal(o$package_suffixes, c(".R", ".csv"))
  expect_equal(o$datastore, "s3")
  expect_equal(o$max_workers, 4L)
  o <- parse_cli(c("--package-suffixes", ".R", "--datastore", "local", "show"))
  expect_equal(o$package_suffixes, ".R")
  expect_equal(o$datastore, "local")
  expect_error(parse_cli(c("--datastore=gcs", "run")), "use local or s3")
  expect_error(parse_cli(c("--metadata=service", "run")), "only local is supported")
  expect_error(parse_cli(c("--no-pylint=1", "run")), "takes no value")
  r <- parse_r_args(list(package_suffixes = ".R,.csv", datastore = "local", metadata = "local",
                         max_workers = 4, batch = TRUE))
  expect_equal(r$package_suffixes, c(".R", ".csv"))
  m <- merge_run_options(r, parse_cli(c("--package-suffixes=.txt", "run")))
  expect_equal(m$package_suffixes, ".txt")
})

test_that("a code package is taken for Batch runs or when asked", {
  f <- metaflow("F") %>% step(step = "start", next_step = "end") %>% step(step = "end")
  fb <- metaflow("F") %>% step(batch(), step = "start", next_step = "end") %>% step(step = "end")
  expect_false(needs_code_package(f, parse_cli("run")))
  expect_true(needs_code_package(f, parse_cli(c("run", "--with", "batch"))))
  expect_true(needs_code_package(fb, parse_cli("run")))
  expect_true(needs_code_package(f, parse_cli(c("--package-suffixes=.R", "run"))))
})

test_that("namespaces follow Metaflow", {
  on.exit(set_default_namespace())
  user <- current_user()
  expect_equal(get_namespace(), paste0("user:", user))
  expect_null(set_namespace(NULL))
  expect_true(withVisible(set_namespace(NULL))$visible)
  expect_null(get_namespace())
  set_namespace("mytag")
  expect_equal(get_namespace(), "mytag")
  expect_equal(set_default_namespace(), paste0("user:", user))
  info <- list(user = "alice", tags = list("exp1"), created_at = "2026-11-30T10:00:00.000Z")
  expect_equal(run_tags(info), c("user:alice", "runtime:dev", "date:2026-11-30", "exp1"))
  expect_true(in_namespace(info, "user:alice"))
  expect_true(in_namespace(info, "exp1"))
  expect_true(in_namespace(info, NULL))
  expect_false(in_namespace(info, "user:bob"))
  expect_error(namespace_mismatch("user:bob"), "Object not in namespace 'user:bob'", fixed = TRUE)
})

test_that("metadata selects the datastore", {
  on.exit(reset_default_metadata())
  d <- tempfile("mfmeta")
  expect_equal(set_metadata(paste0("local@", d)),
               paste0("local@", normalizePath(file.path(d, ".metaflow"), mustWork = FALSE)))
  expect_equal(datastore_root(), normalizePath(file.path(d, ".metaflow"), mustWork = FALSE))
  expect_equal(set_metadata(file.path(d, ".metaflow")), get_metadata())
  expect_equal(set_metadata("s3@s3://bucket/prefix/"), "s3@s3://bucket/prefix")
  expect_equal(datastore_env(), c(METAFLOW_DEFAULT_DATASTORE = "s3",
                                  METAFLOW_DATASTORE_SYSROOT_S3 = "s3://bucket/prefix"))
  expect_error(set_metadata("service@http://x"), "metadata service is not used")
  expect_error(set_metadata("s3@bucket"), "expected s3@s3://bucket/prefix")
  expect_match(reset_default_metadata(), "^(local|s3)@")
})

test_that("helpers answer", {
  expect_match(container_image(), "^rocker/r-ver:[0-9]+\\.[0-9]+\\.[0-9]+$")
  expect_equal(r_version(), as.character(utils::packageVersion("metaflow")))
  loc <- metaflow_location()
  expect_true(dir.exists(loc$package))
  expect_equal(loc$wd, normalizePath(getwd()))
  expect_error(install_metaflow(), "not needed")
  expect_error(remove_metaflow_env(), "nothing to remove")
  expect_equal(gather_inputs(list(a = list(x = 1), b = list(x = 2)), "x"), list(1, 2))
})

test_that("orchestrators Metaflow R offered are refused clearly", {
  expect_error(parse_cli(c("step-functions", "create")), "'step-functions' is not supported")
  expect_error(parse_r_args(list(step_functions = "create")), "not supported")
})

test_that("the local datastore is the nearest .metaflow folder up from here, as in Metaflow", {
  old_env <- Sys.getenv("METAFLOW_DATASTORE_SYSROOT_LOCAL", unset = NA)
  Sys.unsetenv("METAFLOW_DATASTORE_SYSROOT_LOCAL")
  top <- normalizePath(tempfile("mfwalk"), mustWork = FALSE)
  dir.create(file.path(top, "a", "b", "c"), recursive = TRUE)
  old <- setwd(file.path(top, "a", "b", "c"))
  on.exit({
    setwd(old)
    if (!is.na(old_env)) Sys.setenv(METAFLOW_DATASTORE_SYSROOT_LOCAL = old_env)
  })
  expect_equal(datastore_root(), file.path(normalizePath(getwd()), ".metaflow"))
  dir.create(file.path(top, "a", ".metaflow"))
  expect_equal(datastore_root(), file.path(normalizePath(top), "a", ".metaflow"))
  Sys.setenv(METAFLOW_DATASTORE_SYSROOT_LOCAL = top)
  expect_equal(datastore_root(), file.path(normalizePath(top), ".metaflow"))
})

test_that("step functions that cannot take self (and inputs) are refused at once", {
  f <- metaflow("F")
  ok <- list(function(self) 1, function(self, ...) 1, function(...) 1, function(self, n = 2) 1)
  # (each step added under a new name: the same name again replaces it,
  # with a message)
  for (i in seq_along(ok)) {
    expect_silent(step(f, step = paste0("a", i), r_function = ok[[i]], next_step = "end"))
  }
  expect_silent(step(f, step = "j", r_function = function(self, inputs) 1, join = TRUE))
  expect_silent(step(f, step = "j2", r_function = function(a, b, c = 1) 1, join = TRUE))
  expect_error(step(f, step = "a", r_function = function() 1),
               "step 'a': r_function must take one argument \\(self\\), but its arguments are: none")
  expect_error(step(f, step = "a", r_function = function(self, inputs) 1),
               "add join = TRUE")
  expect_error(step(f, step = "j", r_function = function(self) 1, join = TRUE),
               "two arguments \\(self, inputs\\), as a join step, but its arguments are: self")
  expect_error(step(f, step = "a", r_function = function(x, y, z) 1), "arguments are: x, y, z")
  # Primitives and builtins are functions too.
  expect_silent(step(f, step = "p", r_function = print))
})

test_that("get_obj(), Metaflow R's Python object, is a clear error", {
  expect_error(metaflow_object$new()$get_obj(), "there is no Python here: use the client's own fields")
})

test_that("pull_tutorials() copies into ./tutorials, as Metaflow R", {
  expect_equal(formals(pull_tutorials)$dest, "tutorials")
})

test_that("summaries print in Metaflow R's columns", {
  out <- capture.output(summary_lines("Run Summary: 3", list(Successful = TRUE, `Finished at` = NULL,
                                                              Objects = c("x", "y"))))
  expect_match(out[1], "Run Summary: 3")
  # Values from column 28 (4 spaces + 23), a vector one element a line there.
  expect_equal(out[2], paste0("    Successful:", strrep(" ", 12), "TRUE"))
  expect_equal(trimws(out[3], "right"), "    Finished at:")
  expect_equal(out[4], paste0("    Objects:", strrep(" ", 15), "x"))
  expect_equal(out[5], paste0(strrep(" ", 27), "y"))
  # A flow's summary: from column 30.
  out <- capture.output(summary_lines("Flow Summary: F", list(`Latest Successful Run` = 1), width = 25L))
  expect_equal(out[2], paste0("    Latest Successful Run:", strrep(" ", 3), "1"))
})
