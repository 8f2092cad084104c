# Functions used inside steps. The task runtime (shim/runtime/task.R, base R
# only) provides the real ones to running steps; these are their documented
# stand-ins for R sessions, where calling them is a mistake.

#' Information about the running task
#'
#' Inside a step, \code{current("flow_name")}, \code{current("run_id")},
#' \code{current("origin_run_id")}, \code{current("step_name")},
#' \code{current("task_id")}, \code{current("pathspec")},
#' \code{current("namespace")}, \code{current("username")},
#' \code{current("retry_count")} and \code{current("tags")} describe the
#' task. The task runtime provides this function; outside a running step it
#' is an error.
#'
#' @param value name of the value.
#' @return The value (in a task).
#' @export
current <- function(value) {
  stop("current() is only available inside a running step", call. = FALSE)
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
