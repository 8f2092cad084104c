# The client API: read past runs, their steps, tasks and artifacts. It asks
# the engine (ListRuns, GetRun, GetTask, Logs) and reads artifact blobs
# with the msgpack codec from the local datastore (or the engine's local
# copy of an S3 datastore's blob).

engine_call <- function(method, msg) {
  with_engine(function(conn) grpc_unary(conn, method, msg))
}

split_pathspec <- function(x, n, what) {
  parts <- strsplit(x, "/", fixed = TRUE)[[1]]
  if (length(parts) != n || any(!nzchar(parts))) {
    stop(sprintf("invalid %s pathspec '%s'", what, x), call. = FALSE)
  }
  parts
}

#' Client for a flow's past runs
#'
#' @description An R6 class giving access to the runs of a flow stored in the
#' datastore: the local one (\code{.metaflow} under the working directory, or
#' under \code{METAFLOW_DATASTORE_SYSROOT_LOCAL}), or S3 with
#' \code{METAFLOW_DEFAULT_DATASTORE=s3} (artifacts are downloaded when read).
#'
#' @section Usage:
#' \preformatted{
#' f <- flow_client$new("HelloFlow")
#' f$runs
#' f$latest_run
#' f$latest_successful_run
#' r <- f$run(f$latest_run)
#' }
#' @export
flow_client <- R6::R6Class("FlowClient",
  public = list(
    #' @field id The flow name.
    id = NULL,

    #' @description Load the runs of a flow.
    #' @param flow_id Name of the flow, e.g. \code{"HelloFlow"}.
    initialize = function(flow_id) {
      check_string(flow_id, "flow_id")
      self$id <- flow_id
      root <- datastore_root()
      res <- engine_call("ListRuns", list(datastore_root = root, flow = flow_id))
      if (!length(res$runs)) stop("flow ", flow_id, " has no runs in ", root, call. = FALSE)
      private$infos <- res$runs
    },

    #' @description A client for one run of this flow.
    #' @param run_id Run id, or \code{"latest_run"}/\code{"latest_successful_run"}.
    run = function(run_id) run_client$new(self, run_id),

    #' @description Print a summary of the flow.
    summary = function() {
      cat(sprintf("Flow %s\n    Runs:                   %d\n    Latest run:             %s\n    Latest successful run:  %s\n",
                  self$id, length(self$runs), na_to_none(self$latest_run),
                  na_to_none(self$latest_successful_run)))
      invisible(self)
    },

    #' @description Print the flow.
    #' @param ... Unused.
    print = function(...) {
      cat("<FlowClient ", self$id, ": ", length(self$runs), " run(s)>\n", sep = "")
      invisible(self)
    }
  ),
  active = list(
    #' @field pathspec The flow name.
    pathspec = function() self$id,
    #' @field runs Ids of all runs, newest first.
    runs = function() vapply(private$infos, `[[`, "", "run_id"),
    #' @field latest_run Id of the newest run.
    latest_run = function() private$infos[[1]]$run_id,
    #' @field latest_successful_run Id of the newest successful run
    #'   (\code{NULL} if none).
    latest_successful_run = function() {
      for (r in private$infos) if (r$status == "completed") return(r$run_id)
      NULL
    }
  ),
  private = list(infos = list())
)

na_to_none <- function(x) if (is.null(x)) "none" else x

#' Client for one run
#'
#' @description An R6 class giving access to one run: its status, steps and
#' the artifacts of its end step.
#'
#' @section Usage:
#' \preformatted{
#' r <- run_client$new("HelloFlow", "15")   # or run_client$new(flow_client, "15")
#' r <- run_client$new("HelloFlow/15")
#' r$successful
#' r$steps
#' r$artifacts
#' r$artifact("x")
#' r$step("end")$task("1")$stdout
#' }
#' @export
run_client <- R6::R6Class("RunClient",
  public = list(
    #' @field id The run id.
    id = NULL,
    #' @field flow_id The flow name.
    flow_id = NULL,

    #' @description Load a run.
    #' @param flow A \code{flow_client}, a flow name, or a pathspec
    #'   \code{"Flow/run_id"} (then \code{run_id} is left out).
    #' @param run_id Run id, or \code{"latest_run"}/\code{"latest_successful_run"}.
    initialize = function(flow, run_id = NULL) {
      if (is.null(run_id)) {
        check_string(flow, "run pathspec")
        parts <- split_pathspec(flow, 2, "run")
        flow <- parts[1]
        run_id <- parts[2]
      }
      if (is.numeric(run_id)) run_id <- as.character(run_id)
      check_string(run_id, "run_id")
      if (run_id %in% c("latest_run", "latest_successful_run")) {
        if (!inherits(flow, "FlowClient")) flow <- flow_client$new(flow)
        id <- flow[[run_id]]
        if (is.null(id)) stop("flow ", flow$id, " has no ", gsub("_", " ", run_id), call. = FALSE)
        run_id <- id
      }
      self$flow_id <- if (inherits(flow, "FlowClient")) flow$id else flow
      check_string(self$flow_id, "flow")
      self$id <- run_id
      private$info <- engine_call("GetRun", list(datastore_root = datastore_root(),
                                                 flow = self$flow_id, run_id = run_id))
    },

    #' @description A client for one step of this run.
    #' @param name Step name, e.g. \code{"end"}.
    step = function(name) step_client$new(self, name),

    #' @description Read an artifact of the end step.
    #' @param name Artifact name.
    artifact = function(name) private$end_client()$artifact(name),

    #' @description Print a summary of the run.
    summary = function() {
      cat(sprintf("Run %s\n    Status:       %s\n    Created at:   %s\n    Finished at:  %s\n    Steps:        %s\n",
                  self$pathspec, private$info$status, self$created_at, self$finished_at,
                  paste(self$steps, collapse = ", ")))
      invisible(self)
    },

    #' @description Print the run.
    #' @param ... Unused.
    print = function(...) {
      cat("<RunClient ", self$pathspec, ": ", private$info$status, ">\n", sep = "")
      invisible(self)
    },

    #' @description The engine's description of this run (a list).
    get_info = function() private$info
  ),
  active = list(
    #' @field pathspec \code{"Flow/run_id"}.
    pathspec = function() paste(self$flow_id, self$id, sep = "/"),
    #' @field status \code{"running"}, \code{"completed"} or \code{"failed"}.
    status = function() private$info$status,
    #' @field steps Names of the steps that have tasks.
    steps = function() vapply(private$info$steps, `[[`, "", "name"),
    #' @field finished Whether the run has ended (successfully or not).
    finished = function() private$info$status %in% c("completed", "failed"),
    #' @field successful Whether the run completed successfully.
    successful = function() identical(private$info$status, "completed"),
    #' @field created_at When the run started (ISO 8601 text).
    created_at = function() private$info$created_at,
    #' @field finished_at When the run ended (\code{""} while running).
    finished_at = function() private$info$finished_at,
    #' @field tags Tags of the run.
    tags = function() private$info$tags,
    #' @field user Who ran it.
    user = function() private$info$user,
    #' @field origin_run_id The run a resume cloned from (\code{""} otherwise).
    origin_run_id = function() private$info$origin_run_id,
    #' @field end_task Task id of the end step (\code{NULL} if it has none).
    end_task = function() {
      for (s in private$info$steps) {
        if (s$name == "end" && length(s$tasks)) return(s$tasks[[1]]$task_id)
      }
      NULL
    },
    #' @field artifacts Names of the artifacts of the end step (\code{NULL} if
    #'   the run has no finished end step).
    artifacts = function() {
      if (is.null(self$end_task)) return(NULL)
      private$end_client()$artifacts
    }
  ),
  private = list(
    info = NULL,
    end_task_client = NULL,
    end_client = function() {
      if (is.null(private$end_task_client)) {
        if (is.null(self$end_task)) {
          stop("run ", self$pathspec, " has no end step task (status: ",
               private$info$status, ")", call. = FALSE)
        }
        private$end_task_client <- self$step("end")$task(self$end_task)
      }
      private$end_task_client
    }
  )
)

#' Client for one step of a run
#'
#' @description An R6 class giving access to the tasks of a step.
#'
#' @section Usage:
#' \preformatted{
#' s <- step_client$new(run_client, "start")
#' s <- step_client$new("HelloFlow/15/start")
#' s$tasks
#' s$task(s$tasks[1])
#' }
#' @export
step_client <- R6::R6Class("StepClient",
  public = list(
    #' @field id The step name.
    id = NULL,
    #' @field run The parent \code{run_client}.
    run = NULL,

    #' @description Load a step.
    #' @param run A \code{run_client}, or a pathspec \code{"Flow/run_id/step"}
    #'   (then \code{step_id} is left out).
    #' @param step_id Step name.
    initialize = function(run, step_id = NULL) {
      if (is.null(step_id)) {
        check_string(run, "step pathspec")
        parts <- split_pathspec(run, 3, "step")
        run <- run_client$new(parts[1], parts[2])
        step_id <- parts[3]
      }
      if (!inherits(run, "RunClient")) stop("run must be a run_client", call. = FALSE)
      check_string(step_id, "step_id")
      info <- Filter(function(s) s$name == step_id, run$get_info()$steps)
      if (!length(info)) {
        stop("run ", run$pathspec, " has no step '", step_id, "' (steps: ",
             paste(run$steps, collapse = ", "), ")", call. = FALSE)
      }
      self$id <- step_id
      self$run <- run
      private$info <- info[[1]]
    },

    #' @description A client for one task of this step.
    #' @param task_id Task id.
    task = function(task_id) task_client$new(self, task_id),

    #' @description Print the step.
    #' @param ... Unused.
    print = function(...) {
      cat("<StepClient ", self$pathspec, ": ", length(self$tasks), " task(s)>\n", sep = "")
      invisible(self)
    },

    #' @description The engine's description of the step's tasks (a list).
    get_info = function() private$info
  ),
  active = list(
    #' @field pathspec \code{"Flow/run_id/step"}.
    pathspec = function() paste(self$run$pathspec, self$id, sep = "/"),
    #' @field tasks Ids of the tasks of this step.
    tasks = function() vapply(private$info$tasks, `[[`, "", "task_id"),
    #' @field a_task Id of one task of this step.
    a_task = function() if (length(private$info$tasks)) private$info$tasks[[1]]$task_id else NULL,
    #' @field finished_at When the last task ended.
    finished_at = function() {
      ends <- vapply(private$info$tasks, `[[`, "", "finished_at")
      if (!length(ends) || any(!nzchar(ends))) "" else max(ends)
    }
  ),
  private = list(info = NULL)
)

#' Client for one task
#'
#' @description An R6 class giving access to a task's artifacts and output.
#'
#' @section Usage:
#' \preformatted{
#' t <- task_client$new(step_client, "1")
#' t <- task_client$new("HelloFlow/15/start/1")
#' t$artifacts
#' t$artifact("x")
#' cat(t$stdout)
#' t$successful
#' }
#' @export
task_client <- R6::R6Class("TaskClient",
  public = list(
    #' @field id The task id.
    id = NULL,
    #' @field step The parent \code{step_client}.
    step = NULL,

    #' @description Load a task.
    #' @param step A \code{step_client}, or a pathspec
    #'   \code{"Flow/run_id/step/task_id"} (then \code{task_id} is left out).
    #' @param task_id Task id.
    initialize = function(step, task_id = NULL) {
      if (is.null(task_id)) {
        check_string(step, "task pathspec")
        parts <- split_pathspec(step, 4, "task")
        step <- step_client$new(paste(parts[1:3], collapse = "/"))
        task_id <- parts[4]
      }
      if (!inherits(step, "StepClient")) stop("step must be a step_client", call. = FALSE)
      if (is.numeric(task_id)) task_id <- as.character(task_id)
      check_string(task_id, "task_id")
      self$id <- task_id
      self$step <- step
      run <- step$run
      private$info <- engine_call("GetTask", list(
        datastore_root = datastore_root(), flow = run$flow_id, run_id = run$id,
        step = step$id, task_id = task_id))
    },

    #' @description Read an artifact of this task.
    #' @param name Artifact name.
    artifact = function(name) {
      check_string(name, "artifact name")
      a <- Filter(function(x) x$name == name, private$info$artifacts)
      if (!length(a)) {
        stop("task ", self$pathspec, " has no artifact '", name, "'",
             if (length(self$artifacts)) paste0(" (artifacts: ", paste(self$artifacts, collapse = ", "), ")")
             else paste0(" (status: ", private$info$status, ")"), call. = FALSE)
      }
      path <- a[[1]]$path
      if (!nzchar(path)) {
        # Not on this machine yet (an S3 datastore): the engine downloads it.
        run <- self$step$run
        info <- engine_call("GetTask", list(
          datastore_root = datastore_root(), flow = run$flow_id, run_id = run$id,
          step = self$step$id, task_id = self$id, artifact = name))
        path <- Filter(function(x) x$name == name, info$artifacts)[[1]]$path
      }
      mp_read(path)
    },

    #' @description Print the task.
    #' @param ... Unused.
    print = function(...) {
      cat("<TaskClient ", self$pathspec, ": ", private$info$status, ">\n", sep = "")
      invisible(self)
    },

    #' @description The engine's description of this task (a list).
    get_info = function() private$info
  ),
  active = list(
    #' @field pathspec \code{"Flow/run_id/step/task_id"}.
    pathspec = function() paste(self$step$pathspec, self$id, sep = "/"),
    #' @field artifacts Names of the task's artifacts.
    artifacts = function() vapply(private$info$artifacts, `[[`, "", "name"),
    #' @field status \code{"running"}, \code{"completed"} or \code{"failed"}.
    status = function() private$info$status,
    #' @field finished Whether the task has ended.
    finished = function() private$info$status %in% c("completed", "failed"),
    #' @field successful Whether the task completed successfully.
    successful = function() identical(private$info$status, "completed"),
    #' @field index 0-based index in the enclosing foreach (\code{NULL} outside one).
    index = function() if (private$info$foreach_index < 0) NULL else private$info$foreach_index,
    #' @field attempt The attempt number of the latest try (0 first).
    attempt = function() private$info$attempt,
    #' @field created_at When the task started.
    created_at = function() private$info$started_at,
    #' @field finished_at When the task ended.
    finished_at = function() private$info$finished_at,
    #' @field stdout The task's standard output (latest attempt).
    stdout = function() private$logs()$stdout,
    #' @field stderr The task's standard error (latest attempt).
    stderr = function() private$logs()$stderr
  ),
  private = list(
    info = NULL,
    logs = function() {
      run <- self$step$run
      res <- engine_call("Logs", list(datastore_root = datastore_root(), flow = run$flow_id,
                                      pathspec = paste(run$id, self$step$id, self$id, sep = "/")))
      if (!length(res$tasks)) return(list(stdout = "", stderr = ""))
      res$tasks[[1]]
    }
  )
)

#' Information about the running task
#'
#' Inside a step, \code{current("run_id")}, \code{current("step_name")},
#' \code{current("task_id")}, \code{current("retry_count")},
#' \code{current("flow_name")}, \code{current("origin_run_id")},
#' \code{current("username")}, \code{current("pathspec")} and
#' \code{current("tags")} describe the task. The task runtime provides this
#' function; outside a running step it is an error.
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
#' @param self the join step's \code{self}.
#' @param inputs the join step's \code{inputs}.
#' @param ... \code{exclude} or \code{include}: character vectors of artifact
#'   names to leave out or to merge only.
#' @return Nothing useful (in a task).
#' @export
merge_artifacts <- function(self, inputs, ...) {
  stop("merge_artifacts() is only available inside a running join step", call. = FALSE)
}
