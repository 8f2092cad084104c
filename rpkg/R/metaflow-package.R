#' metaflow: Metaflow flows in R, run by a Go engine
#'
#' Define a flow with \code{\link{metaflow}}, \code{\link{step}},
#' \code{\link{decorator}} and \code{\link{parameter}}, execute it with
#' \code{\link{run}}, and inspect past runs with \code{\link{flow_client}},
#' \code{\link{run_client}}, \code{\link{step_client}} and
#' \code{\link{task_client}}. The flow is executed by the \code{metaflow-engine}
#' binary, reached over gRPC.
#'
#' @docType package
#' @name metaflow-package
#' @aliases metaflow-package
#' @keywords internal
#' @importFrom R6 R6Class
#' @useDynLib metaflow, .registration = TRUE
NULL

#' Pipe operator
#'
#' See \code{magrittr::\link[magrittr:pipe]{\%>\%}} for details.
#'
#' @name %>%
#' @rdname pipe
#' @keywords internal
#' @export
#' @importFrom magrittr %>%
#' @usage lhs \%>\% rhs
#' @param lhs A value or the magrittr placeholder.
#' @param rhs A function call using the magrittr semantics.
#' @return The result of calling \code{rhs(lhs)}.
NULL

