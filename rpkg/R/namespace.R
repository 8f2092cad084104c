# Namespaces and the metadata provider, with Metaflow's semantics: the
# default namespace is user:<username>; every run carries the system tag
# user:<name> (and its --tags), and the client sees only the objects that
# have the namespace among their tags. NULL is the global namespace.

#' Switch the namespace of the client
#'
#' The client API (\code{\link{flow_client}}, \code{\link{run_client}}, ...,
#' \code{\link{list_flows}}) sees only runs that carry the namespace's tag:
#' \code{"user:NAME"} for a user's runs, or any \code{--tag}.
#' \code{set_namespace(NULL)} sees everything. The setting lasts for the R
#' session.
#'
#' @param ns a tag such as \code{"user:alice"} or \code{"experiment_3"}, or
#'   \code{NULL} for the global namespace.
#' @return The namespace now in effect (printed at the console, as in Metaflow R).
#' @examples
#' \dontrun{
#' set_namespace("user:alice")
#' set_namespace(NULL)
#' set_default_namespace()
#' }
#' @export
set_namespace <- function(ns = NULL) {
  if (!is.null(ns)) check_string(ns, "namespace")
  mf_state$namespace_set <- TRUE
  mf_state$namespace <- ns
  # Visible, as Metaflow R's (it returned Python's namespace(), printed).
  get_namespace()
}

#' @describeIn set_namespace The namespace in effect (\code{NULL}: global).
#' @export
get_namespace <- function() {
  if (!isTRUE(mf_state$namespace_set)) return(default_namespace())
  mf_state$namespace
}

#' @describeIn set_namespace Go back to the default namespace,
#'   \code{"user:<username>"}.
#' @export
set_default_namespace <- function() {
  mf_state$namespace_set <- FALSE
  mf_state$namespace <- NULL
  get_namespace()
}

default_namespace <- function() paste0("user:", current_user())

#' Choose where the client reads runs from
#'
#' Metaflow's metadata provider. Here the metadata lives in the datastore, so
#' this selects the datastore the client API and \code{run()} use for the
#' rest of the session: \code{"local@/path/to/.metaflow"} (or a folder that
#' holds a \code{.metaflow} folder, or just a path) for a local datastore,
#' \code{"s3@s3://bucket/prefix"} (or \code{"s3://bucket/prefix"}) for the S3
#' datastore. The default comes from \code{METAFLOW_DEFAULT_DATASTORE},
#' \code{METAFLOW_DATASTORE_SYSROOT_LOCAL} and
#' \code{METAFLOW_DATASTORE_SYSROOT_S3} (environment or
#' \code{~/.metaflowconfig/config.json}).
#'
#' @param ms the provider, as above.
#' @return \code{get_metadata()}: a string such as
#'   \code{"local@/home/me/project/.metaflow"}; \code{set_metadata()} and
#'   \code{reset_default_metadata()} return it too.
#' @examples
#' \dontrun{
#' get_metadata()
#' set_metadata("local@/data/shared/.metaflow")
#' set_metadata("s3@s3://my-bucket/metaflow")
#' reset_default_metadata()
#' }
#' @export
set_metadata <- function(ms = NULL) {
  if (is.null(ms)) return(reset_default_metadata())
  check_string(ms, "metadata")
  mf_state$metadata <- parse_metadata(ms)
  get_metadata()
}

#' @rdname set_metadata
#' @export
get_metadata <- function() {
  d <- datastore_choice()
  if (d$kind == "s3") paste0("s3@", d$s3_root) else paste0("local@", d$local_root)
}

#' @rdname set_metadata
#' @export
reset_default_metadata <- function() {
  mf_state$metadata <- NULL
  get_metadata()
}

parse_metadata <- function(ms) {
  kind <- if (grepl("^[A-Za-z0-9_]+@", ms)) sub("@.*$", "", ms) else NULL
  info <- if (is.null(kind)) ms else sub("^[A-Za-z0-9_]+@", "", ms)
  if (is.null(kind)) kind <- if (grepl("^s3://", info)) "s3" else if (grepl("^https?://", info)) "service" else "local"
  switch(kind,
    local = {
      if (!nzchar(info)) stop("set_metadata(\"local@PATH\") needs a path", call. = FALSE)
      path <- normalizePath(path.expand(info), mustWork = FALSE)
      if (basename(path) != ".metaflow") path <- file.path(path, ".metaflow")
      list(kind = "local", local_root = path)
    },
    s3 = {
      if (!grepl("^s3://[^/]+", info)) {
        stop("invalid metadata '", ms, "': expected s3@s3://bucket/prefix", call. = FALSE)
      }
      list(kind = "s3", s3_root = sub("/+$", "", info))
    },
    service = stop("the Metaflow metadata service is not used here: runs' metadata is kept ",
                   "in the datastore; use local@PATH or s3@s3://bucket/prefix", call. = FALSE),
    stop("unknown metadata provider '", kind, "': use local@PATH or s3@s3://bucket/prefix",
         call. = FALSE))
}

# The local root (.metaflow folder; with S3, where the engine caches files):
# under METAFLOW_DATASTORE_SYSROOT_LOCAL if set, else, as Metaflow looks for
# it, the nearest .metaflow folder in the working directory or one of its
# parents (so a ~/.metaflow serves every project below it), else a new one
# in the working directory.
default_local_root <- function() {
  sysroot <- mf_config("METAFLOW_DATASTORE_SYSROOT_LOCAL")
  if (!is.null(sysroot)) return(normalizePath(file.path(sysroot, ".metaflow"), mustWork = FALSE))
  dir <- normalizePath(getwd(), mustWork = FALSE)
  repeat {
    cand <- file.path(dir, ".metaflow")
    if (dir.exists(cand)) return(cand)
    parent <- dirname(dir)
    if (parent == dir) break
    dir <- parent
  }
  normalizePath(file.path(getwd(), ".metaflow"), mustWork = FALSE)
}

#' The datastore in effect: set_metadata() or the settings
#' @return list(kind = "local"|"s3", local_root, s3_root, explicit)
#' @noRd
datastore_choice <- function() {
  m <- mf_state$metadata
  kind <- if (!is.null(m)) m$kind else {
    k <- mf_config("METAFLOW_DEFAULT_DATASTORE")
    if (is.null(k)) "local" else k
  }
  local_root <- if (!is.null(m) && m$kind == "local") m$local_root else default_local_root()
  s3_root <- if (!is.null(m) && m$kind == "s3") m$s3_root else mf_config("METAFLOW_DATASTORE_SYSROOT_S3")
  list(kind = kind, local_root = local_root, s3_root = if (is.null(s3_root)) "" else s3_root,
       explicit = !is.null(m))
}

# Root of the local datastore (or of the S3 datastore's local cache), shared
# by run() and the client API.
datastore_root <- function() datastore_choice()$local_root

# The environment an embedded engine needs to open the chosen datastore.
datastore_env <- function(d = datastore_choice()) {
  c(METAFLOW_DEFAULT_DATASTORE = d$kind,
    if (nzchar(d$s3_root)) c(METAFLOW_DATASTORE_SYSROOT_S3 = d$s3_root))
}
