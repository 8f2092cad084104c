flow <- example_flow()
p <- function(name) Filter(function(x) x$name == name, flow$parameters)[[1]]

test_that("text values are converted to the type of the default", {
  expect_identical(convert_parameter("0.5", p("alpha"), "--alpha"), 0.5)
  expect_identical(convert_parameter("1e-3", p("alpha"), "--alpha"), 1e-3)
  expect_identical(convert_parameter("3", p("epochs"), "--epochs"), 3L)
  expect_identical(convert_parameter("-3", p("epochs"), "--epochs"), -3L)
  expect_identical(convert_parameter("true", p("verbose"), "--verbose"), TRUE)
  expect_identical(convert_parameter("F", p("verbose"), "--verbose"), FALSE)
  expect_identical(convert_parameter("no", p("verbose"), "--verbose"), FALSE)
  expect_identical(convert_parameter("hello", p("label"), "--label"), "hello")
  expect_identical(convert_parameter("NA", p("alpha"), "--alpha"), NA_real_)
})

test_that("bad values give a clear error naming the flag", {
  expect_error(convert_parameter("abc", p("alpha"), "--alpha"),
               "invalid value 'abc' for --alpha: expected a number", fixed = TRUE)
  expect_error(convert_parameter("1.5", p("epochs"), "--epochs"),
               "invalid value '1.5' for --epochs: expected an integer", fixed = TRUE)
  expect_error(convert_parameter("99999999999", p("epochs"), "--epochs"), "expected an integer")
  expect_error(convert_parameter("maybe", p("verbose"), "--verbose"),
               "invalid value 'maybe' for --verbose: expected TRUE or FALSE", fixed = TRUE)
  expect_error(convert_parameter("abc", p("alpha"), "alpha"),
               "invalid value 'abc' for alpha: expected a number", fixed = TRUE)
})

test_that("R values are used as given", {
  expect_identical(convert_parameter(c(1, 2, 3), p("alpha"), "alpha"), c(1, 2, 3))
  expect_identical(convert_parameter(list(a = 1), p("label"), "label"), list(a = 1))
})

test_that("a separator splits text values", {
  f <- metaflow("F") %>% parameter("ids", default = 1L, separator = ",")
  expect_identical(convert_parameter("1,2,3", f$parameters[[1]], "--ids"), 1:3)
  expect_error(convert_parameter("1,x", f$parameters[[1]], "--ids"),
               "invalid value 'x' for --ids")
})

test_that("resolved values use defaults and enforce required parameters", {
  f <- metaflow("F") %>%
    parameter("alpha", default = 0.01) %>%
    parameter("name", required = TRUE) %>%
    parameter("opt")
  expect_error(resolve_parameters(f$parameters, list()),
               "missing required parameter --name", fixed = TRUE)
  v <- resolve_parameters(f$parameters,
                          list(name = list(value = "n", label = "--name"),
                               alpha = list(value = "2", label = "--alpha")))
  expect_equal(vapply(v, `[[`, "", "name"), c("alpha", "name", "opt"))
  expect_identical(v[[1]]$value, 2)
  expect_identical(v[[2]]$value, "n")
  expect_equal(vapply(v, `[[`, NA, "has_value"), c(TRUE, TRUE, FALSE))
  # show validates without values.
  expect_silent(resolve_parameters(f$parameters, list(), check_required = FALSE))
  f2 <- metaflow("F") %>% parameter("my_param", required = TRUE)
  expect_error(resolve_parameters(f2$parameters, list()), "missing required parameter --my-param")
})

test_that("a default of another R type takes the parameter's type, as Metaflow's", {
  f <- metaflow("F") %>%
    parameter("k", type = "int", default = 5) %>%
    parameter("ks", type = "int", default = c(1, 2), separator = ",") %>%
    parameter("half", type = "int", default = 5.5) %>%
    parameter("rate", type = "float", default = 2L) %>%
    parameter("label", type = "str", default = 1) %>%
    parameter("big", type = "str", default = 100000) %>%
    parameter("text_int", type = "int", default = "4")
  v <- resolve_parameters(f$parameters, list())
  got <- setNames(lapply(v, `[[`, "value"), vapply(v, `[[`, "", "name"))
  expect_identical(got$k, 5L)
  expect_identical(got$ks, 1:2)
  expect_identical(got$half, 5.5) # kept: an integer would lose the .5
  expect_identical(got$rate, 2)
  expect_identical(got$label, "1")
  expect_identical(got$big, "100000") # not "1e+05"
  expect_identical(got$text_int, 4L)
  bad <- metaflow("F") %>% parameter("n", type = "int", default = "four")
  expect_error(resolve_parameters(bad$parameters, list()), "invalid value 'four' for the default of n")
})
