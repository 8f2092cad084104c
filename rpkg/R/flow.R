# The flow DSL. These functions only record what the user wrote and check R
# types; the graph itself (start/end, next steps, joins, cycles, decorator
# names and values) is validated by the engine, which is the one authority.

#' Create a flow
#'
#' Starts the definition of a flow. Steps and parameters are added with
#' \code{\link{step}} and \code{\link{parameter}}, usually with the pipe, and
#' the flow is executed with \code{\link{run}}.
#'
#' @param name name of the flow, e.g. \code{"HelloFlow"}. Runs and artifacts
#'   are stored under this name.
#' @return An object of class \code{metaflow_flow}.
#' @examples
#' start <- function(self) self$x <- 1
#' end <- function(self) print(self$x)
#' flow <- metaflow("HelloFlow") %>%
#'   step(step = "start", r_function = start, next_step = "end") %>%
#'   step(step = "end", r_function = end)
#' flow
#' @export
metaflow <- function(name) {
  check_string(name, "name")
  structure(
    list(name = name, steps = list(), parameters = list(),
         # Where the flow was defined: its objects are shipped to the tasks.
         env = parent.frame()),
    class = "metaflow_flow"
  )
}

#' Add a step to a flow
#'
#' @param flow a flow created by \code{\link{metaflow}}.
#' @param ... decorators for this step, created with \code{\link{decorator}}.
#' @param step name of the step. Every flow has a \code{"start"} and an
#'   \code{"end"} step.
#' @param r_function the function run by the step. It is called with
#'   \code{self} (and \code{inputs} for a join step); artifacts are assigned as
#'   \code{self$name <- value}. \code{NULL} makes a step that does nothing.
#' @param next_step name(s) of the step(s) that follow; several names make a
#'   static branch.
#' @param foreach name of an artifact (set by this step) to fan out over: the
#'   next step runs once per element, which it sees as \code{self$input}.
#' @param join \code{TRUE} if this step joins branches; its function then
#'   receives \code{inputs}.
#' @return The flow with the step appended.
#' @examples
#' flow <- metaflow("BranchFlow") %>%
#'   step(step = "start", next_step = c("a", "b")) %>%
#'   step(decorator("retry", times = 3), step = "a",
#'        r_function = function(self) self$x <- 1, next_step = "join") %>%
#'   step(step = "b", r_function = function(self) self$x <- 2,
#'        next_step = "join") %>%
#'   step(step = "join", join = TRUE, next_step = "end",
#'        r_function = function(self, inputs) {
#'          self$total <- sum(sapply(inputs, function(i) i$x))
#'        }) %>%
#'   step(step = "end")
#' @export
step <- function(flow, ..., step, r_function = NULL, next_step = NULL,
                 foreach = NULL, join = FALSE) {
  check_flow(flow)
  if (missing(step)) stop("step() needs a step name: step = \"...\"", call. = FALSE)
  check_string(step, "step")
  # An empty argument usually is a trailing comma after the last decorator.
  args <- as.list(match.call(expand.dots = TRUE))[-1]
  if (any(vapply(args, function(a) identical(a, quote(expr = )), NA))) {
    stop("step '", step, "' has an empty argument: is there a trailing comma?",
         call. = FALSE)
  }
  decorators <- list(...)
  for (d in decorators) {
    if (!inherits(d, "metaflow_decorator")) {
      stop("step '", step, "': unnamed arguments must be decorator() objects",
           call. = FALSE)
    }
  }
  if (!is.null(r_function) && !is.function(r_function)) {
    stop("step '", step, "': r_function must be a function", call. = FALSE)
  }
  if (!is.null(next_step) && (!is.character(next_step) || anyNA(next_step) ||
                              length(next_step) == 0)) {
    stop("step '", step, "': next_step must be a character vector of step names",
         call. = FALSE)
  }
  if (!is.null(foreach)) check_string(foreach, "foreach")
  if (!is.logical(join) || length(join) != 1 || is.na(join)) {
    stop("step '", step, "': join must be TRUE or FALSE", call. = FALSE)
  }
  flow$steps[[length(flow$steps) + 1]] <- list(
    name = step, r_function = r_function, next_step = as.character(next_step),
    foreach = foreach, join = join, decorators = unname(decorators)
  )
  flow
}

#' Create a step decorator
#'
#' Decorators change how a step runs, like Metaflow's \code{@retry},
#' \code{@catch}, \code{@timeout} and \code{@resources}. Pass them to
#' \code{\link{step}} before the step name. The engine checks the decorator
#' name and its arguments.
#'
#' @param name decorator name, e.g. \code{"retry"}.
#' @param ... named arguments of the decorator (single strings, numbers or
#'   logicals; they are sent to the engine as text).
#' @param .list the same arguments as a named list.
#' @return An object of class \code{metaflow_decorator}.
#' @examples
#' decorator("retry", times = 3)
#' decorator("catch", var = "compute_failed")
#' decorator("timeout", .list = list(seconds = 30))
#' @export
decorator <- function(name, ..., .list = NULL) {
  check_string(name, "decorator name")
  args <- c(list(...), as.list(.list))
  # Metaflow's form: decorator("environment", vars = list(KEY = "value")).
  # Each variable travels as one argument named after it.
  if (name == "environment" && is.list(args$vars)) {
    vars <- as.list(args$vars)
    if (length(vars) && (is.null(names(vars)) || any(!nzchar(names(vars))))) {
      stop("decorator 'environment': vars must be a named list, e.g. vars = list(KEY = \"value\")",
           call. = FALSE)
    }
    args <- c(args[names(args) != "vars"], vars)
  }
  if (length(args) && (is.null(names(args)) || any(!nzchar(names(args))))) {
    stop("decorator '", name, "': all arguments must be named", call. = FALSE)
  }
  for (k in names(args)) {
    v <- args[[k]]
    if (!is.atomic(v) || length(v) != 1 || is.na(v) ||
        !(is.character(v) || is.numeric(v) || is.logical(v))) {
      stop("decorator '", name, "': argument '", k,
           "' must be a single string, number or logical", call. = FALSE)
    }
  }
  structure(list(name = name, args = args), class = "metaflow_decorator")
}

#' Add a parameter to a flow
#'
#' Parameters are read-only artifacts available to every step as
#' \code{self$name}. Their values come from the default, from arguments of
#' \code{\link{run}} (\code{run(alpha = 0.1)}) or from the command line
#' (\code{Rscript flow.R run --alpha 0.1}); command-line values are converted
#' to the type of the default.
#'
#' @param flow a flow created by \code{\link{metaflow}}.
#' @param name name of the parameter; on the command line \code{_} and
#'   \code{-} are interchangeable.
#' @param default default value; its type (numeric, integer, logical or
#'   character) is the type command-line values are converted to.
#' @param help help text shown by \code{--help}.
#' @param required \code{TRUE} if a value must be given (by default or at run
#'   time).
#' @param ... for compatibility with Metaflow: \code{type} (one of
#'   \code{"numeric"}, \code{"integer"}, \code{"logical"}, \code{"character"}),
#'   \code{is_flag} (a logical parameter, default \code{FALSE}, set with a bare
#'   \code{--name}) and \code{separator} (split a text value into a vector).
#' @return The flow with the parameter added.
#' @examples
#' flow <- metaflow("ParamFlow") %>%
#'   parameter("alpha", default = 0.01, help = "learning rate") %>%
#'   parameter("epochs", default = 10L) %>%
#'   parameter("name", required = TRUE)
#' @export
parameter <- function(flow, name, default = NULL, help = NULL, required = FALSE, ...) {
  check_flow(flow)
  check_string(name, "parameter name")
  if (!is.null(help)) check_string(help, "help")
  if (!is.logical(required) || length(required) != 1 || is.na(required)) {
    stop("parameter '", name, "': required must be TRUE or FALSE", call. = FALSE)
  }
  if (is.function(default)) {
    stop("parameter '", name, "': function defaults are not supported", call. = FALSE)
  }
  extra <- list(...)
  unknown <- setdiff(names(extra), c("type", "is_flag", "separator"))
  if (length(extra) && (is.null(names(extra)) || length(unknown) || any(!nzchar(names(extra))))) {
    stop("parameter '", name, "': unknown argument(s) ",
         paste(if (length(unknown)) unknown else "(unnamed)", collapse = ", "),
         call. = FALSE)
  }
  if (gsub("-", "_", name) %in% reserved_run_args) {
    stop("parameter '", name, "' clashes with the run option of that name",
         call. = FALSE)
  }
  is_flag <- isTRUE(extra$is_flag)
  type <- extra$type
  if (is_flag) {
    type <- "logical"
    if (is.null(default)) default <- FALSE
  }
  if (is.null(type)) {
    type <- if (is.null(default)) "character" else param_type_of(default)
  }
  if (!is.character(type) || length(type) != 1 ||
      !type %in% c("numeric", "integer", "logical", "character")) {
    stop("parameter '", name, "': type must be one of numeric, integer, ",
         "logical, character", call. = FALSE)
  }
  if (!is.null(extra$separator)) check_string(extra$separator, "separator")
  flow$parameters[[length(flow$parameters) + 1]] <- list(
    name = name, default = default, help = if (is.null(help)) "" else help,
    required = required, type = type, separator = extra$separator
  )
  flow
}

# The conversion type implied by a default value.
param_type_of <- function(x) {
  switch(typeof(x), double = "numeric", integer = if (is.factor(x)) "character" else "integer",
         logical = "logical", "character")
}

#' @export
print.metaflow_flow <- function(x, ...) {
  cat("<metaflow flow ", x$name, ">\n", sep = "")
  for (p in x$parameters) {
    cat("  parameter ", p$name, if (p$required) " (required)", "\n", sep = "")
  }
  for (s in x$steps) {
    nxt <- if (length(s$next_step)) paste0(" => ", paste(s$next_step, collapse = ", ")) else ""
    cat("  step ", s$name, if (s$join) " (join)", nxt,
        if (!is.null(s$foreach)) paste0(" (foreach ", s$foreach, ")"), "\n", sep = "")
  }
  invisible(x)
}

#' @export
print.metaflow_decorator <- function(x, ...) {
  cat(format_decorator(x), "\n", sep = "")
  invisible(x)
}

format_decorator <- function(d) {
  args <- decorator_arg_strings(d$args)
  if (!length(args)) return(paste0("@", d$name))
  paste0("@", d$name, "(", paste0(names(args), "=", args, collapse = ", "), ")")
}

# Decorator values travel as text; whole numbers must not become "1e+05".
decorator_arg_strings <- function(args) {
  vapply(args, function(v) {
    if (is.numeric(v)) {
      if (v == trunc(v) && abs(v) < 1e15) sprintf("%.0f", v) else format(v, digits = 15)
    } else {
      as.character(v)
    }
  }, "")
}

check_flow <- function(flow) {
  if (!inherits(flow, "metaflow_flow")) {
    stop("expected a flow created with metaflow(\"Name\")", call. = FALSE)
  }
}

check_string <- function(x, what) {
  if (!is.character(x) || length(x) != 1 || is.na(x) || !nzchar(x)) {
    stop(what, " must be a single non-empty string", call. = FALSE)
  }
}
