# The flow DSL. These functions only record what the user wrote and check R
# types; the graph itself (start/end, next steps, joins, cycles, decorator
# names and values) is validated by the engine, which is the one authority.

#' Create a flow
#'
#' Starts the definition of a flow. Steps and parameters are added with
#' \code{\link{step}} and \code{\link{parameter}}, usually with the pipe, and
#' the flow is executed with \code{\link{run}}.
#'
#' As in Metaflow R, a flow is an object that \code{step()} and
#' \code{parameter()} change in place, and \code{metaflow("HelloFlow")} also
#' assigns it to the variable \code{HelloFlow} in the global environment, so
#' a flow can be built over several notebook chunks:
#' \code{flow <- metaflow("X")}, then \code{flow \%>\% step(...)} (no
#' reassignment needed), then \code{run(flow)}.
#'
#' @param cls name of the flow, e.g. \code{"HelloFlow"}. Runs and artifacts
#'   are stored under this name.
#' @param ... flow-level decorators of Metaflow R (for AWS Step Functions
#'   schedules): not supported here, an error.
#' @return The flow, an object of class \code{metaflow_flow}.
#' @examples
#' start <- function(self) self$x <- 1
#' end <- function(self) print(self$x)
#' flow <- metaflow("HelloFlow") %>%
#'   step(step = "start", r_function = start, next_step = "end") %>%
#'   step(step = "end", r_function = end)
#' flow
#' @export
metaflow <- function(cls, ...) {
  if (missing(cls)) stop("metaflow() needs the flow's name, e.g. metaflow(\"HelloFlow\")", call. = FALSE)
  check_string(cls, "flow name (cls)")
  if (length(list(...))) {
    stop("metaflow(\"", cls, "\", ...): flow-level decorators (such as @schedule for ",
         "AWS Step Functions) are not supported; decorate steps with step(...)", call. = FALSE)
  }
  flow <- new.env(parent = emptyenv())
  flow$name <- cls
  flow$steps <- list()
  flow$parameters <- list()
  # Where the flow was defined: its objects are shipped to the tasks.
  flow$env <- parent.frame()
  class(flow) <- "metaflow_flow"
  # As Metaflow R: the flow is also a global variable named after it (the
  # environment at search position 1, which is the global one).
  assign(cls, flow, envir = as.environment(1L))
  flow
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
#' @return The flow, changed in place (invisibly), with the step appended
#'   (or replacing the step of the same name).
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
  if (!is.null(r_function)) check_step_arity(step, r_function, join)
  if (!is.null(next_step) && (!is.character(next_step) || anyNA(next_step) ||
                              length(next_step) == 0)) {
    stop("step '", step, "': next_step must be a character vector of step names",
         call. = FALSE)
  }
  if (!is.null(foreach)) check_string(foreach, "foreach")
  if (!is.logical(join) || length(join) != 1 || is.na(join)) {
    stop("step '", step, "': join must be TRUE or FALSE", call. = FALSE)
  }
  def <- list(
    name = step, r_function = r_function, next_step = as.character(next_step),
    foreach = foreach, join = join, decorators = unname(decorators)
  )
  # A step defined again replaces the earlier one, as a method defined twice
  # in a Metaflow class does (a notebook chunk run again), and says so.
  i <- match(step, vapply(flow$steps, `[[`, "", "name"))
  if (is.na(i)) {
    i <- length(flow$steps) + 1L
  } else {
    message("step '", step, "' replaces the step of that name already in flow ", flow$name)
  }
  flow$steps[[i]] <- def
  invisible(flow)
}

#' Create a step decorator
#'
#' Decorators change how a step runs, like Metaflow's \code{@retry},
#' \code{@catch}, \code{@timeout}, \code{@resources}, \code{@environment}
#' and \code{@batch}. Pass them to \code{\link{step}} before the step name.
#' The wrappers \code{\link{batch}}, \code{\link{resources}},
#' \code{\link{retry}}, \code{\link{catch}} and
#' \code{\link{environment_variables}} build the common ones. The engine
#' checks the decorator name and its arguments.
#'
#' @param x decorator name, e.g. \code{"retry"}.
#' @param ... named arguments of the decorator (single strings, numbers or
#'   logicals; they are sent to the engine as text). \code{NULL} arguments
#'   are left out (the decorator's default applies).
#' @param .convert_args accepted for compatibility with Metaflow, where it
#'   controls the translation of values to Python; values need no
#'   translation here.
#' @param .list the same arguments as a named list.
#' @return An object of class \code{metaflow_decorator} (and
#'   \code{decorator}, Metaflow's class name).
#' @examples
#' decorator("retry", times = 3)
#' decorator("catch", var = "compute_failed")
#' decorator("timeout", .list = list(seconds = 30))
#' @export
decorator <- function(x, ..., .convert_args = TRUE, .list = NULL) {
  name <- x
  check_string(name, "decorator name")
  args <- c(list(...), as.list(.list))
  if (length(args) && (is.null(names(args)) || any(!nzchar(names(args))))) {
    stop("decorator '", name, "': all arguments must be named", call. = FALSE)
  }
  if (anyDuplicated(names(args))) {
    stop("decorator '", name, "': argument '", names(args)[anyDuplicated(names(args))],
         "' is given twice", call. = FALSE)
  }
  args <- args[!vapply(args, is.null, NA)]
  # Metaflow's form: decorator("environment", vars = list(KEY = "value")) or
  # the Python dict text environment_variables() of Metaflow R produced.
  # Each variable travels as one argument named after it.
  if (name == "environment" && !is.null(args$vars)) {
    vars <- args$vars
    if (is.character(vars) && length(vars) == 1 && grepl("^\\s*\\{", vars)) {
      vars <- parse_python_dict(vars)
    }
    if (is.list(vars)) {
      vars <- as.list(vars)
      if (length(vars) && (is.null(names(vars)) || any(!nzchar(names(vars))))) {
        stop("decorator 'environment': vars must be a named list, e.g. vars = list(KEY = \"value\")",
             call. = FALSE)
      }
      args <- c(args[names(args) != "vars"], lapply(vars, as.character))
    }
  }
  for (k in names(args)) {
    v <- args[[k]]
    if (!is.atomic(v) || length(v) != 1 || is.na(v) ||
        !(is.character(v) || is.numeric(v) || is.logical(v))) {
      stop("decorator '", name, "': argument '", k,
           "' must be a single string, number or logical", call. = FALSE)
    }
  }
  structure(list(name = name, args = args), class = c("metaflow_decorator", "decorator"))
}

# Metaflow R's environment_variables() wrote its variables as a Python dict
# literal: "{'KEY': 'value', 'B': 'x'}". Flows may pass that text themselves.
parse_python_dict <- function(txt) {
  body <- trimws(txt)
  if (!grepl("^\\{.*\\}$", body)) {
    stop("decorator 'environment': vars must be a named list, e.g. vars = list(KEY = \"value\")",
         call. = FALSE)
  }
  body <- trimws(substr(body, 2, nchar(body) - 1))
  if (!nzchar(body)) return(list())
  str_re <- "'((?:[^'\\\\]|\\\\.)*)'|\"((?:[^\"\\\\]|\\\\.)*)\""
  pair_re <- paste0("^\\s*(", str_re, ")\\s*:\\s*(", str_re, ")\\s*(,|$)")
  out <- list()
  unq <- function(s) gsub("\\\\(.)", "\\1", substr(s, 2, nchar(s) - 1))
  while (nzchar(trimws(body))) {
    m <- regmatches(body, regexec(pair_re, body, perl = TRUE))[[1]]
    if (!length(m)) {
      stop("decorator 'environment': cannot read vars '", txt,
           "': use vars = list(KEY = \"value\")", call. = FALSE)
    }
    out[[unq(m[2])]] <- unq(m[5])
    body <- substring(body, nchar(m[1]) + 1)
  }
  out
}

#' Decorators for resources and AWS Batch
#'
#' \code{batch()} runs the step as an AWS Batch job of this size, in this
#' queue and image; \code{resources()} sizes the step's Batch job when the
#' flow runs with \code{--with batch} (\code{run(batch = TRUE)}). When a step
#' has both, the larger of each value is used. Defaults are those of the
#' documentation: 1 CPU, 4000 MB of memory, no GPU.
#'
#' Locally, \code{resources()} sizes are honoured: the step's tasks run
#' beside others only while what they all ask for fits the machine (with
#' \code{--max-workers} still the upper bound), a task asking for GPUs gets
#' its own in \code{CUDA_VISIBLE_DEVICES}, and a step asking for more than
#' the machine has is warned about before the run starts and runs alone.
#' Steps without \code{resources()} are bounded by \code{--max-workers}
#' only. The environment variables \code{METAFLOW_LOCAL_CPUS},
#' \code{METAFLOW_LOCAL_MEMORY} (MB) and \code{METAFLOW_LOCAL_GPUS} set the
#' machine's size instead of what is detected.
#'
#' @param cpu number of CPUs.
#' @param gpu number of GPUs.
#' @param memory memory in MB.
#' @param image container image (default: \code{METAFLOW_BATCH_CONTAINER_IMAGE},
#'   else a Rocker image for this R version, see \code{\link{container_image}}).
#' @param queue AWS Batch job queue (default:
#'   \code{METAFLOW_BATCH_JOB_QUEUE}).
#' @param iam_role IAM role the job runs with, to reach S3 (default:
#'   \code{METAFLOW_ECS_S3_ACCESS_IAM_ROLE}).
#' @param execution_role IAM role Batch uses to start the job, for Fargate
#'   (default: \code{METAFLOW_ECS_FARGATE_EXECUTION_ROLE}).
#' @param shared_memory size of \code{/dev/shm} in MiB.
#' @param max_swap swap the job may use, in MiB.
#' @param swappiness the job's swappiness, 0 to 100.
#' @return A decorator, as \code{\link{decorator}} returns.
#' @examples
#' big <- batch(memory = 60000, cpu = 1)
#' big
#' resources(cpu = 2, memory = 8000)
#' @export
batch <- function(cpu = 1L, gpu = 0L, memory = 4000L, image = NULL,
                  queue = mf_config("METAFLOW_BATCH_JOB_QUEUE"),
                  iam_role = mf_config("METAFLOW_ECS_S3_ACCESS_IAM_ROLE"),
                  execution_role = mf_config("METAFLOW_ECS_FARGATE_EXECUTION_ROLE"),
                  shared_memory = NULL, max_swap = NULL, swappiness = NULL) {
  decorator("batch", cpu = cpu, gpu = gpu, memory = memory, image = image,
            queue = queue, iam_role = iam_role, execution_role = execution_role,
            shared_memory = shared_memory, max_swap = max_swap,
            swappiness = swappiness)
}

#' @rdname batch
#' @export
resources <- function(cpu = 1L, gpu = 0L, memory = 4000L, shared_memory = NULL) {
  decorator("resources", cpu = cpu, gpu = gpu, memory = memory,
            shared_memory = shared_memory)
}

#' Retry a failing step
#'
#' @param times how many times to retry (0: never).
#' @param minutes_between_retries minutes to wait between attempts.
#' @return A decorator, as \code{\link{decorator}} returns.
#' @examples
#' retry(times = 3)
#' @export
retry <- function(times = 3L, minutes_between_retries = 2L) {
  decorator("retry", times = times, minutes_between_retries = minutes_between_retries)
}

#' Catch a step's error and go on
#'
#' When the step fails (after its retries), the flow goes on as if it had
#' succeeded; the error message is stored in the artifact \code{var} (not
#' stored as an artifact when \code{var} is \code{NULL}, as in Metaflow; the
#' task's \code{exception} in the client has it either way).
#'
#' @param var name of the artifact that holds the error message.
#' @param print_exception whether the error and its call stack are printed.
#' @return A decorator, as \code{\link{decorator}} returns.
#' @examples
#' catch(var = "start_failed", print_exception = FALSE)
#' @export
catch <- function(var = NULL, print_exception = TRUE) {
  decorator("catch", var = var, print_exception = print_exception)
}

#' Set environment variables for a step
#'
#' @param ... named values, each converted to a string.
#' @return A decorator, as \code{\link{decorator}} returns.
#' @examples
#' environment_variables(CUTEST_ANIMAL = "corgi", RETRIES = 3)
#' @export
environment_variables <- function(...) {
  vars <- list(...)
  if (length(vars) && (is.null(names(vars)) || any(!nzchar(names(vars))))) {
    stop("All environment variables must be named", call. = FALSE)
  }
  decorator("environment", .list = lapply(vars, as.character))
}

#' Add a parameter to a flow
#'
#' Parameters are read-only artifacts available to every step as
#' \code{self$name}. Their values come from the default, from arguments of
#' \code{\link{run}} (\code{run(alpha = 0.1)}) or from the command line
#' (\code{Rscript flow.R run --alpha 0.1}); command-line values are converted
#' to the parameter's type. A parameter with no value is \code{NULL} in the
#' steps.
#'
#' @param flow a flow created by \code{\link{metaflow}}.
#' @param parameter name of the parameter; on the command line \code{_} and
#'   \code{-} are interchangeable.
#' @param required \code{TRUE} if a value must be given (by default or at run
#'   time); a run without one is refused before it starts.
#' @param help help text shown by \code{--help} and \code{show}.
#' @param separator split a text value at this string into a vector (each
#'   element converted to the type).
#' @param default default value. A function is called (with no arguments,
#'   or with a list of \code{flow_name}, \code{parameter_name} and
#'   \code{user_name} if it takes one) once when the run starts.
#' @param type \code{"int"}, \code{"float"}, \code{"bool"} or \code{"str"}
#'   (Metaflow's names) or \code{"integer"}, \code{"numeric"},
#'   \code{"logical"}, \code{"character"}; by default the type of the
#'   default value, else text.
#' @param is_flag \code{TRUE} for a logical parameter set by a bare
#'   \code{--name} (default \code{FALSE}).
#' @return The flow, changed in place (invisibly), with the parameter added
#'   (or replacing the parameter of the same name).
#' @examples
#' flow <- metaflow("ParamFlow") %>%
#'   parameter("alpha", help = "learning rate", default = 0.01) %>%
#'   parameter("epochs", type = "int", default = 10) %>%
#'   parameter("verbose", is_flag = TRUE) %>%
#'   parameter("genres", separator = ",", default = "drama,comedy") %>%
#'   parameter("name", required = TRUE)
#' @export
parameter <- function(flow, parameter, required = FALSE, help = NULL,
                      separator = NULL, default = NULL, type = NULL,
                      is_flag = FALSE) {
  check_flow(flow)
  name <- parameter
  check_string(name, "parameter name")
  if (!is.null(help)) check_string(help, "help")
  if (!is.logical(required) || length(required) != 1 || is.na(required)) {
    stop("parameter '", name, "': required must be TRUE or FALSE", call. = FALSE)
  }
  if (!is.logical(is_flag) || length(is_flag) != 1 || is.na(is_flag)) {
    stop("parameter '", name, "': is_flag must be TRUE or FALSE", call. = FALSE)
  }
  if (gsub("-", "_", name) %in% reserved_run_args) {
    stop("parameter '", name, "' clashes with the run option of that name",
         call. = FALSE)
  }
  # The same name again replaces the earlier parameter (as a step defined
  # again does); another name that makes the same --option is an error.
  known <- vapply(flow$parameters, `[[`, "", "name")
  at <- match(name, known)
  clash <- setdiff(known[vapply(known, norm_flag, "") == norm_flag(name)], name)
  if (length(clash)) {
    stop("parameters '", clash[[1]], "' and '", name, "' are both --", norm_flag(name),
         ": give each parameter() a unique name", call. = FALSE)
  }
  if (!is.null(type)) type <- param_type_name(type, name)
  if (is_flag) {
    if (!is.null(type) && type != "logical") {
      stop("parameter '", name, "': is_flag = TRUE needs type \"bool\"", call. = FALSE)
    }
    type <- "logical"
    if (is.null(default)) default <- FALSE
  }
  if (is.null(type)) {
    type <- if (is.null(default) || is.function(default)) "character" else param_type_of(default)
  }
  if (!is.null(separator)) check_string(separator, "separator")
  if (is.na(at)) {
    at <- length(flow$parameters) + 1L
  } else {
    message("parameter '", name, "' replaces the parameter of that name already in flow ", flow$name)
  }
  flow$parameters[[at]] <- list(
    name = name, default = default, help = if (is.null(help)) "" else help,
    required = required, type = type, separator = separator, is_flag = is_flag
  )
  invisible(flow)
}

# Metaflow's type names (and Python's) mapped to R's.
param_type_name <- function(type, name) {
  if (is.function(type)) {
    # type = as.integer, type = as.numeric, ... as R users might write.
    for (t in c("integer", "numeric", "logical", "character")) {
      if (identical(type, match.fun(paste0("as.", t)))) return(t)
    }
  }
  map <- c(int = "integer", integer = "integer", float = "numeric", numeric = "numeric",
           double = "numeric", bool = "logical", logical = "logical", str = "character",
           character = "character", string = "character")
  if (is.character(type) && length(type) == 1 && !is.na(type) && type %in% names(map)) {
    return(unname(map[[type]]))
  }
  stop("parameter '", name, "': type must be one of \"int\", \"float\", \"bool\", \"str\" ",
       "(or integer, numeric, logical, character)", call. = FALSE)
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

# A step function is called as f(self), a join's as f(self, inputs): one that
# cannot be called so is refused when the flow is defined, as Metaflow checks
# a step's signature before running, not after the steps before it ran.
check_step_arity <- function(step, f, join) {
  want <- if (join) 2L else 1L
  fm <- formals(args(f))
  dots <- "..." %in% names(fm)
  fm <- fm[names(fm) != "..."]
  required <- sum(vapply(fm, function(a) identical(a, quote(expr = )), NA))
  if (required <= want && (dots || length(fm) >= want)) return(invisible(TRUE))
  shown <- if (length(fm)) paste(names(fm), collapse = ", ") else "none"
  stop(sprintf("step '%s': r_function must take %s, but its arguments are: %s",
               step, if (join) "two arguments (self, inputs), as a join step" else
                 "one argument (self)", shown),
       if (!join && length(fm) == 2L) " (add join = TRUE if the step joins branches)",
       call. = FALSE)
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
