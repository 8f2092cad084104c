#' Run a flow, or another command on it
#'
#' One function for the terminal and for interactive R. Under Rscript
#' (\code{Rscript flow.R run --max-workers 8}) the command line is read with
#' \code{commandArgs(trailingOnly = TRUE)} and merged over the arguments of
#' \code{run()}, the command line winning; interactively only the arguments
#' count. Without arguments the flow is run.
#'
#' Commands (command line / R):
#' \describe{
#'   \item{\code{run} / \code{run()}}{Run the flow. Options:
#'     \code{--max-workers N} / \code{max_workers = N} (default 16),
#'     \code{--max-num-splits N} / \code{max_num_splits = N} (default 100),
#'     \code{--tag T} / \code{tag = c(...)} (repeatable),
#'     \code{--with DECO[:k=v[,k=v]]} / \code{with = c(...)} (a decorator
#'     for every step, e.g. \code{retry:times=3}; repeatable), and flow
#'     parameters as \code{--name value} / \code{name = value}.}
#'   \item{\code{resume [STEP] [--origin-run-id ID]} /
#'     \code{run(resume = TRUE)}, \code{run(resume = "step", origin_run_id = "15")}}{
#'     Resume the latest (or the given) run from STEP (default: where it
#'     failed), with the options of \code{run}.}
#'   \item{\code{logs RUN/STEP[/TASK]} / \code{run(logs = "15/end")}}{Print
#'     the stdout and stderr of the tasks of a step; \code{--stdout} or
#'     \code{--stderr} only that stream, \code{--attempt N} that attempt
#'     (0 is the first) instead of the latest (in R:
#'     \code{run(logs = "15/end", other_args = "--attempt 0")}).}
#'   \item{\code{show} / \code{run(show = TRUE)}}{Print the steps of the flow
#'     after the engine validated it.}
#'   \item{\code{help}, \code{--help}, \code{-h} / \code{run(help = TRUE)}}{
#'     Print the usage.}
#' }
#' AWS Batch: \code{--with batch} / \code{run(batch = TRUE)} runs every step
#' as an AWS Batch job, \code{decorator("batch", cpu =, memory =, gpu =,
#' queue =, image =)} one step (configuration: \code{METAFLOW_BATCH_JOB_QUEUE},
#' \code{METAFLOW_DATASTORE_SYSROOT_S3}, see docs/batch.md).
#' \code{batch list} / \code{run(batch = "list")} lists the unfinished Batch
#' jobs of the latest run of the flow (in \code{METAFLOW_BATCH_JOB_QUEUE} and
#' in the \code{batch(queue =)} queues of the selected runs);
#' \code{batch kill} / \code{run(batch = "kill")} terminates them. Options:
#' \code{--my-runs} / \code{my_runs = TRUE} (all your runs of the flow),
#' \code{--run-id ID} / \code{run_id = "ID"} (one run),
#' \code{--user NAME} / \code{user = "NAME"} (all runs of the flow by NAME).
#' Only jobs of this flow, and of the current user unless another is named,
#' are ever listed or killed.
#'
#' The flow is executed by the metaflow engine: the one at
#' \code{METAFLOW_ENGINE_ADDRESS} (\code{unix:///path} or \code{host:port},
#' with \code{METAFLOW_ENGINE_TOKEN} over TCP) or else an embedded engine
#' (\code{metaflow-engine} on the PATH, or \code{METAFLOW_ENGINE_BIN}) started
#' for this call. Runs are stored in \code{.metaflow} under the working
#' directory or under \code{METAFLOW_DATASTORE_SYSROOT_LOCAL}; with
#' \code{METAFLOW_DEFAULT_DATASTORE=s3} in S3 under
#' \code{METAFLOW_DATASTORE_SYSROOT_S3} (environment or
#' \code{~/.metaflowconfig/config.json}).
#'
#' Pressing Ctrl-C cancels the run: its tasks are killed, its AWS Batch jobs
#' terminated, and the run is marked failed. What was ended is printed; a
#' Batch job that could not be terminated (the Batch API unreachable for
#' \code{METAFLOW_BATCH_TERMINATE_TIMEOUT} seconds, default 30) is never
#' counted, but listed with the \code{batch kill} command that ends it. If
#' R itself dies mid-run, local tasks die with it, Batch jobs run on until
#' they end or reach their timeout, and the run's record says so
#' (\code{run_client$jobs_left_running}).
#'
#' @param flow a flow created by \code{\link{metaflow}}.
#' @param ... options and parameter values, see above.
#' @return For \code{run} and \code{resume}, the run id, invisibly. A failed
#'   run is an error.
#' @examples
#' \dontrun{
#' metaflow("HelloFlow") %>%
#'   step(step = "start", r_function = function(self) self$x <- 1,
#'        next_step = "end") %>%
#'   step(step = "end") %>%
#'   run(max_workers = 4, tag = "demo")
#' }
#' @export
run <- function(flow = NULL, ...) {
  interactive <- interactive()
  r_args <- list(...)
  cli_args <- if (interactive) character(0) else commandArgs(trailingOnly = TRUE)
  # Metaflow's escape hatch: more command-line options as text.
  if (!is.null(r_args$other_args)) {
    other <- r_args$other_args
    if (!is.character(other) || anyNA(other)) {
      stop("other_args must be text, e.g. other_args = \"--tag nightly\"", call. = FALSE)
    }
    cli_args <- c(unlist(strsplit(trimws(other), "[[:space:]]+")), cli_args)
    r_args$other_args <- NULL
  }
  run_main(flow, r_args, cli_args, interactive)
}

run_main <- function(flow, r_args, cli_args, interactive) {
  if (!is.null(flow)) check_flow(flow)
  params <- if (is.null(flow)) list() else flow$parameters
  r <- parse_r_args(r_args, params)
  cli <- parse_cli(cli_args, params,
                   default_command = if (is.null(r$command)) "run" else r$command)
  opts <- merge_run_options(r, cli)
  if (opts$command == "help") {
    cat(help_text(flow), sep = "\n")
    return(invisible(NULL))
  }
  if (is.null(flow)) {
    stop("run() needs a flow: metaflow(\"Name\") %>% step(...) %>% run()", call. = FALSE)
  }
  # --datastore / --datastore-root choose the datastore for this command.
  if (!is.null(opts$datastore) || !is.null(opts$datastore_root)) {
    old <- mf_state$metadata
    on.exit(mf_state$metadata <- old, add = TRUE)
    kind <- if (!is.null(opts$datastore)) opts$datastore else datastore_choice()$kind
    mf_state$metadata <- if (!is.null(opts$datastore_root)) {
      parse_metadata(paste0(kind, "@", opts$datastore_root))
    } else if (kind == "s3") {
      d <- datastore_choice()
      if (!nzchar(d$s3_root)) {
        stop("--datastore=s3 needs METAFLOW_DATASTORE_SYSROOT_S3 (or --datastore-root=s3://bucket/prefix)",
             call. = FALSE)
      }
      list(kind = "s3", s3_root = d$s3_root)
    } else {
      list(kind = "local", local_root = default_local_root())
    }
  }
  switch(opts$command,
    logs = show_logs(flow, opts$logs, opts$logs_attempt, opts$logs_streams),
    show = show_flow(flow, opts),
    batch = batch_jobs(flow, opts),
    run = , resume = run_flow(flow, opts, interactive)
  )
}

# ---- the RunRequest --------------------------------------------------------

base_packages <- c("base", "stats", "graphics", "grDevices", "utils", "datasets", "methods")

# Objects of the environment the flow was defined in (and of the global
# environment, which step functions usually close over), for the tasks.
flow_globals <- function(env) {
  envs <- if (identical(env, globalenv())) list(env) else list(globalenv(), env)
  out <- list()
  for (e in envs) {
    names <- setdiff(ls(e, all.names = TRUE), ".Random.seed")
    for (nm in names) {
      v <- get(nm, envir = e, inherits = FALSE)
      if (!inherits(v, "metaflow_flow")) out[nm] <- list(v)
    }
  }
  out
}

# A step without r_function does nothing, like Metaflow's `pass`. Its stand-in
# lives in the global environment: one from this namespace would make the
# task load the metaflow package just to unserialize it.
noop_step_function <- function(join) {
  f <- if (join) function(self, inputs) invisible(NULL) else function(self) invisible(NULL)
  environment(f) <- globalenv()
  f
}

code_bundle <- function(flow) {
  functions <- list()
  for (s in flow$steps) {
    functions[[s$name]] <- if (is.null(s$r_function)) noop_step_function(s$join) else s$r_function
  }
  # Oldest attachment first, so tasks attach them in the same order.
  packages <- setdiff(rev(.packages()), c(base_packages, "metaflow"))
  serialize(list(functions = functions, globals = flow_globals(flow$env),
                 packages = packages), NULL)
}

decorator_message <- function(d) {
  args <- decorator_arg_strings(d$args)
  list(name = d$name,
       args = unname(Map(function(k, v) list(key = k, value = v), names(args), args)))
}

build_run_request <- function(flow, opts, validate_only = FALSE) {
  steps <- lapply(flow$steps, function(s) {
    list(name = s$name, `next` = s$next_step,
         foreach = if (is.null(s$foreach)) "" else s$foreach, join = s$join,
         decorators = lapply(s$decorators, decorator_message))
  })
  values <- resolve_parameters(flow$parameters, opts$params,
                               check_required = !validate_only, flow_name = flow$name)
  parameters <- lapply(values, function(v) {
    list(name = v$name, value = if (v$has_value) mp_pack(v$value) else raw(0),
         help = v$help, required = v$required, has_value = v$has_value)
  })
  options <- list(
    max_workers = if (is.null(opts$max_workers)) 16L else opts$max_workers,
    max_num_splits = if (is.null(opts$max_num_splits)) 100L else opts$max_num_splits,
    tags = opts$tags,
    with = lapply(opts$with, decorator_message),
    resume = identical(opts$command, "resume"),
    resume_step = if (is.null(opts$resume_step)) "" else opts$resume_step,
    origin_run_id = if (is.null(opts$origin_run_id)) "" else opts$origin_run_id,
    datastore_root = datastore_root(),
    rscript = file.path(R.home("bin"), "Rscript"),
    user = current_user(),
    workdir = getwd()
  )
  package <- if (!validate_only && needs_code_package(flow, opts)) {
    collect_code_package(flow_dir(), opts$package_suffixes)
  }
  list(flow = list(name = flow$name, steps = steps, parameters = parameters,
                   code = if (validate_only) raw(0) else code_bundle(flow),
                   package = package),
       options = options)
}

# A run takes its code package (the files of the flow's folder that Batch
# tasks find in their working directory) when a step runs on AWS Batch, when
# the engine is reached over TCP (it may be on another machine), or when
# --package-suffixes asks for one, as Metaflow packages code for remote runs.
needs_code_package <- function(flow, opts) {
  if (!is.null(opts$package_suffixes)) return(TRUE)
  # An engine on another machine runs tasks in a folder of its own.
  if (engine_is_remote()) return(TRUE)
  if (any(vapply(opts$with, function(d) d$name == "batch", NA))) return(TRUE)
  any(vapply(flow$steps, function(s) any(vapply(s$decorators, function(d) d$name == "batch", NA)), NA))
}

# The folder of the flow file: the script Rscript runs, the file source()
# is reading, else the working directory (a notebook's folder).
flow_dir <- function() {
  file <- script_path()
  if (is.null(file)) {
    for (fr in rev(sys.frames())) {
      if (exists("ofile", envir = fr, inherits = FALSE) &&
          exists("srcfile", envir = fr, inherits = FALSE)) {
        f <- get("ofile", envir = fr, inherits = FALSE)
        if (is.character(f) && length(f) == 1 && file.exists(f)) {
          file <- f
          break
        }
      }
    }
  }
  normalizePath(if (is.null(file)) getwd() else dirname(file))
}

# ---- run / resume ----------------------------------------------------------

console_line <- function(line, to_stderr) {
  con <- if (to_stderr) stderr() else stdout()
  cat(line, if (!endsWith(line, "\n")) "\n", sep = "", file = con)
  flush(con)
}

run_flow <- function(flow, opts, interactive) {
  req <- build_run_request(flow, opts)
  run_id <- ""
  finished <- NULL
  interrupted <- FALSE
  handler <- function(ev) {
    if (ev$kind == RUN_EVENT_LOG) {
      console_line(ev$line, ev$stderr)
    } else if (ev$kind == RUN_EVENT_RUN_STARTED) {
      run_id <<- ev$run_id
    } else if (ev$kind == RUN_EVENT_RUN_FINISHED) {
      if (nzchar(ev$run_id)) run_id <<- ev$run_id
      finished <<- ev
    }
  }
  with_engine(function(conn) {
    tryCatch(
      grpc_stream(conn, "StartRun", req, handler),
      interrupt = function(i) {
        interrupted <<- TRUE
        cancel_run(conn, flow$name, run_id, interactive)
        # Finalize the interrupted stream's curl handle so its connection
        # closes: the engine then cancels a run whose id we never learnt.
        invisible(gc(verbose = FALSE))
      }
    )
  })
  # Reached after with_engine() has shut an embedded engine down.
  if (interrupted) {
    if (!interactive) quit(save = "no", status = 130)
    stop("Run interrupted", call. = FALSE)
  }
  if (is.null(finished)) {
    stop("the metaflow engine ended the run without a result", call. = FALSE)
  }
  if (!finished$success) {
    msg <- if (nzchar(finished$error)) finished$error else sprintf("Run %s failed", run_id)
    stop(msg, call. = FALSE)
  }
  invisible(run_id)
}

# Called on Ctrl-C. Closing the stream alone would make the engine abandon
# the run (remote jobs left running, as when R dies); CancelRun cancels it,
# terminating its AWS Batch jobs (TerminateJob is retried for up to
# METAFLOW_BATCH_TERMINATE_TIMEOUT, 30 s), and says what it ended.
cancel_run <- function(conn, flow_name, run_id, interactive = FALSE) {
  if (!nzchar(run_id)) {
    console_line("Run interrupted before it started; the engine cancels it.", TRUE)
    return(invisible(NULL))
  }
  res <- tryCatch(
    grpc_unary(conn, "CancelRun", list(run_id = run_id, datastore_root = datastore_root(),
                                       flow = flow_name), timeout = 150),
    error = function(e) e,
    interrupt = function(i) i)
  if (inherits(res, "interrupt")) {
    console_line(sprintf(paste("Run %s interrupted; not waiting for its tasks to end (the engine",
                               "goes on stopping them). Jobs that may still be running:",
                               "%s"), run_id, kill_command("batch", "list", run_id, interactive)), TRUE)
  } else if (inherits(res, "error")) {
    console_line(sprintf("Run %s interrupted; cancelling it failed: %s", run_id,
                         conditionMessage(res)), TRUE)
  } else {
    for (l in format_cancel_report(run_id, res, interactive)) console_line(l, TRUE)
  }
  invisible(NULL)
}

# The command that lists or kills a run's jobs of an executor decorator
# ("batch"), as the user would type it: in the terminal or in R.
kill_command <- function(decorator, action, run_id, interactive) {
  if (interactive) {
    sprintf('run(%s = "%s", run_id = "%s")', decorator, action, run_id)
  } else {
    file <- script_path()
    sprintf("Rscript %s %s %s --run-id %s", if (is.null(file)) "flow.R" else file,
            decorator, action, run_id)
  }
}

# What a CancelRun response says: how many tasks were ended, and the jobs
# that could not be stopped (never counted as ended) with the command that
# ends them.
format_cancel_report <- function(run_id, res, interactive = FALSE) {
  jobs <- res$jobs
  left <- Filter(function(j) !isTRUE(j$ended), jobs)
  ended_jobs <- length(jobs) - length(left)
  head <- sprintf("Run %s interrupted: ended %d task(s)%s", run_id, res$killed_tasks,
                  if (ended_jobs > 0) sprintf(" (%d of them AWS Batch job(s), terminated)", ended_jobs) else "")
  if (!length(left)) return(paste0(head, "."))
  field <- function(js, name) vapply(js, function(j) as.character(j[[name]]), "")
  out <- character(0)
  groups <- split(left, paste(field(left, "executor"), field(left, "decorator"), sep = "\r"))
  for (g in groups) {
    what <- if (nzchar(g[[1]]$executor)) g[[1]]$executor else "remote"
    causes <- unique(field(g, "error"))
    line <- sprintf("%d %s job(s) could not be stopped (%s): %s.", length(g), what,
                    paste(causes, collapse = "; "), paste(field(g, "job_id"), collapse = ", "))
    deco <- g[[1]]$decorator
    if (nzchar(deco)) {
      line <- paste(line, "They run until they end or reach their timeout. End them with:",
                    kill_command(deco, "kill", run_id, interactive))
    }
    out <- c(out, line)
  }
  c(paste0(head, "; ", out[1]), out[-1])
}

# ---- logs ------------------------------------------------------------------

# attempt: NULL for each task's latest; streams: NULL for both.
show_logs <- function(flow, pathspec, attempt = NULL, streams = NULL) {
  req <- list(datastore_root = datastore_root(), flow = flow$name, pathspec = pathspec)
  if (!is.null(attempt)) req <- c(req, list(attempt = attempt, has_attempt = TRUE))
  if (is.null(streams)) streams <- c("stdout", "stderr")
  res <- with_engine(function(conn) grpc_unary(conn, "Logs", req))
  tasks <- res$tasks
  if (!length(tasks)) stop("no tasks found for ", pathspec, call. = FALSE)
  run_id <- sub("/.*$", "", pathspec)
  for (t in tasks) {
    if (length(tasks) > 1) {
      console_line(sprintf("== %s/%s/%s (attempt %d) ==", run_id, t$step, t$task_id,
                           t$attempt), FALSE)
    }
    if ("stdout" %in% streams && nzchar(t$stdout)) {
      cat(t$stdout, if (!endsWith(t$stdout, "\n")) "\n", sep = "")
    }
    if ("stderr" %in% streams && nzchar(t$stderr)) {
      cat(t$stderr, if (!endsWith(t$stderr, "\n")) "\n", sep = "", file = stderr())
    }
  }
  invisible(NULL)
}

# ---- batch list / batch kill -----------------------------------------------

# The BatchJobs request for the options: the latest run (the engine finds it
# in the datastore), --run-id, or every run (--my-runs, --user), always of
# one user: the current one unless --user names another.
batch_jobs_request <- function(flow, opts) {
  check_batch_options(opts, "--")
  user <- if (!is.null(opts$batch_user)) opts$batch_user else current_user()
  all_runs <- is.null(opts$run_id) && (isTRUE(opts$my_runs) || !is.null(opts$batch_user))
  list(flow = flow$name, datastore_root = datastore_root(),
       run_id = if (is.null(opts$run_id)) "" else opts$run_id, user = user,
       all_runs = all_runs, kill = identical(opts$batch_action, "kill"))
}

# Lines for a BatchJobs response, in the spirit of Metaflow's batch list|kill.
format_batch_jobs <- function(flow_name, req, res) {
  scope <- if (req$all_runs) {
    sprintf("flow %s, runs of user %s", flow_name, req$user)
  } else {
    sprintf("flow %s run %s", flow_name, res$run_id)
  }
  jobs <- res$jobs
  if (!length(jobs)) return(list(out = sprintf("No running AWS Batch jobs for %s.", scope),
                                 err = character(0)))
  what <- function(j) sprintf("%s (step %s, task %s, run %s%s)", j$job_id, j$step, j$task_id,
                              j$run_id, if (j$attempt > 0) sprintf(", attempt %d", j$attempt) else "")
  out <- character(0)
  err <- character(0)
  if (!req$kill) {
    for (j in jobs) out <- c(out, sprintf("Job %s is %s", what(j), j$status))
    out <- c(out, sprintf("%d running AWS Batch job%s for %s.", length(jobs),
                          if (length(jobs) == 1) "" else "s", scope))
  } else {
    for (j in jobs) {
      if (nzchar(j$error)) {
        err <- c(err, sprintf("Could not kill job %s: %s", what(j), j$error))
      } else {
        out <- c(out, sprintf("Killing job %s (was %s)", what(j), j$status))
      }
    }
    out <- c(out, sprintf("Killed %d AWS Batch job%s of %s.", res$killed,
                          if (res$killed == 1) "" else "s", scope))
  }
  list(out = out, err = err)
}

batch_jobs <- function(flow, opts) {
  req <- batch_jobs_request(flow, opts)
  res <- with_engine(function(conn) grpc_unary(conn, "BatchJobs", req, timeout = 300))
  lines <- format_batch_jobs(flow$name, req, res)
  for (l in lines$out) console_line(l, FALSE)
  for (l in lines$err) console_line(l, TRUE)
  if (length(lines$err)) {
    stop(sprintf("could not kill %d of %d AWS Batch jobs", length(lines$err), length(res$jobs)),
         call. = FALSE)
  }
  invisible(res)
}

# ---- show ------------------------------------------------------------------

show_flow <- function(flow, opts) {
  req <- build_run_request(flow, opts, validate_only = TRUE)
  res <- with_engine(function(conn) grpc_unary(conn, "Validate", req))
  cat(format_flow(flow, res$order, opts$with), sep = "\n")
  invisible(NULL)
}

# Lines describing the flow, in Metaflow's `show` layout, steps in `order`.
format_flow <- function(flow, order = character(0), with = list()) {
  names <- vapply(flow$steps, `[[`, "", "name")
  order <- c(order[order %in% names], setdiff(names, order))
  lines <- c(sprintf("Flow %s", flow$name), "")
  if (length(flow$parameters)) {
    lines <- c(lines, "Parameters")
    for (p in flow$parameters) {
      desc <- c(p$type, if (p$required) "required",
                if (!is.null(p$default)) paste("default", format_default(p$default)))
      lines <- c(lines, sprintf("    --%s (%s)%s", norm_flag(p$name), paste(desc, collapse = ", "),
                                if (nzchar(p$help)) paste0(": ", p$help) else ""))
    }
    lines <- c(lines, "")
  }
  if (length(with)) {
    lines <- c(lines, paste("With every step:",
                            paste(vapply(with, format_decorator, ""), collapse = " ")), "")
  }
  for (nm in order) {
    s <- flow$steps[[match(nm, names)]]
    lines <- c(lines, sprintf("Step %s%s", s$name, if (s$join) "  (join)" else ""))
    for (d in s$decorators) lines <- c(lines, paste0("    ", format_decorator(d)))
    if (length(s$next_step)) {
      arrow <- paste0("    => ", paste(s$next_step, collapse = ", "))
      if (!is.null(s$foreach)) arrow <- paste0(arrow, "  (foreach over self$", s$foreach, ")")
      lines <- c(lines, arrow)
    }
    lines <- c(lines, "")
  }
  lines
}

# Metaflow's user name: METAFLOW_USER, then USER, then the account name.
current_user <- function() {
  for (v in c("METAFLOW_USER", "USER", "LOGNAME")) {
    u <- Sys.getenv(v)
    if (nzchar(u)) return(u)
  }
  Sys.info()[["user"]]
}
