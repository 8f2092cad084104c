# Command line and run() arguments. Both are parsed into the same "run
# options" list and merged, command line over R arguments, so a flow file
# behaves the same under Rscript and in RStudio.

run_commands <- c("run", "resume", "logs", "show", "help", "batch")

# Names run() takes itself; flow parameters cannot use them.
reserved_run_args <- c("flow", "resume", "logs", "show", "batch", "help",
                       "max_workers", "max_num_splits", "tag", "with",
                       "origin_run_id", "package_suffixes", "datastore",
                       "datastore_root", "metadata", "other_args")

# Top-level options (Metaflow takes them before the command; here they may
# be anywhere on the line), allowed with every command.
top_level_options <- c("package-suffixes", "datastore", "datastore-root", "metadata",
                       "no-pylint", "pylint", "environment", "quiet")

# Command line options allowed with each command.
command_options <- list(
  run = c("max-workers", "max-num-splits", "tag", "with", "param"),
  resume = c("max-workers", "max-num-splits", "tag", "with", "origin-run-id", "param"),
  show = c("max-workers", "max-num-splits", "tag", "with", "param"),
  logs = c("attempt", "stdout", "stderr", "both", "timestamps"),
  help = character(0),
  batch = c("my-runs", "run-id", "user")
)

# batch list|kill: what to do with the AWS Batch jobs of the flow.
batch_actions <- c("list", "kill")

new_run_options <- function() {
  list(command = NULL, max_workers = NULL, max_num_splits = NULL, tags = NULL,
       with = list(), resume_step = NULL, origin_run_id = NULL, logs = NULL,
       params = list(), batch_action = NULL, my_runs = NULL, run_id = NULL,
       batch_user = NULL, package_suffixes = NULL, datastore = NULL,
       datastore_root = NULL, quiet = NULL, logs_attempt = NULL, logs_streams = NULL)
}

check_run_id <- function(v, label) {
  if (is.numeric(v) && length(v) == 1 && !is.na(v) && v >= 0 && v == trunc(v)) {
    v <- format(v, scientific = FALSE)
  }
  if (!is.character(v) || length(v) != 1 || is.na(v) || !grepl("^[0-9]+$", v)) {
    shown <- if (is.atomic(v) && length(v) == 1) as.character(v) else deparse1(v)
    stop("invalid value '", shown, "' for ", label, ": expected a run id such as 15",
         call. = FALSE)
  }
  v
}

check_batch_user <- function(v, label) {
  if (!is.character(v) || length(v) != 1 || is.na(v) || !nzchar(v)) {
    stop(label, " must be a user name", call. = FALSE)
  }
  v
}

norm_flag <- function(x) gsub("_", "-", x, fixed = TRUE)

find_parameter <- function(params, key) {
  for (p in params) if (norm_flag(p$name) == norm_flag(key)) return(p)
  NULL
}

parse_int_option <- function(value, label) {
  if (is.numeric(value) && length(value) == 1 && !is.na(value) &&
      value == trunc(value) && abs(value) <= .Machine$integer.max) {
    return(as.integer(value))
  }
  if (is.character(value) && length(value) == 1 && grepl("^[+-]?[0-9]+$", value) &&
      abs(as.numeric(value)) <= .Machine$integer.max) {
    return(as.integer(value))
  }
  shown <- if (is.atomic(value) && length(value) == 1) as.character(value) else deparse1(value)
  stop("invalid value '", shown, "' for ", label, ": expected an integer", call. = FALSE)
}

#' Parse a --with specification: DECO[:key=value[,key=value]]
#' @noRd
parse_with_spec <- function(spec) {
  if (inherits(spec, "metaflow_decorator")) {
    deco <- spec
  } else {
    if (!is.character(spec) || length(spec) != 1 || is.na(spec)) {
      stop("--with values must be strings like \"retry:times=3\"", call. = FALSE)
    }
    bad <- function() {
      stop("invalid --with value '", spec,
           "': expected DECO[:key=value[,key=value]], e.g. retry:times=3", call. = FALSE)
    }
    name <- sub(":.*$", "", spec)
    if (!grepl("^[A-Za-z_][A-Za-z0-9_]*$", name)) bad()
    args <- list()
    if (grepl(":", spec, fixed = TRUE)) {
      rest <- sub("^[^:]*:", "", spec)
      for (kv in strsplit(rest, ",", fixed = TRUE)[[1]]) {
        if (!grepl("^[^=]+=", kv)) bad()
        args[[trimws(sub("=.*$", "", kv))]] <- sub("^[^=]*=", "", kv)
      }
      if (!length(args)) bad()
    }
    deco <- decorator(name, .list = args)
  }
  deco
}

#' Parse command line arguments
#'
#' @param args character vector, as from commandArgs(trailingOnly = TRUE).
#' @param params the flow's parameters (flow$parameters).
#' @param default_command the command when none is given (from run()'s
#'   arguments), which decides the options allowed.
#' @return run options (see new_run_options()); command is NULL if none given.
#' @noRd
parse_cli <- function(args, params = list(), default_command = "run") {
  out <- new_run_options()
  # Help wins over everything else on the line, mistakes included.
  if (any(args %in% c("--help", "-h")) || identical(args[1], "help")) {
    out$command <- "help"
    return(out)
  }
  seen <- character(0)
  positional <- character(0)
  i <- 1L
  n <- length(args)
  cmd_label <- function() if (is.null(out$command)) default_command else out$command
  # --my-runs, --run-id and --user belong to batch; for other commands they
  # may be flow parameters.
  batch_opts <- function() identical(cmd_label(), "batch")
  # --attempt, --stdout, --stderr, --both and --timestamps are logs' own.
  logs_opts <- function() identical(cmd_label(), "logs")
  take_value <- function(flag, inline) {
    if (!is.null(inline)) return(inline)
    if (i >= n || startsWith(args[i + 1L], "--")) {
      stop("option ", flag, " needs a value; see --help", call. = FALSE)
    }
    i <<- i + 1L
    args[i]
  }
  while (i <= n) {
    a <- args[i]
    if (startsWith(a, "--") && nchar(a) > 2) {
      key <- sub("=.*$", "", substring(a, 3))
      inline <- if (grepl("=", a, fixed = TRUE)) sub("^[^=]*=", "", a) else NULL
      flag <- paste0("--", key)
      opt <- norm_flag(key)
      if (opt == "max-workers") {
        out$max_workers <- parse_int_option(take_value(flag, inline), "--max-workers")
      } else if (opt == "max-num-splits") {
        out$max_num_splits <- parse_int_option(take_value(flag, inline), "--max-num-splits")
      } else if (opt == "tag") {
        out$tags <- c(out$tags, take_value(flag, inline))
      } else if (opt == "with") {
        out$with[[length(out$with) + 1]] <- parse_with_spec(take_value(flag, inline))
      } else if (opt == "origin-run-id") {
        out$origin_run_id <- take_value(flag, inline)
      } else if (opt == "package-suffixes") {
        out$package_suffixes <- parse_package_suffixes(take_value(flag, inline))
      } else if (opt == "datastore") {
        out$datastore <- check_datastore_kind(take_value(flag, inline), flag)
      } else if (opt == "datastore-root") {
        out$datastore_root <- take_value(flag, inline)
      } else if (opt == "metadata") {
        check_metadata_kind(take_value(flag, inline), flag)
      } else if (opt == "environment") {
        v <- take_value(flag, inline)
        if (v != "local") {
          stop("invalid value '", v, "' for --environment: only local is supported (tasks use the ",
               "packages installed where they run)", call. = FALSE)
        }
      } else if (opt %in% c("no-pylint", "pylint", "quiet")) {
        if (!is.null(inline)) stop("option ", flag, " takes no value; see --help", call. = FALSE)
        if (opt == "quiet") out$quiet <- TRUE
      } else if (opt == "my-runs" && batch_opts()) {
        if (!is.null(inline)) stop("option --my-runs takes no value; see --help", call. = FALSE)
        out$my_runs <- TRUE
      } else if (opt == "run-id" && batch_opts()) {
        out$run_id <- check_run_id(take_value(flag, inline), "--run-id")
      } else if (opt == "user" && batch_opts()) {
        out$batch_user <- check_batch_user(take_value(flag, inline), "--user")
      } else if (opt == "attempt" && logs_opts()) {
        att <- parse_int_option(take_value(flag, inline), "--attempt")
        if (att < 0L) stop("invalid value '", att, "' for --attempt: attempts count from 0", call. = FALSE)
        out$logs_attempt <- att
      } else if (opt %in% c("stdout", "stderr", "both") && logs_opts()) {
        if (!is.null(inline)) stop("option ", flag, " takes no value; see --help", call. = FALSE)
        out$logs_streams <- unique(c(out$logs_streams,
                                     if (opt == "both") c("stdout", "stderr") else opt))
      } else if (opt == "timestamps" && logs_opts()) {
        stop("logs --timestamps is not available: task logs are kept as the task printed ",
             "them (the console showed each line's time while the run ran)", call. = FALSE)
      } else if (!is.null(p <- find_parameter(params, key))) {
        opt <- "param"
        value <- NULL
        if (isTRUE(p$is_flag) && is.null(inline)) {
          value <- TRUE
        } else if (p$type == "logical" && is.null(inline)) {
          # A logical parameter works as a flag: --flag alone means TRUE.
          nxt <- if (i < n) args[i + 1L] else ""
          if (!is.na(parse_logical(nxt))) {
            value <- nxt
            i <- i + 1L
          } else {
            value <- TRUE
          }
        } else {
          value <- take_value(flag, inline)
        }
        out$params[[p$name]] <- list(value = value, label = paste0("--", norm_flag(p$name)))
      } else {
        stop("unknown option '", flag, "' for '", cmd_label(), "'; see --help",
             call. = FALSE)
      }
      seen[flag] <- opt
    } else if (startsWith(a, "-") && nchar(a) > 1 && !grepl("^-[0-9.]", a)) {
      stop("unknown option '", a, "' for '", cmd_label(), "'; see --help", call. = FALSE)
    } else if (is.null(out$command) && !length(positional) && a %in% c("step-functions", "argo-workflows", "kubernetes")) {
      stop("'", a, "' is not supported: flows run locally or on AWS Batch (--with batch)",
           call. = FALSE)
    } else if (is.null(out$command) && !length(positional) && a %in% run_commands) {
      out$command <- a
      if (a == "help") return(out)
    } else {
      positional <- c(positional, a)
    }
    i <- i + 1L
  }
  command <- if (is.null(out$command)) default_command else out$command
  if (is.null(out$command)) {
    if (length(positional)) stop("unknown command '", positional[1], "'; see --help", call. = FALSE)
  } else if (command == "resume" && length(positional) <= 1) {
    if (length(positional)) out$resume_step <- positional
  } else if (command == "logs" && length(positional) == 1) {
    out$logs <- positional
  } else if (command == "logs") {
    stop("logs needs one argument, RUN/STEP or RUN/STEP/TASK; see --help", call. = FALSE)
  } else if (command == "batch" && length(positional) == 1 && positional %in% batch_actions) {
    out$batch_action <- positional
  } else if (command == "batch" && length(positional) <= 1) {
    stop("batch needs list or kill (batch list, batch kill)",
         if (length(positional)) paste0(", got '", positional, "'"), "; see --help",
         call. = FALSE)
  } else if (length(positional)) {
    stop("unexpected argument '", positional[length(positional)], "' for '", command,
         "'; see --help", call. = FALSE)
  }
  for (flag in names(seen)) {
    if (!seen[[flag]] %in% c(command_options[[command]], top_level_options)) {
      stop("unknown option '", flag, "' for '", command, "'; see --help", call. = FALSE)
    }
  }
  check_batch_options(out, "--")
  out
}

# Like Metaflow: --my-runs excludes --user and --run-id.
check_batch_options <- function(o, prefix) {
  flag <- function(x) if (prefix == "--") paste0("--", norm_flag(x)) else x
  if (isTRUE(o$my_runs) && !is.null(o$batch_user)) {
    stop(flag("my_runs"), " and ", flag("user"), " are mutually exclusive", call. = FALSE)
  }
  if (isTRUE(o$my_runs) && !is.null(o$run_id)) {
    stop(flag("my_runs"), " and ", flag("run_id"), " are mutually exclusive", call. = FALSE)
  }
  invisible(o)
}

#' Parse the arguments given to run() in R
#' @noRd
parse_r_args <- function(args, params = list()) {
  out <- new_run_options()
  if (length(args) && (is.null(names(args)) || any(!nzchar(names(args))))) {
    stop("run() arguments must be named, e.g. run(max_workers = 8); see run(help = TRUE)",
         call. = FALSE)
  }
  is_true <- function(x) isTRUE(x)
  commands <- character(0)
  # batch = "list"/"kill" is a command whose options are my_runs, run_id and
  # user; batch = TRUE is --with batch.
  b <- args[["batch"]]
  if (!is.null(b) && (length(b) != 1 || is.na(b) ||
                      !(is.logical(b) || (is.character(b) && b %in% batch_actions)))) {
    stop("batch must be TRUE or FALSE (run on AWS Batch), or \"list\" or \"kill\"",
         call. = FALSE)
  }
  is_batch_command <- is.character(b)
  for (name in names(args)) {
    v <- args[[name]]
    switch(name,
      max_workers = out$max_workers <- parse_int_option(v, "max_workers"),
      max_num_splits = out$max_num_splits <- parse_int_option(v, "max_num_splits"),
      tag = {
        if (!is.null(v) && (!is.character(v) || anyNA(v))) {
          stop("tag must be a character vector", call. = FALSE)
        }
        out$tags <- c(out$tags, v)
      },
      with = {
        specs <- if (inherits(v, "metaflow_decorator")) list(v) else as.list(v)
        for (s in specs) out$with[[length(out$with) + 1]] <- parse_with_spec(s)
      },
      resume = {
        if (is.character(v) && length(v) == 1 && !is.na(v)) {
          commands <- c(commands, "resume")
          out$resume_step <- v
        } else if (is.logical(v) && length(v) == 1 && !is.na(v)) {
          if (v) commands <- c(commands, "resume")
        } else {
          stop("resume must be TRUE or the name of the step to resume from", call. = FALSE)
        }
      },
      origin_run_id = {
        if (!(is.character(v) || is.numeric(v)) || length(v) != 1 || is.na(v)) {
          stop("origin_run_id must be a single run id", call. = FALSE)
        }
        out$origin_run_id <- as.character(v)
      },
      logs = {
        check_string(v, "logs (RUN/STEP or RUN/STEP/TASK)")
        commands <- c(commands, "logs")
        out$logs <- v
      },
      show = if (is_true(v)) commands <- c(commands, "show"),
      package_suffixes = out$package_suffixes <- parse_package_suffixes(v),
      datastore = out$datastore <- check_datastore_kind(v, "datastore"),
      datastore_root = {
        check_string(v, "datastore_root")
        out$datastore_root <- v
      },
      metadata = check_metadata_kind(v, "metadata"),
      other_args = NULL,
      step_functions = stop("run(step_functions = ...) is not supported: flows run locally ",
                            "or on AWS Batch (run(batch = TRUE))", call. = FALSE),
      help = if (is_true(v)) commands <- c(commands, "help"),
      # run(batch = TRUE) is --with batch.
      batch = if (isTRUE(v)) {
        out$with[[length(out$with) + 1]] <- decorator("batch")
      } else if (is.character(v)) {
        commands <- c(commands, "batch")
        out$batch_action <- v
      },
      {
        p <- find_parameter(params, name)
        if (is_batch_command && name %in% c("my_runs", "run_id", "user")) {
          switch(name,
            my_runs = {
              if (!is.logical(v) || length(v) != 1 || is.na(v)) {
                stop("my_runs must be TRUE or FALSE", call. = FALSE)
              }
              if (v) out$my_runs <- TRUE
            },
            run_id = out$run_id <- check_run_id(v, "run_id"),
            user = out$batch_user <- check_batch_user(v, "user"))
          next
        }
        if (is.null(p) && name %in% c("my_runs", "run_id", "user")) {
          stop(name, " only applies to run(batch = \"list\") and run(batch = \"kill\")",
               call. = FALSE)
        }
        if (is.null(p)) {
          stop("unknown argument '", name, "' for run(): not a run option nor a ",
               "parameter of the flow; see run(help = TRUE)", call. = FALSE)
        }
        out$params[[p$name]] <- list(value = v, label = name)
      }
    )
  }
  if ("help" %in% commands) commands <- "help"
  if (length(commands) > 1) {
    stop("run(): use only one of resume, logs, show, batch = \"list\"|\"kill\" and help",
         call. = FALSE)
  }
  if (length(commands)) out$command <- commands
  if (!is.null(out$origin_run_id) && !identical(out$command, "resume")) {
    stop("origin_run_id only applies when resuming: run(resume = TRUE, origin_run_id = ...)",
         call. = FALSE)
  }
  check_batch_options(out, "")
  out
}

#' Merge run() arguments and command line options, the command line winning
#' @noRd
merge_run_options <- function(r, cli) {
  out <- r
  out$command <- if (!is.null(cli$command)) cli$command else if (!is.null(r$command)) r$command else "run"
  # A command given on the command line replaces the R command's own values.
  if (!is.null(cli$command) && !identical(cli$command, r$command)) {
    out$resume_step <- NULL
    out$origin_run_id <- NULL
    out$logs <- NULL
    out$batch_action <- NULL
    out$my_runs <- NULL
    out$run_id <- NULL
    out$batch_user <- NULL
  }
  for (k in c("max_workers", "max_num_splits", "resume_step", "origin_run_id", "logs",
              "batch_action", "my_runs", "run_id", "batch_user", "package_suffixes",
              "datastore", "datastore_root", "quiet", "logs_attempt", "logs_streams")) {
    if (!is.null(cli[[k]])) out[[k]] <- cli[[k]]
  }
  out$tags <- unique(c(r$tags, cli$tags))
  # --with on the command line replaces an R-side decorator of the same name.
  cli_names <- vapply(cli$with, `[[`, "", "name")
  keep <- Filter(function(d) !d$name %in% cli_names, r$with)
  out$with <- c(keep, cli$with)
  out$params <- utils::modifyList(r$params, cli$params)
  out
}

# --datastore=local|s3 (Metaflow's top-level option).
check_datastore_kind <- function(v, label) {
  if (!is.character(v) || length(v) != 1 || is.na(v) || !v %in% c("local", "s3")) {
    shown <- if (is.atomic(v) && length(v) == 1) as.character(v) else deparse1(v)
    stop("invalid value '", shown, "' for ", label, ": use local or s3", call. = FALSE)
  }
  v
}

# --metadata=local is what Metaflow R users pass; the metadata is always kept
# in the datastore here, so other providers cannot be honoured.
check_metadata_kind <- function(v, label) {
  if (!is.character(v) || length(v) != 1 || is.na(v) || v != "local") {
    shown <- if (is.atomic(v) && length(v) == 1) as.character(v) else deparse1(v)
    stop("invalid value '", shown, "' for ", label, ": only local is supported (runs' ",
         "metadata is kept in the datastore; choose it with --datastore)", call. = FALSE)
  }
  invisible(v)
}

# ---- parameter values ----------------------------------------------------

parse_logical <- function(x) {
  x <- toupper(x)
  if (x %in% c("TRUE", "T", "YES", "1")) return(TRUE)
  if (x %in% c("FALSE", "F", "NO", "0")) return(FALSE)
  NA
}

#' Convert a parameter value given as text to the parameter's type
#' @param value the value (text from the command line, or an R value).
#' @param p the parameter (from flow$parameters).
#' @param label how the user named it, for errors ("--alpha" or "alpha").
#' @noRd
convert_parameter <- function(value, p, label) {
  if (!is.character(value) || length(value) != 1 || is.na(value)) {
    # R values given to run() are used as they are.
    return(value)
  }
  parts <- if (!is.null(p$separator)) strsplit(value, p$separator, fixed = TRUE)[[1]] else value
  bad <- function(x, what) {
    stop("invalid value '", x, "' for ", label, ": expected ", what, call. = FALSE)
  }
  switch(p$type,
    character = parts,
    integer = vapply(parts, function(x) {
      if (!grepl("^[+-]?[0-9]+$", x) || abs(as.numeric(x)) > .Machine$integer.max) {
        bad(x, "an integer")
      }
      as.integer(x)
    }, 0L, USE.NAMES = FALSE),
    numeric = vapply(parts, function(x) {
      v <- suppressWarnings(as.numeric(x))
      if (is.na(v) && trimws(x) != "NA") bad(x, "a number")
      v
    }, 0, USE.NAMES = FALSE),
    logical = vapply(parts, function(x) {
      v <- parse_logical(x)
      if (is.na(v)) bad(x, "TRUE or FALSE")
      v
    }, NA, USE.NAMES = FALSE)
  )
}

#' Final parameter values: given values converted, else defaults
#'
#' @param check_required whether a missing required parameter is an error.
#' @return list of list(name, value, has_value, help, required).
#' @noRd
resolve_parameters <- function(params, given, check_required = TRUE, flow_name = "") {
  lapply(params, function(p) {
    g <- given[[p$name]]
    value <- if (!is.null(g)) {
      convert_parameter(g$value, p, g$label)
    } else if (is.function(p$default)) {
      # Called once, when the run starts (not for show or help).
      if (check_required) call_default(p, flow_name) else NULL
    } else {
      coerce_default(p$default, p)
    }
    if (is.null(value) && p$required && check_required) {
      stop("missing required parameter --", norm_flag(p$name), call. = FALSE)
    }
    list(name = p$name, value = value, has_value = !is.null(value), help = p$help,
         required = p$required)
  })
}

# A default of another R type than the parameter's, converted as Metaflow's
# type converts its default (type = "int", default = 5 is 5L; "float"
# makes an integer default a double; "str" makes a number or logical text);
# a default that would lose something (5.5 as an integer) is kept as given.
# (A function default's value is its own: without a type, the parameter's is
# only a guess.)
coerce_default <- function(v, p) {
  if (is.null(v) || !is.atomic(v) || is.factor(v) || is.null(p$type)) return(v)
  # Text for a typed parameter is converted as a value given on the command
  # line would be (and as a function default's text is: call_default).
  if (is.character(v) && length(v) == 1 && !is.na(v) && p$type != "character") {
    return(convert_parameter(v, p, paste0("the default of ", p$name)))
  }
  if (p$type == "character" && is.numeric(v)) {
    return(stats::setNames(format(v, scientific = FALSE, trim = TRUE, digits = 15), names(v)))
  }
  to <- switch(p$type,
    integer = if (is.double(v) && all(is.na(v) | (abs(v) <= .Machine$integer.max & v == trunc(v)))) "integer",
    numeric = if (is.integer(v)) "double",
    character = if (is.logical(v)) "character")
  if (!is.null(to)) storage.mode(v) <- to # keeps names
  v
}

# ---- help ----------------------------------------------------------------

# A function default of parameter p, called as Metaflow calls one: with no
# argument, or with a context (flow_name, parameter_name, user_name).
call_default <- function(p, flow_name) {
  f <- p$default
  ctx <- list(flow_name = flow_name, parameter_name = p$name, user_name = current_user())
  v <- tryCatch(if (length(formals(f))) f(ctx) else f(), error = function(e) {
    stop("the default of parameter '", p$name, "' failed: ", conditionMessage(e), call. = FALSE)
  })
  if (is.character(v) && length(v) == 1 && !is.na(v) && p$type != "character") {
    v <- convert_parameter(v, p, paste0("the default of ", p$name))
  }
  v
}

format_default <- function(x) {
  if (is.null(x)) return("")
  if (is.function(x)) return("<function>")
  if (is.atomic(x) && length(x) == 1) return(as.character(x))
  paste(deparse(x, width.cutoff = 60L), collapse = " ")
}

# The script Rscript runs, for the usage line.
script_name <- function() {
  file <- sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE))
  if (length(file)) basename(file[1]) else "flow.R"
}

help_text <- function(flow = NULL) {
  lines <- c(
    sprintf("Usage: Rscript %s [COMMAND] [OPTIONS]", script_name()),
    "",
    "Commands:",
    "  run                     Run the flow (the default).",
    "  resume [STEP]           Resume the latest run (or --origin-run-id): steps before",
    "                          STEP (default: the first that failed) are cloned, the rest",
    "                          runs again.",
    "  logs RUN/STEP[/TASK]    Print the stdout and stderr of the tasks of a step;",
    "                          --stdout or --stderr: only that stream; --attempt N:",
    "                          that attempt (0 is the first) instead of the latest.",
    "  show                    Print the steps of the flow.",
    "  batch list|kill         List (or kill) the unfinished AWS Batch jobs of the latest",
    "                          run of this flow; --my-runs: of all your runs of it,",
    "                          --run-id ID: of that run, --user NAME: of all runs of",
    "                          the flow by NAME.",
    "  help                    Print this help (also --help, -h).",
    "",
    "Options of run and resume:",
    "  --max-workers N         Run at most N tasks at once (default 16).",
    "  --max-num-splits N      Fail a foreach with more than N splits (default 100).",
    "  --tag TAG               Tag the run (repeatable).",
    "  --with DECO[:K=V,...]   Add a decorator to every step (repeatable), e.g.",
    "                          --with retry, --with retry:times=3,",
    "                          --with timeout:seconds=30, --with catch:var=err,",
    "                          --with batch (every step on AWS Batch; also",
    "                          --with batch:cpu=2,memory=8000,queue=Q,image=I).",
    "  --origin-run-id ID      resume only: the run to resume (default: the latest).",
    "",
    "Top-level options (before the command, as in Metaflow; any command):",
    "  --package-suffixes=S    Files of the flow's folder with these suffixes (e.g.",
    "                          .R,.csv) go into the run's code package: AWS Batch tasks",
    "                          find them at the same relative paths. Batch runs take",
    "                          one with Metaflow's default suffixes when not given.",
    "  --datastore=local|s3    Where runs are kept (default METAFLOW_DEFAULT_DATASTORE).",
    "  --datastore-root=ROOT   The datastore's root folder or s3://bucket/prefix.",
    "  --metadata=local        Accepted: metadata is kept in the datastore.",
    "  --no-pylint, --environment=local   Accepted and ignored, as Metaflow R passes them.",
    "  --NAME VALUE            Set the flow parameter NAME (also --NAME=VALUE; _ and -",
    "                          are interchangeable), converted to the type of its default."
  )
  if (!is.null(flow) && length(flow$parameters)) {
    lines <- c(lines, "", sprintf("Parameters of %s:", flow$name))
    for (p in flow$parameters) {
      desc <- c(p$type,
                if (p$required) "required",
                if (!is.null(p$default)) paste("default", format_default(p$default)))
      lines <- c(lines, sprintf("  --%-21s %s%s", norm_flag(p$name),
                                paste(desc, collapse = ", "),
                                if (nzchar(p$help)) paste0(": ", p$help) else ""))
    }
  }
  c(lines,
    "",
    "In R (e.g. RStudio) give the same as arguments of run():",
    "  run()  run(max_workers = 32)  run(max_num_splits = 200)  run(tag = c(\"a\", \"b\"))",
    "  run(with = c(\"retry\", \"timeout:seconds=30\"))  run(NAME = VALUE)",
    "  run(resume = TRUE)  run(resume = \"STEP\", origin_run_id = \"15\")",
    "  run(logs = \"15/end\")  run(show = TRUE)  run(help = TRUE)",
    "  run(batch = \"list\")  run(batch = \"kill\", my_runs = TRUE)",
    "  run(batch = \"kill\", run_id = \"456\")  run(batch = \"list\", user = \"savin\")",
    "  run(batch = TRUE, package_suffixes = c(\".R\", \".csv\"), datastore = \"s3\")",
    "Under Rscript, command-line arguments take precedence over those of run().",
    "",
    "AWS Batch: --with batch or decorator(\"batch\", cpu =, memory =, gpu =, queue =,",
    "image =) on a step; configure METAFLOW_BATCH_JOB_QUEUE and",
    "METAFLOW_DATASTORE_SYSROOT_S3. batch list|kill look in METAFLOW_BATCH_JOB_QUEUE",
    "and in the batch(queue =) queues of the selected runs.",
    "",
    "Runs are kept in .metaflow/ here (METAFLOW_DATASTORE_SYSROOT_LOCAL moves it), or",
    "with METAFLOW_DEFAULT_DATASTORE=s3 in METAFLOW_DATASTORE_SYSROOT_S3.",
    "")
}
