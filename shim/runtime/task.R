# The base-R task runtime: runs one step of a flow as one Rscript process.
#   Rscript task.R <spec.mpk>
# It needs base R only (it runs in a stock rocker/r-ver image). The engine
# writes the spec; this file writes staged artifacts and _result.mpk into the
# spec's output_dir, which the engine commits into the datastore.
local({
  # The JIT would byte-compile every runtime function on its first call, which
  # costs more than the work itself in a short-lived process; the step's own
  # code runs with the JIT level R started with.
  jit_level <- compiler::enableJIT(0)
  file_arg <- grep("^--file=", commandArgs(), value = TRUE)
  script <- sub("^--file=", "", file_arg[1L])
  here <- dirname(script)
  rt <- new.env()
  sys.source(file.path(here, "msgpack.R"), envir = rt)

  reserved <- c("input", "index", "inputs", "self", "name")

  rt$check_name <- function(name, spec) {
    if (name %in% reserved || startsWith(name, "_") || startsWith(name, ".")) {
      stop(sprintf("artifact name '%s' is reserved: choose another name", name), call. = FALSE)
    }
    if (!identical(make.names(name), name)) {
      stop(sprintf("'%s' is not a valid artifact name: use a syntactic R name such as '%s'",
                   name, make.names(name)), call. = FALSE)
    }
    if (name %in% unlist(spec$parameters)) {
      stop(sprintf("'%s' is a parameter of the flow and cannot be assigned in a step", name),
           call. = FALSE)
    }
  }

  # A self object: values assigned in this task plus lazily read inherited
  # artifacts (name -> list(sha, path, stamp)); only what the step touches is
  # loaded, each checked against the stamp it was verified under. from is
  # the pathspec of the task the artifacts come from (an artifact merged
  # from another input carries its own).
  rt$new_self <- function(inherited, input = NULL, index = -1L, readonly = FALSE, label = "self",
                          from = "") {
    s <- new.env(parent = emptyenv())
    s$.inherited <- inherited
    s$.from <- from
    s$.values <- new.env(parent = emptyenv())
    s$.assigned <- character()
    s$.input <- input
    s$.index <- index
    s$.readonly <- readonly
    s$.label <- label
    class(s) <- "metaflow_self"
    s
  }

  rt$self_get <- function(x, name) {
    vals <- .subset2(x, ".values")
    if (exists(name, envir = vals, inherits = FALSE)) return(get(name, envir = vals))
    if (name == "input" && !is.null(.subset2(x, ".input"))) {
      inp <- .subset2(x, ".input")
      # The engine usually gives the element alone ("whole"), in the spec
      # (doc) or in a file; else the foreach value, whose element R takes
      # itself.
      v <- if (is.raw(inp$doc)) rt$mp_unpack(inp$doc) else
        rt$mp_read_verified(inp$path, inp$stamp,
                            sprintf("self$input (an element of the foreach value of %s)", .subset2(x, ".from")))
      if (!isTRUE(inp$whole)) v <- v[[inp$index + 1L]]
      assign(name, v, envir = vals)
      return(v)
    }
    if (name == "index" && .subset2(x, ".index") >= 0L) return(.subset2(x, ".index"))
    art <- .subset2(x, ".inherited")[[name]]
    # A parameter given no value (no default, not required) is NULL.
    if (is.null(art) && name %in% unlist(rt$spec$parameters)) return(NULL)
    if (is.null(art)) {
      stop(sprintf("%s has no artifact '%s' in step %s: assign it in an earlier step (self$%s <- value)",
                   .subset2(x, ".label"), name, rt$spec$step, name), call. = FALSE)
    }
    from <- if (is.null(art$from)) .subset2(x, ".from") else art$from
    v <- rt$mp_read_verified(art$path, art$stamp, sprintf("artifact '%s' of %s", name, from))
    assign(name, v, envir = vals)
    v
  }

  rt$self_set <- function(x, name, value) {
    if (isTRUE(.subset2(x, ".readonly"))) {
      stop(sprintf("inputs are read-only: assign self$%s in the join step instead", name), call. = FALSE)
    }
    rt$check_name(name, rt$spec)
    assign(name, value, envir = .subset2(x, ".values"))
    if (!name %in% .subset2(x, ".assigned")) assign(".assigned", c(.subset2(x, ".assigned"), name), envir = x)
    invisible(x)
  }

  api <- new.env()
  api$`$.metaflow_self` <- function(x, name) rt$self_get(x, name)
  api$`[[.metaflow_self` <- function(x, i, ...) rt$self_get(x, i)
  api$`$<-.metaflow_self` <- function(x, name, value) rt$self_set(x, name, value)
  api$`[[<-.metaflow_self` <- function(x, i, value) rt$self_set(x, i, value)
  api$names.metaflow_self <- function(x) {
    union(names(.subset2(x, ".inherited")), .subset2(x, ".assigned"))
  }
  api$print.metaflow_self <- function(x, ...) {
    cat(sprintf("<%s of %s: %s>\n", .subset2(x, ".label"), rt$spec$step,
                paste(names(x), collapse = ", ")))
    invisible(x)
  }
  current_one <- function(value) {
    cur <- rt$spec$current
    # Metaflow's current.is_running_flow and current.tempdir (the task's
    # own temporary folder, which R calls tempdir()).
    if (identical(value, "is_running_flow")) return(TRUE)
    if (identical(value, "tempdir")) return(tempdir())
    known <- c(names(cur), "is_running_flow", "tempdir")
    if (!is.character(value) || length(value) != 1L || !value %in% known) {
      stop(sprintf("current(\"%s\") is unknown: use one of %s", paste(value, collapse = ", "),
                   paste(known, collapse = ", ")), call. = FALSE)
    }
    v <- cur[[value]]
    # As Metaflow: no origin run (not a resume) is NULL.
    if (value == "origin_run_id" && !nzchar(v)) return(NULL)
    if (value == "retry_count") v <- as.integer(v)
    if (value == "tags") v <- if (nzchar(v)) strsplit(v, ",", fixed = TRUE)[[1L]] else character()
    v
  }
  api$current <- function(value) {
    if (!missing(value)) return(current_one(value))
    # Every value, each as current(name) gives it.
    known <- c(names(rt$spec$current), "is_running_flow", "tempdir")
    all <- lapply(known, current_one)
    names(all) <- known
    all
  }
  # merge_artifacts(self, inputs): carry over every artifact the inputs agree
  # on. Artifacts that differ between inputs must be assigned in the join
  # first, or excluded.
  # The first argument is called flow, as in Metaflow R: merge_artifacts(flow = self, ...);
  # self = self works too (then a positional inputs lands in flow).
  api$merge_artifacts <- function(flow, inputs, exclude = NULL, include = NULL, self) {
    if (missing(self)) {
      self <- flow
    } else if (missing(inputs) && !missing(flow)) {
      inputs <- flow
    }
    # Metaflow R passes exclude = list("a", "b").
    exclude <- as.character(unlist(exclude))
    if (!is.null(include)) include <- as.character(unlist(include))
    shas <- list()
    for (i in seq_along(inputs)) {
      inh <- .subset2(inputs[[i]], ".inherited")
      for (nm in names(inh)) shas[[nm]] <- rbind(shas[[nm]], data.frame(i = i, sha = inh[[nm]]$sha))
    }
    params <- unlist(rt$spec$parameters)
    todo <- setdiff(names(shas), c(params, .subset2(self, ".assigned"), exclude))
    if (!is.null(include)) {
      missing <- setdiff(include, names(shas))
      if (length(missing)) stop(sprintf("merge_artifacts: no input has artifact(s) %s",
                                        paste(missing, collapse = ", ")), call. = FALSE)
      todo <- intersect(todo, include)
    }
    for (nm in todo) {
      d <- shas[[nm]]
      if (length(unique(d$sha)) > 1L) {
        stop(sprintf(paste0("merge_artifacts: inputs disagree on artifact '%s': assign self$%s ",
                            "in the join before merging, or pass exclude = \"%s\""), nm, nm, nm),
             call. = FALSE)
      }
      rt$merged[[nm]] <- d$i[1L] - 1L
      inh <- .subset2(self, ".inherited")
      art <- .subset2(inputs[[d$i[1L]]], ".inherited")[[nm]]
      art$from <- .subset2(inputs[[d$i[1L]]], ".from")
      inh[[nm]] <- art
      assign(".inherited", inh, envir = self)
    }
    invisible(self)
  }
  # get_metadata() and get_namespace() answer without the metaflow package
  # (a Batch container has base R only): the run's datastore and namespace,
  # unless the step changed them with the package's set_metadata() or
  # set_namespace().
  api$get_metadata <- function() {
    if (isNamespaceLoaded("metaflow")) return(getExportedValue("metaflow", "get_metadata")())
    rt$spec$current$metadata
  }
  api$get_namespace <- function() {
    if (isNamespaceLoaded("metaflow")) return(getExportedValue("metaflow", "get_namespace")())
    rt$spec$current$namespace
  }
  # quit() would end the task before its artifacts are stored: a step ends
  # by returning, or fails with stop().
  api$quit <- api$q <- function(...) {
    stop(sprintf(paste0("quit() was called in step %s: a step ends by returning ",
                        "(or fails with stop()); its artifacts are stored when it returns"),
                 rt$spec$step), call. = FALSE)
  }
  # gather_inputs(inputs, "x"): the x of every input of a join, in order.
  api$gather_inputs <- function(inputs, input) {
    lapply(seq_along(inputs), function(i) inputs[[i]][[input]])
  }
  # The runtime runs uncompiled also when the step's code calls it (self$x,
  # merge_artifacts(), ...): each entry point turns the JIT off while the
  # runtime works, or the JIT would byte-compile every runtime function the
  # call reaches, in every task (~0.1-0.2 s: more than a short task's work).
  for (nm in ls(api, all.names = TRUE)) local({
    runtime_fn <- get(nm, envir = api)
    assign(nm, function(...) {
      jit <- compiler::enableJIT(0L)
      on.exit(compiler::enableJIT(jit))
      v <- withVisible(runtime_fn(...))
      if (v$visible) v$value else invisible(v$value)
    }, envir = api)
  })
  attach(api, name = "metaflow:runtime", warn.conflicts = FALSE)
  # The client API (flow_client, run_client, get_metadata(), ...) inside a
  # step, as Metaflow R offers it there: taken from the metaflow package on
  # first use, so tasks that do not use it never load it (a container image
  # has base R only; there, using it says so).
  client_api <- c("flow_client", "run_client", "step_client", "task_client", "mf_client",
                  "new_flow", "new_run", "new_step", "new_task", "list_flows",
                  "set_metadata", "reset_default_metadata",
                  "set_namespace", "set_default_namespace",
                  "container_image", "r_version", "metaflow_location", "version_info")
  rt_env <- as.environment("metaflow:runtime")
  for (nm in client_api) local({
    name <- nm
    makeActiveBinding(name, function() {
      if (!requireNamespace("metaflow", quietly = TRUE)) {
        stop(sprintf("%s needs the metaflow R package, which is not installed for %s",
                     name, file.path(R.home("bin"), "Rscript")), call. = FALSE)
      }
      getExportedValue("metaflow", name)
    }, rt_env)
  })
  for (m in c("$", "[[", "$<-", "[[<-", "names", "print")) {
    registerS3method(m, "metaflow_self", get(paste0(m, ".metaflow_self"), envir = api), envir = baseenv())
  }
  options(warn = 1)

  # The flow's code: attach the packages the flow had attached, then restore
  # globals. A warm start's zygote (zygote.R) does this once for all tasks.
  load_code <- function(path, fail) {
    code <- tryCatch(unserialize(readBin(path, "raw", file.size(path))),
                     error = function(e) fail(paste("cannot read the flow's code bundle:", conditionMessage(e))))
    for (p in code$packages) {
      ok <- suppressPackageStartupMessages(requireNamespace(p, quietly = TRUE))
      if (!ok) fail(sprintf("package '%s' (attached when the flow was started) is not installed for %s",
                            p, file.path(R.home("bin"), "Rscript")))
      suppressPackageStartupMessages(library(p, character.only = TRUE))
    }
    for (nm in names(code$globals)) assign(nm, code$globals[[nm]], envir = globalenv())
    code
  }

  # Runs the task of a spec; code is the loaded code bundle (NULL: load it).
  # spec: the spec file's path, or its bytes (a warm start's zygote).
  run_task <- function(spec, code = NULL) {
  rt$spec <- if (is.raw(spec)) rt$mp_unpack_plain(spec) else rt$mp_read_plain(spec)
  rt$merged <- list()
  spec <- rt$spec
  # base::quit: the steps' quit() (metaflow:runtime) refuses to end a task.
  fail <- function(msg, calls = NULL) {
    # Where the staging folder cannot be written either (read-only), the
    # engine takes the error from the stderr line below.
    tryCatch(suppressWarnings(writeLines(msg, file.path(spec$output_dir, "_error.txt"))),
             error = function(e) NULL)
    # catch(print_exception = FALSE): the error is kept, not printed.
    if (isTRUE(spec$quiet_errors)) base::quit(save = "no", status = 1L)
    if (!startsWith(msg, "Error")) msg <- paste("Error:", msg)
    cat(msg, "\n", sep = "", file = stderr())
    if (length(calls)) {
      cat("Call stack:\n", file = stderr())
      for (i in seq_along(calls)) {
        cat(sprintf("  %d: %s\n", i, paste(deparse(calls[[i]], width.cutoff = 100L)[1L])), file = stderr())
      }
    }
    base::quit(save = "no", status = 1L)
  }

  arts_of <- function(inp) {
    a <- inp$artifacts
    if (is.null(a)) list() else a
  }
  from_of <- function(inp) paste(spec$flow, spec$run_id, inp$step, inp$task_id, sep = "/")

  if (is.null(code)) code <- load_code(spec$code, fail)
  fn <- code$functions[[spec$step]]
  if (!is.function(fn)) fail(sprintf("step %s has no r_function", spec$step))

  inputs <- spec$inputs
  if (isTRUE(spec$join)) {
    params <- unlist(spec$parameters)
    first <- arts_of(inputs[[1L]])
    self <- rt$new_self(first[intersect(names(first), params)], from = from_of(inputs[[1L]]))
    ins <- lapply(inputs, function(inp) rt$new_self(arts_of(inp), readonly = TRUE,
                                                    label = paste0("input ", inp$step, "/", inp$task_id),
                                                    from = from_of(inp)))
    steps <- vapply(inputs, function(inp) inp$step, "")
    if (!anyDuplicated(steps)) names(ins) <- steps
    call_step <- function() fn(self, ins)
  } else {
    self <- rt$new_self(arts_of(inputs[[1L]]), input = spec[["input", exact = TRUE]],
                        index = if (is.null(spec$index)) -1L else as.integer(spec$index),
                        from = from_of(inputs[[1L]]))
    call_step <- function() fn(self)
  }

  calls <- NULL
  tryCatch(
    withCallingHandlers({
      compiler::enableJIT(jit_level)
      call_step()
      compiler::enableJIT(0)
    }, error = function(e) {
      cs <- sys.calls()
      # Keep the user's frames: from the step function down to the error.
      start <- which(vapply(cs, function(cl) identical(cl, quote(fn(self))) ||
                              identical(cl, quote(fn(self, ins))), TRUE))
      if (length(start)) cs <- cs[start[1L]:length(cs)]
      # Cut at the runtime's own frames (self's methods, the handler).
      internal <- vapply(cs, function(cl) {
        grepl("metaflow_self|^rt\\$|^runtime_fn$|^stop$|^h$|^\\.handleSimpleError$", deparse(cl[[1L]])[1L])
      }, TRUE)
      keep <- if (any(internal)) which(internal)[1L] - 1L else length(cs)
      cs <- cs[seq_len(keep)]
      if (length(cs)) cs[[1L]][[1L]] <- as.name(spec$step)  # "fn(self)" -> "end(self)"
      calls <<- cs
    }),
    error = function(e) {
      cl <- conditionCall(e)
      # "Error in fn(self)" names the runtime's variable: say the step's name.
      if (identical(cl, quote(fn(self))) || identical(cl, quote(fn(self, ins)))) {
        cl[[1L]] <- as.name(spec$step)
      }
      msg <- conditionMessage(e)
      if (!is.null(cl)) msg <- paste0("Error in ", paste(deparse(cl)[1L]), " : ", msg)
      fail(msg, calls)
    })

  foreach_count <- -1L
  if (nzchar(spec$foreach_var)) {
    fv <- spec$foreach_var
    v <- tryCatch(rt$self_get(self, fv), error = function(e) {
      fail(sprintf("foreach artifact '%s' was not found: step %s must assign self$%s", fv, spec$step, fv))
    })
    if (is.null(v) || !(is.atomic(v) || is.list(v))) {
      fail(sprintf("foreach artifact '%s' is not iterable (it is a %s): assign a vector or a list",
                   fv, class(v)[1L]))
    }
    foreach_count <- length(v)
  }
  # Values that cannot survive the end of this process (an external pointer,
  # a connection) are refused by name rather than stored broken.
  # rapply calls the function only on leaves of those classes, so a large
  # list costs no R call per element.
  rt$unstorable <- function(x) {
    hits <- rapply(list(x), function(e) {
      if (typeof(e) == "externalptr") "an external pointer" else "a connection"
    }, classes = c("externalptr", "connection"), deflt = NULL, how = "unlist")
    if (length(hits)) hits[[1L]] else NULL
  }
  # R reports a failed write (a full disk, a read-only or failing file
  # system) as a warning and goes on, leaving a short file: here the first
  # one stops the write, the partial file is removed and the task fails with
  # the OS's reason.
  rt$write_checked <- function(path, write) {
    op <- options(warn = 1)  # a step's options(warn = 2) would turn it into another error
    on.exit(options(op))
    warned <- NULL
    tryCatch(withCallingHandlers(write(), warning = function(w) {
      if (!is.null(warned)) invokeRestart("muffleWarning")  # a close while unwinding
      warned <<- conditionMessage(w)
      stop(structure(class = c("mf_write_failed", "error", "condition"),
                     list(message = warned, call = NULL)))
    }), mf_write_failed = function(e) NULL)
    if (is.null(warned)) return(invisible(NULL))
    cause <- rt$os_cause(dirname(path))
    unlink(path)
    stop(sprintf("write %s: %s", path, if (is.null(cause)) warned else cause), call. = FALSE)
  }
  # The OS's reason a write in dir fails, which R's "problem writing to
  # connection" does not give: a one-byte probe file reports it when it is
  # opened or flushed (NULL if the probe is written).
  rt$os_cause <- function(dir) {
    probe <- tempfile(".probe-", tmpdir = dir)
    on.exit(unlink(probe))
    msg <- NULL
    withCallingHandlers(tryCatch({
      con <- file(probe, "wb")
      writeBin(as.raw(0L), con)
      close(con)
    }, error = function(e) NULL), warning = function(w) {
      if (is.null(msg)) msg <<- conditionMessage(w)
      invokeRestart("muffleWarning")
    })
    # "cannot open file '...': Read-only file system",
    # "Problem closing connection:  No space left on device"
    if (is.null(msg)) NULL else sub("^.*:\\s+", "", msg)
  }
  written <- character()
  for (nm in .subset2(self, ".assigned")) {
    why <- rt$unstorable(get(nm, envir = .subset2(self, ".values")))
    if (!is.null(why)) {
      fail(sprintf(paste0("artifact '%s' holds %s, which does not survive the end of the step: ",
                          "store the data it points to instead (e.g. read the connection's ",
                          "contents)"), nm, why))
    }
    # The engine hashes <name>.mpk while it grows (engine/datastore/
    # prehash.go): each is written once, front to back, and never rewritten.
    path <- file.path(spec$output_dir, paste0(nm, ".mpk"))
    tryCatch(rt$write_checked(path, function() rt$mp_write(get(nm, envir = .subset2(self, ".values")), path)),
             error = function(e) fail(sprintf("cannot store artifact '%s': %s", nm, conditionMessage(e))))
    written <- c(written, nm)
  }
  path <- file.path(spec$output_dir, "_result.mpk")
  tryCatch(rt$write_checked(path, function() {
    rt$mp_write_plain(list(artifacts = as.list(written), merged = rt$merged,
                           foreach_count = foreach_count), path)
  }), error = function(e) fail(sprintf("cannot store the task's result: %s", conditionMessage(e))))
  invisible(NULL)
  }

  # Sourced by zygote.R: hand it the runtime; else run the task of the spec.
  if (basename(script) == "zygote.R") {
    list(load_code = load_code, run_task = run_task)
  } else {
    run_task(commandArgs(trailingOnly = TRUE)[1L])
  }
})
