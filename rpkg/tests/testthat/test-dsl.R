test_that("metaflow() creates an empty flow", {
  f <- metaflow("HelloFlow")
  expect_s3_class(f, "metaflow_flow")
  expect_equal(f$name, "HelloFlow")
  expect_length(f$steps, 0)
  expect_error(metaflow(1), "single non-empty string")
  expect_error(metaflow(c("a", "b")), "single non-empty string")
})

test_that("step() records steps in order with their settings", {
  start <- function(self) self$x <- 1
  f <- metaflow("F") %>%
    step(decorator("retry", times = 3), decorator("catch", var = "err"),
         step = "start", r_function = start, next_step = c("a", "b")) %>%
    step(step = "a", next_step = "j", foreach = "x") %>%
    step(step = "j", join = TRUE)
  expect_equal(vapply(f$steps, `[[`, "", "name"), c("start", "a", "j"))
  s <- f$steps[[1]]
  expect_identical(s$r_function, start)
  expect_equal(s$next_step, c("a", "b"))
  expect_equal(vapply(s$decorators, `[[`, "", "name"), c("retry", "catch"))
  expect_equal(f$steps[[2]]$foreach, "x")
  expect_true(f$steps[[3]]$join)
  expect_null(f$steps[[3]]$r_function)
})

test_that("the native pipe works too", {
  f <- metaflow("F") |> step(step = "start", next_step = "end") |> step(step = "end")
  expect_length(f$steps, 2)
})

test_that("step() checks R types only", {
  f <- metaflow("F")
  expect_error(step(f, step = "start", r_function = "start"), "r_function must be a function")
  expect_error(step(f, step = c("a", "b")), "single non-empty string")
  expect_error(step(f), "needs a step name")
  expect_error(step(f, step = "a", next_step = 1), "next_step must be a character")
  expect_error(step(f, step = "a", join = NA), "join must be TRUE or FALSE")
  expect_error(step(f, step = "a", foreach = 1), "foreach must be")
  expect_error(step(f, "retry", step = "a"), "decorator\\(\\) objects")
  expect_error(step(list(), step = "a"), "created with metaflow")
  expect_error(step(f, decorator("retry"), step = "a", ), "trailing comma")
  # Graph problems (unknown next step, no end...) are left to the engine.
  expect_silent(step(f, step = "start", next_step = "nowhere"))
})

test_that("decorator() stores named args and formats them as text", {
  d <- decorator("retry", times = 3)
  expect_s3_class(d, "metaflow_decorator")
  expect_equal(d$args, list(times = 3))
  d2 <- decorator("resources", memory = 60000, cpu = 1, .list = list(gpu = 0L))
  expect_equal(names(d2$args), c("memory", "cpu", "gpu"))
  expect_equal(unname(decorator_arg_strings(d2$args)), c("60000", "1", "0"))
  expect_equal(unname(decorator_arg_strings(list(a = 100000, b = 0.5, c = TRUE, d = "x"))),
               c("100000", "0.5", "TRUE", "x"))
  expect_equal(format_decorator(d2), "@resources(memory=60000, cpu=1, gpu=0)")
  expect_output(print(decorator("catch")), "@catch")
  expect_error(decorator("retry", 3), "must be named")
  expect_error(decorator("retry", times = 1:2), "single string, number or logical")
  expect_error(decorator("retry", times = list(1)), "single string, number or logical")
})

test_that("parameter() records the type to convert to", {
  f <- metaflow("F") %>%
    parameter("alpha", default = 0.01, help = "rate") %>%
    parameter("n", default = 5L) %>%
    parameter("flag", is_flag = TRUE) %>%
    parameter("name", required = TRUE) %>%
    parameter("ids", default = 1L, separator = ",") %>%
    parameter("typed", type = "integer")
  types <- vapply(f$parameters, `[[`, "", "type")
  expect_equal(types, c("numeric", "integer", "logical", "character", "integer", "integer"))
  expect_false(f$parameters[[3]]$default)
  expect_true(f$parameters[[4]]$required)
  expect_error(parameter(f, "x", help = 1), "help must be")
  expect_error(parameter(f, "x", type = "complex"), "type must be one of")
  expect_error(parameter(f, "x", bogus = 1), "unused argument")
  expect_error(parameter(f, "max_workers"), "clashes with the run option")
  expect_equal(parameter(f, "x", default = function() 1)$parameters[[7]]$type, "character")
  expect_message(parameter(f, "alpha", default = 0.5), "replaces the parameter")
  expect_equal(f$parameters[[1]]$default, 0.5)
  parameter(f, "my_rate")
  expect_error(parameter(f, "my-rate"), "'my_rate' and 'my-rate' are both --my-rate")
})

test_that("print methods show the flow", {
  expect_output(print(example_flow()), "step start => a \\(foreach xs\\)")
})

test_that("current() is NULL outside a step, as in Metaflow; merge_artifacts() is an error", {
  expect_null(current("run_id"))
  expect_null(current("origin_run_id"))
  expect_null(current())
  expect_false(current("is_running_flow"))
  expect_null(current("tempdir"))
  expect_error(current("bogus"), "current\\(\"bogus\"\\) is unknown: use one of flow_name")
  expect_error(merge_artifacts(list(), list()), "only available inside a running join step")
})

test_that("the package's current() and merge_artifacts() call the task runtime in a task", {
  rt <- new.env()
  rt$current <- function(value) paste("runtime", value)
  rt$merge_artifacts <- function(flow, inputs, exclude = NULL, include = NULL) {
    list(flow = flow, inputs = inputs, exclude = exclude, include = include)
  }
  attach(rt, name = "metaflow:runtime", warn.conflicts = FALSE)
  on.exit(detach("metaflow:runtime", character.only = TRUE))
  expect_equal(metaflow::current("run_id"), "runtime run_id")
  m <- metaflow::merge_artifacts(flow = "self", list(1), exclude = list("x"), include = "y")
  expect_equal(m, list(flow = "self", inputs = list(1), exclude = list("x"), include = "y"))
})

test_that("a flow changes in place and is a global variable, as in Metaflow R", {
  on.exit(rm("NotebookFlow", envir = globalenv()))
  f <- metaflow("NotebookFlow")
  expect_identical(get("NotebookFlow", envir = globalenv()), f)
  # Chunk by chunk, without reassigning.
  f %>% parameter("alpha", default = 1)
  f %>% step(step = "start", next_step = "end")
  step(f, step = "end")
  expect_equal(vapply(NotebookFlow$steps, `[[`, "", "name"), c("start", "end"))
  expect_length(NotebookFlow$parameters, 1)
  # step() and parameter() return the flow invisibly (nothing printed at
  # the console), metaflow() visibly.
  expect_false(suppressMessages(withVisible(step(f, step = "end")))$visible)
  expect_false(suppressMessages(withVisible(parameter(f, "alpha")))$visible)
  expect_true(withVisible(metaflow("NotebookFlow"))$visible)
  # A chunk run again: the step is replaced, in its place, saying so.
  g <- metaflow("NotebookFlow") %>%
    step(step = "start", next_step = "end") %>%
    step(step = "end")
  expect_message(step(g, step = "start", next_step = "end", r_function = function(self) NULL),
                 "step 'start' replaces the step of that name already in flow NotebookFlow")
  expect_equal(vapply(g$steps, `[[`, "", "name"), c("start", "end"))
  expect_false(is.null(g$steps[[1]]$r_function))
  expect_equal(names(formals(metaflow)), c("cls", "..."))
  expect_error(metaflow(), "metaflow\\(\\) needs the flow's name")
})

test_that("the msgpack codec from the task runtime is loaded", {
  ns <- asNamespace("metaflow")
  expect_true(is.function(ns$mp_pack))
  expect_true(is.function(ns$mp_read))
})

test_that("environment vars = list(...) become one argument per variable", {
  d <- decorator("environment", vars = list(A = "1", B = 2))
  expect_equal(d$args, list(A = "1", B = "2"))
  d <- decorator("environment", vars = "{'A': 'x y', \"B\": 'it\\'s'}")
  expect_equal(d$args, list(A = "x y", B = "it's"))
  expect_error(decorator("environment", vars = list("x")), "named list")
})
