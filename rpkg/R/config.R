# Metaflow's settings, read as Metaflow (and the engine, internal/mfconfig)
# reads them: the environment first, then $METAFLOW_HOME/config.json
# (config_$METAFLOW_PROFILE.json with a profile; METAFLOW_HOME defaults to
# ~/.metaflowconfig).

# Session state of the package: what set_metadata(), set_namespace() and the
# top-level --datastore option chose. NULL fields mean "the default".
mf_state <- new.env(parent = emptyenv())
mf_state$metadata <- NULL   # list(kind = "local"|"s3", root = <path or s3 url>)
mf_state$namespace_set <- FALSE
mf_state$namespace <- NULL

mf_config_file <- function() {
  home <- Sys.getenv("METAFLOW_HOME")
  if (!nzchar(home)) home <- file.path(path.expand("~"), ".metaflowconfig")
  profile <- Sys.getenv("METAFLOW_PROFILE")
  file.path(home, if (nzchar(profile)) paste0("config_", profile, ".json") else "config.json")
}

# The string values of a flat JSON object (Metaflow's config files are
# one), without a JSON package: other values are skipped.
read_flat_json <- function(path) {
  txt <- paste(readLines(path, warn = FALSE), collapse = "\n")
  str <- "\"((?:[^\"\\\\]|\\\\.)*)\""
  m <- gregexpr(paste0(str, "\\s*:\\s*", str), txt, perl = TRUE)
  pairs <- regmatches(txt, m)[[1]]
  out <- list()
  unq <- function(s) {
    s <- substr(s, 2, nchar(s) - 1)
    s <- gsub("\\\\\"", "\"", s)
    s <- gsub("\\\\/", "/", s)
    gsub("\\\\\\\\", "\\\\", s)
  }
  for (p in pairs) {
    kv <- regmatches(p, regexec(paste0("^", str, "\\s*:\\s*(", str, ")$"), p, perl = TRUE))[[1]]
    if (length(kv)) out[[kv[2]]] <- unq(kv[3])
  }
  out
}

#' A Metaflow setting: the environment, then the config file
#' @param name e.g. "METAFLOW_BATCH_JOB_QUEUE".
#' @return the value, or NULL when it is not set.
#' @noRd
mf_config <- function(name) {
  v <- Sys.getenv(name, unset = NA)
  if (!is.na(v)) return(if (nzchar(v)) v else NULL)
  path <- mf_config_file()
  if (!file.exists(path)) return(NULL)
  v <- tryCatch(read_flat_json(path)[[name]], error = function(e) NULL)
  if (is.null(v) || !nzchar(v)) NULL else v
}
