# The client API: read past runs, their steps, tasks and artifacts, as
# Metaflow's R client does (flow_client, run_client, step_client,
# task_client, mf_client, new_flow() ...). It asks the engine (ListRuns,
# GetRun, GetTask, Logs) and reads artifact blobs with the msgpack codec from
# the local datastore (or the engine's local copy of an S3 datastore's blob),
# each only while its file's stat equals the stamp the engine verified it
# under (mp_read_verified(); docs/ARCHITECTURE.md, "Verified stamps").
# Objects outside the current namespace (set_namespace()) are refused with
# Metaflow's message.

engine_call <- function(method, msg) {
  with_engine(function(conn) grpc_unary(conn, method, msg))
}

split_pathspec <- function(x, n, what) {
  parts <- strsplit(x, "/", fixed = TRUE)[[1]]
  if (length(parts) != n || any(!nzchar(parts))) {
    stop(sprintf("invalid %s pathspec '%s': expected %s", what, x,
                 c("Flow", "Flow/run_id", "Flow/run_id/step", "Flow/run_id/step/task_id")[n]),
         call. = FALSE)
  }
  parts
}

# An artifact streamed by the engine (ReadArtifact), for an engine that does
# not share this machine's files; it verifies the blob on the way.
stream_artifact <- function(flow, run_id, step, task_id, name) {
  chunks <- list()
  with_engine(function(conn) {
    grpc_stream(conn, "ReadArtifact",
                list(datastore_root = datastore_root(), flow = flow, run_id = run_id,
                     step = step, task_id = task_id, name = name),
                function(ch) chunks[[length(chunks) + 1L]] <<- ch$data)
  })
  blob <- if (length(chunks)) do.call(c, chunks) else raw(0)
  chunks <- NULL
  mp_unpack(blob)
}

# A verified stamp as mp_read_verified() takes it (file.info() units), from
# GetTask's FileStamp; NULL for none.
client_stamp <- function(st) {
  if (is.null(st)) return(NULL)
  list(size = st$size, mtime = st$mtime_sec + st$mtime_nsec / 1e9,
       ctime = st$ctime_sec + st$ctime_nsec / 1e9)
}

# ---- tags and namespaces -----------------------------------------------------

# Metaflow's system tags of a run: who ran it, where, and when.
run_system_tags <- function(info) {
  c(paste0("user:", info$user), "runtime:dev",
    if (nzchar(info$created_at)) paste0("date:", substr(info$created_at, 1, 10)))
}

run_tags <- function(info) unique(c(run_system_tags(info), unlist(info$tags)))

in_namespace <- function(info, ns = get_namespace()) is.null(ns) || ns %in% run_tags(info)

namespace_mismatch <- function(ns = get_namespace()) {
  stop(sprintf("Object not in namespace '%s'", ns), call. = FALSE)
}

# ---- times -------------------------------------------------------------------

parse_time <- function(x) {
  if (is.null(x) || !nzchar(x)) return(NULL)
  as.POSIXct(sub("Z$", "", substr(x, 1, 23)), format = "%Y-%m-%dT%H:%M:%OS", tz = "UTC")
}

format_elapsed <- function(from, to) {
  a <- parse_time(from)
  b <- parse_time(to)
  if (is.null(a) || is.null(b)) return("")
  d <- difftime(b, a)
  paste(round(as.numeric(d), 2), attr(d, "units"))
}

# A heading line like cli::rule(left = ...), as Metaflow R's summaries print.
summary_rule <- function(title) {
  bar <- if (isTRUE(l10n_info()$`UTF-8`)) "\u2500" else "-"
  width <- max(getOption("width", 80L), nchar(title) + 6L)
  paste0(strrep(bar, 2), " ", title, " ", strrep(bar, width - nchar(title) - 4L))
}

# Lines "    Label:    value" in the columns of Metaflow R's summaries:
# values start at column 28 (30 for a flow's); a vector's elements are one
# per line in that column.
summary_lines <- function(title, fields, width = 23L) {
  labels <- paste0(names(fields), ":")
  indent <- paste0("\n", strrep(" ", 4L + width))
  vals <- vapply(fields, function(v) if (is.null(v) || !length(v)) "" else paste(v, collapse = indent), "")
  cat(summary_rule(title), "\n",
      paste0("    ", formatC(labels, width = -width), vals, "\n"), sep = "")
}

na_to_none <- function(x) if (is.null(x)) "none" else x

# A time the engine leaves "" (not yet) as Metaflow gives it: NULL.
empty_null <- function(x) if (is.null(x) || !nzchar(x)) NULL else x

# ---- metaflow_object ---------------------------------------------------------

#' Metaflow object base class
#'
#' @description The base of \code{flow_client}, \code{run_client},
#' \code{step_client} and \code{task_client}: an identifier, a pathspec, a
#' parent, tags and a creation time.
#' @keywords internal
metaflow_object <- R6::R6Class("metaflow_object",
  public = list(
    #' @description Whether the object is in the current namespace.
    is_in_namespace = function() TRUE,
    #' @description The ids of this object's children (runs, steps, tasks or
    #'   artifact names).
    get_values = function() character(0),
    #' @description In Metaflow R, the wrapped Python object; there is no
    #'   Python here, so it is an error that says what to use instead.
    get_obj = function() {
      stop("get_obj() gave Metaflow R's Python object, and there is no Python here: ",
           "use the client's own fields and methods ($id, $pathspec, $artifact(), ",
           "$summary(), ...)", call. = FALSE)
    }
  )
)

# ---- flow_client ---------------------------------------------------------------

#' Client for a flow's past runs
#'
#' @description An R6 class giving access to the runs of a flow stored in the
#' datastore: the local one (\code{.metaflow} under the working directory, or
#' under \code{METAFLOW_DATASTORE_SYSROOT_LOCAL}; see
#' \code{\link{set_metadata}}), or S3 with
#' \code{METAFLOW_DEFAULT_DATASTORE=s3} (artifacts are downloaded when read).
#' Only runs in the current namespace (\code{\link{get_namespace}}) are seen.
#'
#' @section Usage:
#' \preformatted{
#' f <- flow_client$new("HelloFlow")
#' f$id
#' f$tags
#' f$latest_run
#' f$latest_successful_run
#' f$runs
#' f$run(f$latest_run)
#' f$runs_with_tags("mytag")
#' f$summary()
#' }
#' @export
flow_client <- R6::R6Class("FlowClient",
  inherit = metaflow_object,
  public = list(
    #' @description Load the runs of a flow.
    #' @param flow_id Name of the flow, e.g. \code{"HelloFlow"}.
    initialize = function(flow_id) {
      check_string(flow_id, "flow_id")
      private$flow_id <- flow_id
      res <- engine_call("ListRuns", list(datastore_root = datastore_root(), flow = flow_id))
      if (!length(res$runs)) {
        stop(sprintf("Flow('%s') does not exist in %s", flow_id, get_metadata()), call. = FALSE)
      }
      private$infos <- res$runs
      if (!length(private$visible())) namespace_mismatch()
    },

    #' @description A client for one run of this flow.
    #' @param run_id Run id, or \code{"latest_run"}/\code{"latest_successful_run"}.
    run = function(run_id) run_client$new(self, run_id),

    #' @description Clients for the runs that have all the given tags.
    #' @param ... tags (strings).
    runs_with_tags = function(...) {
      want <- unlist(list(...))
      runs <- Filter(function(r) all(want %in% run_tags(r)), private$visible())
      invisible(lapply(runs, function(r) run_client$new(self, r$run_id)))
    },

    #' @description Print a summary of the flow.
    summary = function() {
      summary_lines(paste0("Flow Summary: ", self$id), list(
        `Created At` = self$created_at,
        `Latest Run` = na_to_none(self$latest_run),
        `Latest Successful Run` = na_to_none(self$latest_successful_run),
        Runs = length(self$runs)), width = 25L)
      invisible(self)
    },

    #' @description Print the flow.
    #' @param ... Unused.
    print = function(...) {
      cat("<FlowClient ", self$id, ": ", length(self$runs), " run(s), latest ",
          na_to_none(self$latest_run), ", latest successful ",
          na_to_none(self$latest_successful_run), ">\n", sep = "")
      invisible(self)
    },

    #' @description Whether the flow has a run in the current namespace.
    is_in_namespace = function() length(private$visible()) > 0,

    #' @description Ids of the runs in the current namespace, newest first.
    get_values = function() self$runs,

    #' @description The engine's description of a run of this flow (a list),
    #'   or \code{NULL}.
    #' @param run_id Run id.
    get_run_info = function(run_id) {
      for (r in private$infos) if (r$run_id == run_id) return(r)
      NULL
    }
  ),
  active = list(
    #' @field id The flow name.
    id = function() private$flow_id,
    #' @field pathspec The flow name.
    pathspec = function() private$flow_id,
    #' @field parent \code{NULL}: a flow is a top-level object.
    parent = function() NULL,
    #' @field tags Tags of the flow's runs in the current namespace.
    tags = function() unique(unlist(lapply(private$visible(), run_tags))),
    #' @field created_at When its oldest run (in the namespace) started.
    created_at = function() {
      v <- private$visible()
      if (length(v)) v[[length(v)]]$created_at else NULL
    },
    #' @field finished_at When its newest run ended (\code{NULL} while it runs,
    #'   as in Metaflow).
    finished_at = function() {
      v <- private$visible()
      if (length(v)) empty_null(v[[1]]$finished_at) else NULL
    },
    #' @field runs Ids of the runs in the current namespace, newest first.
    runs = function() vapply(private$visible(), `[[`, "", "run_id"),
    #' @field latest_run Id of the newest run.
    latest_run = function() {
      v <- private$visible()
      if (length(v)) v[[1]]$run_id else NULL
    },
    #' @field latest_successful_run Id of the newest successful run
    #'   (\code{NULL} if none).
    latest_successful_run = function() {
      for (r in private$visible()) if (r$status == "completed") return(r$run_id)
      NULL
    }
  ),
  private = list(
    flow_id = NULL,
    infos = list(),
    visible = function() Filter(in_namespace, private$infos)
  )
)

#' Load a flow, a run, a step or a task
#'
#' Shortcuts of Metaflow's R client: \code{new_flow("F")} is
#' \code{flow_client$new("F")}, \code{new_run("F", "12")} the run,
#' \code{new_step("F", "12", "start")} a step and
#' \code{new_task("F", "12", "start", "1")} a task.
#'
#' @param flow_id flow name.
#' @param run_id run id.
#' @param step_id step name.
#' @param task_id task id.
#' @return A \code{flow_client}, \code{run_client}, \code{step_client} or
#'   \code{task_client}.
#' @export
new_flow <- function(flow_id) flow_client$new(flow_id)

#' @rdname new_flow
#' @export
new_run <- function(flow_id, run_id) mf_client$new()$flow(flow_id)$run(run_id)

#' @rdname new_flow
#' @export
new_step <- function(flow_id, run_id, step_id) new_run(flow_id, run_id)$step(step_id)

#' @rdname new_flow
#' @export
new_task <- function(flow_id, run_id, step_id, task_id) {
  new_step(flow_id, run_id, step_id)$task(task_id)
}

#' Metaflow client factory
#'
#' @description Creates flow, run, step and task clients, as Metaflow R's
#' \code{mf_client}.
#'
#' @section Usage:
#' \preformatted{
#' client <- mf_client$new()
#' f <- client$flow("HelloFlow")
#' r <- client$run(f, "12")
#' s <- client$step(r, "start")
#' t <- client$task(s, "1")
#' }
#' @export
mf_client <- R6::R6Class("MetaflowClient",
  public = list(
    #' @description A \code{flow_client}.
    #' @param flow_id Flow name.
    flow = function(flow_id) flow_client$new(flow_id),
    #' @description A \code{run_client}.
    #' @param flow_client A \code{flow_client} (or a flow name).
    #' @param run_id Run id.
    run = function(flow_client, run_id) run_client$new(flow_client, run_id),
    #' @description A \code{step_client}.
    #' @param run_client A \code{run_client}.
    #' @param step_id Step name.
    step = function(run_client, step_id) step_client$new(run_client, step_id),
    #' @description A \code{task_client}.
    #' @param step_client A \code{step_client}.
    #' @param task_id Task id.
    task = function(step_client, task_id) task_client$new(step_client, task_id),
    #' @description Print the client.
    #' @param ... Unused.
    print = function(...) {
      cat("<MetaflowClient ", get_metadata(), ", namespace ",
          if (is.null(get_namespace())) "(global)" else get_namespace(), ">\n", sep = "")
      invisible(self)
    }
  )
)

# ---- run_client ------------------------------------------------------------------

#' Client for one run
#'
#' @description An R6 class giving access to one run: its status, tags,
#' steps and the artifacts of its end step.
#'
#' @section Usage:
#' \preformatted{
#' r <- run_client$new(flow, run_id)      # flow: a flow_client or a flow name
#' r <- run_client$new("HelloFlow/12")
#' r$id
#' r$tags
#' r$finished_at
#' r$successful
#' r$steps
#' r$artifacts
#' r$artifact("x")
#' r$step("end")$task(r$end_task)$stdout
#' r$summary()
#' }
#' @export
run_client <- R6::R6Class("RunClient",
  inherit = metaflow_object,
  public = list(
    #' @description Load a run.
    #' @param ... either a pathspec \code{"Flow/run_id"}, or a
    #'   \code{flow_client} (or flow name) and a run id (or
    #'   \code{"latest_run"}/\code{"latest_successful_run"}).
    initialize = function(...) {
      args <- list(...)
      if (length(args) == 1) {
        check_string(args[[1]], "run pathspec")
        parts <- split_pathspec(args[[1]], 2, "run")
        flow <- parts[1]
        run_id <- parts[2]
      } else if (length(args) == 2) {
        flow <- args[[1]]
        run_id <- args[[2]]
      } else {
        stop("run_client$new() takes a pathspec \"Flow/run_id\", or a flow and a run id",
             call. = FALSE)
      }
      if (is.null(run_id)) {
        stop("run_id is NULL: the flow has no such run (flow$latest_successful_run is NULL ",
             "until a run of the flow completes)", call. = FALSE)
      }
      if (is.numeric(run_id) && length(run_id) == 1) run_id <- format(run_id, scientific = FALSE)
      check_string(run_id, "run_id")
      if (run_id %in% c("latest_run", "latest_successful_run")) {
        if (!inherits(flow, "FlowClient")) flow <- flow_client$new(flow)
        id <- flow[[run_id]]
        if (is.null(id)) stop("flow ", flow$id, " has no ", gsub("_", " ", run_id), call. = FALSE)
        run_id <- id
      }
      private$flow_name <- if (inherits(flow, "FlowClient")) flow$id else flow
      check_string(private$flow_name, "flow")
      if (inherits(flow, "FlowClient")) private$flow_obj <- flow
      private$info <- engine_call("GetRun", list(datastore_root = datastore_root(),
                                                 flow = private$flow_name, run_id = run_id))
      if (!in_namespace(private$info)) namespace_mismatch()
    },

    #' @description A client for one step of this run.
    #' @param step_id Step name, e.g. \code{"end"}.
    step = function(step_id) step_client$new(self, step_id),

    #' @description Read an artifact of the end step.
    #' @param name Artifact name.
    artifact = function(name) private$end_client()$artifact(name),

    #' @description Print a summary of the run.
    summary = function() {
      summary_lines(paste0("Run Summary: ", self$id), list(
        Successful = self$successful,
        `Created at` = self$created_at,
        `Finished at` = self$finished_at,
        Time = format_elapsed(self$created_at, self$finished_at)))
      invisible(self)
    },

    #' @description Print the run.
    #' @param ... Unused.
    print = function(...) {
      cat("<RunClient ", self$pathspec, ": ", private$info$status, ", ",
          length(self$steps), " step(s), created ", self$created_at, ">\n", sep = "")
      invisible(self)
    },

    #' @description Whether the run is in the current namespace.
    is_in_namespace = function() in_namespace(private$info),

    #' @description Names of the run's steps.
    get_values = function() self$steps,

    #' @description The engine's description of this run (a list).
    get_info = function() private$info
  ),
  active = list(
    #' @field id The run id.
    id = function() private$info$run_id,
    #' @field flow_id The flow name.
    flow_id = function() private$flow_name,
    #' @field pathspec \code{"Flow/run_id"}.
    pathspec = function() paste(private$flow_name, self$id, sep = "/"),
    #' @field parent The \code{flow_client} of the run's flow.
    parent = function() {
      if (is.null(private$flow_obj)) private$flow_obj <- flow_client$new(private$flow_name)
      private$flow_obj
    },
    #' @field status \code{"running"}, \code{"completed"} or \code{"failed"}.
    status = function() private$info$status,
    #' @field steps Names of the steps that have tasks.
    steps = function() vapply(private$info$steps, `[[`, "", "name"),
    #' @field finished Whether the run completed: its end step did, as in
    #'   Metaflow (a failed or running run is not finished; \code{status}
    #'   tells them apart).
    finished = function() identical(private$info$status, "completed"),
    #' @field successful Whether the run completed successfully.
    successful = function() identical(private$info$status, "completed"),
    #' @field created_at When the run started (ISO 8601 text).
    created_at = function() private$info$created_at,
    #' @field finished_at When the run ended (\code{NULL} while it runs, as in
    #'   Metaflow).
    finished_at = function() empty_null(private$info$finished_at),
    #' @field tags Tags of the run: its system tags (\code{user:NAME},
    #'   \code{runtime:dev}, \code{date:YYYY-MM-DD}) and its \code{--tag}s.
    tags = function() run_tags(private$info),
    #' @field user_tags The run's own \code{--tag}s.
    user_tags = function() unlist(private$info$tags),
    #' @field system_tags The tags Metaflow adds to every run.
    system_tags = function() run_system_tags(private$info),
    #' @field user Who ran it.
    user = function() private$info$user,
    #' @field origin_run_id The run a resume cloned from (\code{""} otherwise).
    origin_run_id = function() private$info$origin_run_id,
    #' @field error Why the run failed (\code{NULL} if it did not).
    error = function() {
      e <- private$info$error
      if (is.null(e) || !nzchar(e)) NULL else e
    },
    #' @field jobs_left_running The ids of the run's remote (AWS Batch) jobs
    #'   its engine did not stop, which may still be running (\code{character(0)}
    #'   if none): jobs a cancellation could not terminate, or left when the R
    #'   session that ran it went away or its engine stopped. \code{batch kill}
    #'   ends them.
    jobs_left_running = function() {
      vapply(private$info$jobs_left_running, function(j) j$job_id, "")
    },
    #' @field code The run's code package (\code{NULL} without one): the files
    #'   sent with \code{--package-suffixes} to run on AWS Batch.
    code = function() code_package(self$pathspec, private$info$code_package),
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
    flow_name = NULL,
    flow_obj = NULL,
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

# The run's code package as an object that prints its files.
code_package <- function(pathspec, files) {
  if (!length(files)) return(NULL)
  df <- data.frame(path = vapply(files, `[[`, "", "path"),
                   size = vapply(files, function(f) as.numeric(f$size), 0),
                   sha = vapply(files, `[[`, "", "sha"), stringsAsFactors = FALSE)
  structure(list(pathspec = pathspec, files = df), class = "metaflow_code")
}

#' @export
print.metaflow_code <- function(x, ...) {
  cat(sprintf("<code package of %s: %d file(s), %s bytes>\n", x$pathspec, nrow(x$files),
              format(sum(x$files$size), big.mark = ",")))
  for (i in seq_len(nrow(x$files))) {
    cat(sprintf("  %s (%s bytes)\n", x$files$path[i], format(x$files$size[i], big.mark = ",")))
  }
  invisible(x)
}

# ---- step_client -----------------------------------------------------------------

#' Client for one step of a run
#'
#' @description An R6 class giving access to the tasks of a step.
#'
#' @section Usage:
#' \preformatted{
#' s <- step_client$new(run, "start")      # run: a run_client
#' s <- step_client$new("HelloFlow/12/start")
#' s$id
#' s$tags
#' s$finished_at
#' s$tasks
#' s$task(s$tasks[1])
#' s$summary()
#' }
#' @export
step_client <- R6::R6Class("StepClient",
  inherit = metaflow_object,
  public = list(
    #' @field run The parent \code{run_client}.
    run = NULL,

    #' @description Load a step.
    #' @param ... either a pathspec \code{"Flow/run_id/step"}, or a
    #'   \code{run_client} and a step name.
    initialize = function(...) {
      args <- list(...)
      if (length(args) == 1) {
        check_string(args[[1]], "step pathspec")
        parts <- split_pathspec(args[[1]], 3, "step")
        run <- run_client$new(parts[1], parts[2])
        step_id <- parts[3]
      } else if (length(args) == 2) {
        run <- args[[1]]
        step_id <- args[[2]]
      } else {
        stop("step_client$new() takes a pathspec \"Flow/run_id/step\", or a run_client and a step name",
             call. = FALSE)
      }
      if (!inherits(run, "RunClient")) stop("run must be a run_client", call. = FALSE)
      check_string(step_id, "step_id")
      info <- Filter(function(s) s$name == step_id, run$get_info()$steps)
      if (!length(info)) {
        stop("run ", run$pathspec, " has no step '", step_id, "' (steps: ",
             paste(run$steps, collapse = ", "), ")", call. = FALSE)
      }
      private$step_id <- step_id
      self$run <- run
      private$info <- info[[1]]
    },

    #' @description A client for one task of this step.
    #' @param task_id Task id.
    task = function(task_id) task_client$new(self, task_id),

    #' @description Print a summary of the step.
    summary = function() {
      summary_lines(paste0("Step Summary: ", self$id), list(
        `# Tasks` = length(self$tasks),
        `Created at` = self$created_at,
        `Finished at` = self$finished_at,
        Time = format_elapsed(self$created_at, self$finished_at)))
      invisible(self)
    },

    #' @description Print the step.
    #' @param ... Unused.
    print = function(...) {
      cat("<StepClient ", self$pathspec, ": ", length(self$tasks), " task(s)>\n", sep = "")
      invisible(self)
    },

    #' @description Ids of the step's tasks.
    get_values = function() self$tasks,

    #' @description The engine's description of the step's tasks (a list).
    get_info = function() private$info
  ),
  active = list(
    #' @field id The step name.
    id = function() private$step_id,
    #' @field pathspec \code{"Flow/run_id/step"}.
    pathspec = function() paste(self$run$pathspec, self$id, sep = "/"),
    #' @field parent The parent \code{run_client}.
    parent = function() self$run,
    #' @field tags The run's tags.
    tags = function() self$run$tags,
    #' @field tasks Ids of the tasks of this step.
    tasks = function() vapply(private$info$tasks, `[[`, "", "task_id"),
    #' @field a_task Id of one task of this step.
    a_task = function() if (length(private$info$tasks)) private$info$tasks[[1]]$task_id else NULL,
    #' @field created_at When its first task started.
    created_at = function() {
      starts <- vapply(private$info$tasks, `[[`, "", "started_at")
      starts <- starts[nzchar(starts)]
      if (!length(starts)) "" else min(starts)
    },
    #' @field finished_at When the last task ended (\code{NULL} while one
    #'   runs, as in Metaflow).
    finished_at = function() {
      ends <- vapply(private$info$tasks, `[[`, "", "finished_at")
      if (!length(ends) || any(!nzchar(ends))) NULL else max(ends)
    }
  ),
  private = list(step_id = NULL, info = NULL)
)

# ---- task_client ------------------------------------------------------------------

#' Client for one task
#'
#' @description An R6 class giving access to a task's artifacts, output and
#' error.
#'
#' @section Usage:
#' \preformatted{
#' t <- task_client$new(step, "1")         # step: a step_client
#' t <- task_client$new("HelloFlow/12/start/1")
#' t$id
#' t$artifacts
#' t$artifact("x")
#' cat(t$stdout)
#' t$successful
#' t$exception
#' t$metadata_dict
#' t$summary()
#' }
#' @export
task_client <- R6::R6Class("TaskClient",
  inherit = metaflow_object,
  public = list(
    #' @field step The parent \code{step_client}.
    step = NULL,

    #' @description Load a task.
    #' @param ... either a pathspec \code{"Flow/run_id/step/task_id"}, or a
    #'   \code{step_client} and a task id.
    initialize = function(...) {
      args <- list(...)
      if (length(args) == 1) {
        check_string(args[[1]], "task pathspec")
        parts <- split_pathspec(args[[1]], 4, "task")
        step <- step_client$new(paste(parts[1:3], collapse = "/"))
        task_id <- parts[4]
      } else if (length(args) == 2) {
        step <- args[[1]]
        task_id <- args[[2]]
      } else {
        stop("task_client$new() takes a pathspec \"Flow/run_id/step/task_id\", or a step_client and a task id",
             call. = FALSE)
      }
      if (!inherits(step, "StepClient")) stop("step must be a step_client", call. = FALSE)
      if (is.numeric(task_id) && length(task_id) == 1) task_id <- format(task_id, scientific = FALSE)
      check_string(task_id, "task_id")
      private$task_id <- task_id
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
      run <- self$step$run
      if (engine_is_remote()) {
        # An engine on another machine: its paths mean nothing here.
        return(stream_artifact(run$flow_id, run$id, self$step$id, self$id, name))
      }
      a <- a[[1]]
      # (what is a promise: its message is built only for an error.)
      if (nzchar(a$path) && !is.null(a$stamp)) {
        v <- tryCatch(list(mp_read_verified(a$path, client_stamp(a$stamp),
                                            sprintf("artifact '%s' of task %s", name, self$pathspec))),
                      mp_stamp_error = function(e) NULL)
        if (!is.null(v)) return(v[[1]])
      }
      # Not on this machine yet (an S3 datastore), or not verified as it is
      # now: the engine downloads it and checks its stamp or hashes it (an
      # error naming the artifact when its content is not its sha's).
      info <- engine_call("GetTask", list(
        datastore_root = datastore_root(), flow = run$flow_id, run_id = run$id,
        step = self$step$id, task_id = self$id, artifact = name))
      a <- Filter(function(x) x$name == name, info$artifacts)[[1]]
      i <- which(vapply(private$info$artifacts, `[[`, "", "name") == name)
      private$info$artifacts[[i]] <- a
      mp_read_verified(a$path, client_stamp(a$stamp), sprintf("artifact '%s' of task %s", name, self$pathspec))
    },

    #' @description Print a summary of the task.
    summary = function() {
      summary_lines(paste0("Task Summary: ", self$id), list(
        Successful = self$successful,
        `Created At` = self$created_at,
        `Finished At` = self$finished_at,
        Time = format_elapsed(self$created_at, self$finished_at),
        Objects = self$artifacts))
      invisible(self)
    },

    #' @description Print the task.
    #' @param ... Unused.
    print = function(...) {
      cat("<TaskClient ", self$pathspec, ": ", private$info$status,
          if (private$info$attempt > 0) paste0(" (attempt ", private$info$attempt, ")"),
          ", ", length(self$artifacts), " artifact(s)>\n", sep = "")
      invisible(self)
    },

    #' @description Names of the task's artifacts.
    get_values = function() self$artifacts,

    #' @description The engine's description of this task (a list).
    get_info = function() private$info
  ),
  active = list(
    #' @field id The task id.
    id = function() private$task_id,
    #' @field pathspec \code{"Flow/run_id/step/task_id"}.
    pathspec = function() paste(self$step$pathspec, self$id, sep = "/"),
    #' @field parent The parent \code{step_client}.
    parent = function() self$step,
    #' @field tags The run's tags.
    tags = function() self$step$run$tags,
    #' @field artifacts Names of the task's artifacts.
    artifacts = function() vapply(private$info$artifacts, `[[`, "", "name"),
    #' @field status \code{"running"}, \code{"completed"} or \code{"failed"}.
    status = function() private$info$status,
    #' @field finished Whether the task completed, as in Metaflow (a failed
    #'   or running task is not finished; \code{status} tells them apart).
    finished = function() identical(private$info$status, "completed"),
    #' @field successful Whether the task completed successfully.
    successful = function() identical(private$info$status, "completed"),
    #' @field exception The error that made the task fail, or that the catch
    #'   decorator caught (a string; \code{NULL} if none).
    exception = function() {
      e <- private$info$error
      if (is.null(e) || !nzchar(e)) NULL else e
    },
    #' @field error The same as \code{exception}, with the exit code as
    #'   attribute \code{exit_code}.
    error = function() {
      e <- self$exception
      if (is.null(e)) NULL else structure(e, exit_code = private$info$exit_code)
    },
    #' @field code The run's code package (\code{NULL} without one).
    code = function() self$step$run$code,
    #' @field index 0-based index in the enclosing foreach (\code{NULL} outside one).
    index = function() if (private$info$foreach_index < 0) NULL else private$info$foreach_index,
    #' @field attempt The attempt number of the latest try (0 first).
    attempt = function() private$info$attempt,
    #' @field metadata_dict The task's metadata as a named list.
    metadata_dict = function() {
      i <- private$info
      run <- self$step$run
      list(`attempt` = i$attempt, `pid` = i$pid, `exit_code` = i$exit_code,
           `started_at` = i$started_at, `finished_at` = i$finished_at,
           `user` = run$user, `runtime` = self$runtime_name,
           `origin-run-id` = run$origin_run_id,
           `ds-type` = if (grepl("^s3@", get_metadata())) "s3" else "local",
           `ds-root` = sub("^[a-z0-9]+@", "", get_metadata()),
           `log_location_stdout` = i$stdout_path, `log_location_stderr` = i$stderr_path)
    },
    #' @field runtime_name Where the task ran: \code{"dev"} (Metaflow's name for
    #'   runs started by hand).
    runtime_name = function() "dev",
    #' @field created_at When the task started.
    created_at = function() private$info$started_at,
    #' @field finished_at When the task ended (\code{NULL} while it runs, as
    #'   in Metaflow).
    finished_at = function() empty_null(private$info$finished_at),
    #' @field stdout The task's standard output (latest attempt).
    stdout = function() private$logs()$stdout,
    #' @field stderr The task's standard error (latest attempt).
    stderr = function() private$logs()$stderr
  ),
  private = list(
    task_id = NULL,
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

#' List the flows
#'
#' The names of the flows in the datastore (\code{\link{get_metadata}}) that
#' have a run in the current namespace (\code{\link{get_namespace}}).
#'
#' @return A character vector of flow names.
#' @export
list_flows <- function() {
  root <- datastore_root()
  ns <- get_namespace()
  with_engine(function(conn) {
    flows <- unlist(grpc_unary(conn, "ListFlows", list(datastore_root = root))$flows)
    if (is.null(ns)) return(as.character(flows))
    keep <- vapply(flows, function(f) {
      runs <- grpc_unary(conn, "ListRuns", list(datastore_root = root, flow = f))$runs
      any(vapply(runs, in_namespace, NA, ns = ns))
    }, NA)
    as.character(flows[keep])
  })
}
