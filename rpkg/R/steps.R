# Functions used inside steps. The task runtime (shim/runtime/task.R, base R
# only) provides the real ones to running steps, attached as
# "metaflow:runtime"; these documented stand-ins pass a call on to it when
# the step calls them by the package's name (metaflow::current("run_id")).

# The runtime's function name when this R process runs a task, else NULL.
task_runtime_fn <- function(name) {
  if (!"metaflow:runtime" %in% search()) return(NULL)
  get0(name, envir = as.environment("metaflow:runtime"), inherits = FALSE)
}

# What current() knows, in a task.
current_names <- c("flow_name", "run_id", "origin_run_id", "step_name", "task_id",
                   "pathspec", "namespace", "username", "retry_count", "tags", "metadata",
                   "is_running_flow", "tempdir")

#' Information about the running task
#'
#' Inside a step, \code{current("flow_name")}, \code{current("run_id")},
#' \code{current("origin_run_id")}, \code{current("step_name")},
#' \code{current("task_id")}, \code{current("pathspec")},
#' \code{current("namespace")}, \code{current("username")},
#' \code{current("retry_count")}, \code{current("tags")} and
#' \code{current("metadata")} describe the task (\code{origin_run_id} is
#' \code{NULL} unless the run is a resume); \code{current("is_running_flow")}
#' is \code{TRUE} and \code{current("tempdir")} is the task's own
#' \code{tempdir()}. Outside a running step each is \code{NULL} (and
#' \code{is_running_flow} \code{FALSE}), as in Metaflow; an unknown name is an
#' error.
#'
#' @param value name of the value.
#' @return The value, or \code{NULL} outside a running step.
#' @examples
#' current("run_id") # NULL: not in a running step
#' @export
current <- function(value) {
  rt <- task_runtime_fn("current")
  if (!is.null(rt)) return(if (missing(value)) rt() else rt(value))
  if (missing(value)) return(NULL)
  if (!is.character(value) || length(value) != 1 || !value %in% current_names) {
    stop(sprintf("current(\"%s\") is unknown: use one of %s", paste(value, collapse = ", "),
                 paste(current_names, collapse = ", ")), call. = FALSE)
  }
  if (value == "is_running_flow") FALSE else NULL
}

#' Merge artifacts in a join step
#'
#' In a join step, \code{merge_artifacts(self, inputs)} copies to \code{self}
#' the artifacts of the joined branches that have the same value in all of
#' them (or exist in only one), and errors on conflicts. The task runtime
#' provides this function; outside a running step it is an error.
#'
#' @param flow the join step's \code{self}.
#' @param inputs the join step's \code{inputs}.
#' @param exclude names of artifacts not to merge (a character vector or a
#'   list of names).
#' @param ... \code{include}: names of the only artifacts to merge.
#' @return Nothing useful (in a task).
#' @export
merge_artifacts <- function(flow, inputs, exclude = list(), ...) {
  rt <- task_runtime_fn("merge_artifacts")
  if (!is.null(rt)) return(rt(flow, inputs, exclude = exclude, ...))
  stop("merge_artifacts() is only available inside a running join step", call. = FALSE)
}

#' Gather one artifact of every input of a join step
#'
#' \code{gather_inputs(inputs, "x")} is the list of \code{x} of each joined
#' branch, in the order of \code{inputs}.
#'
#' @param inputs the join step's \code{inputs}.
#' @param input name of the artifact.
#' @return A list with one element per input.
#' @examples
#' # In a join step: self$scores <- unlist(gather_inputs(inputs, "score"))
#' inputs <- list(a = list(score = 1), b = list(score = 2))
#' gather_inputs(inputs, "score")
#' @export
gather_inputs <- function(inputs, input) {
  lapply(seq_along(inputs), function(i) inputs[[i]][[input]])
}
