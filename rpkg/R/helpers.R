# Helpers of Metaflow's R package: versions, locations, the default image,
# a self-test and the tutorials.

#' The version of the metaflow R package
#' @return A string such as \code{"0.1.0"}.
#' @export
r_version <- function() as.character(utils::packageVersion("metaflow"))

#' Print the versions of Metaflow R, its engine and R
#'
#' @return The versions, invisibly (a named character vector).
#' @export
version_info <- function() {
  engine <- tryCatch({
    out <- suppressWarnings(system2(engine_binary(), "--version", stdout = TRUE, stderr = TRUE))
    sub("^.*version ", "", out[1])
  }, error = function(e) paste0("not found (", conditionMessage(e), ")"))
  v <- c(metaflow_r = r_version(), engine = engine, r = as.character(getRversion()))
  message(sprintf("Metaflow (R) %s", v[["metaflow_r"]]))
  message(sprintf("metaflow-engine %s", v[["engine"]]))
  message(sprintf("R %s", v[["r"]]))
  invisible(v)
}

#' Where metaflow is installed and where flows run
#'
#' @param flowRDS for compatibility with Metaflow R (the flow's serialized
#'   file there); here the flow file, if any.
#' @return A list: \code{package} (the installed package), \code{flow} (the
#'   normalized flow file, or the script Rscript runs), \code{wd} (the working
#'   directory), \code{engine} (the engine binary) and \code{datastore}
#'   (\code{\link{get_metadata}}).
#' @export
metaflow_location <- function(flowRDS = NULL) {
  flow <- if (!is.null(flowRDS)) flowRDS else script_path()
  list(
    package = system.file(package = "metaflow"),
    flow = if (is.null(flow)) NULL else suppressWarnings(normalizePath(flow)),
    wd = normalizePath(getwd()),
    engine = tryCatch(engine_binary(), error = function(e) NA_character_),
    datastore = get_metadata()
  )
}

# The flow file Rscript runs, or NULL.
script_path <- function() {
  file <- sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE))
  if (length(file)) file[1] else NULL
}

#' The default container image for AWS Batch
#'
#' Steps run on AWS Batch in this image unless \code{batch(image = )} or
#' \code{METAFLOW_BATCH_CONTAINER_IMAGE} names another: the Rocker image
#' of this R version, which has base R (all the task runtime needs).
#'
#' @return An image name such as \code{"rocker/r-ver:4.2.2"}.
#' @export
container_image <- function() {
  paste0("rocker/r-ver:", R.version$major, ".", R.version$minor)
}

#' Check that metaflow works here
#'
#' Runs a tiny flow (HelloWorldFlow) with the engine, in a temporary folder,
#' and says whether it worked.
#'
#' @return \code{TRUE} if the flow ran, else \code{FALSE} (invisibly).
#' @export
test <- function() {
  start <- function(self) print("Your Metaflow installation looks good!")
  # metaflow() makes a global variable of the flow: leave the user's as it was.
  genv <- globalenv()
  had <- exists("HelloWorldFlow", envir = genv, inherits = FALSE)
  prev <- if (had) get("HelloWorldFlow", envir = genv, inherits = FALSE)
  on.exit(if (had) assign("HelloWorldFlow", prev, envir = genv)
          else rm(list = "HelloWorldFlow", envir = genv), add = TRUE)
  flow <- metaflow("HelloWorldFlow") %>%
    step(step = "start", r_function = start, next_step = "end") %>%
    step(step = "end")
  dir <- tempfile("metaflow-test-")
  dir.create(dir)
  old <- setwd(dir)
  on.exit({
    setwd(old)
    unlink(dir, recursive = TRUE)
  }, add = TRUE)
  ok <- tryCatch({
    run_main(flow, list(), character(0), interactive = TRUE)
    TRUE
  }, error = function(e) {
    message("The metaflow test flow failed: ", conditionMessage(e))
    FALSE
  })
  if (ok) message("metaflow works: the test flow ran with ", engine_binary(), ".")
  invisible(ok)
}

#' Copy the tutorials into the working directory
#'
#' Copies the tutorials that come with the package into
#' \code{./tutorials} (as Metaflow R does), one folder per episode, each with a README
#' that says how to run it.
#'
#' @param dest where to copy them.
#' @return The folder, invisibly.
#' @export
pull_tutorials <- function(dest = "tutorials") {
  src <- system.file("tutorials", package = "metaflow")
  if (!nzchar(src)) stop("the metaflow package was installed without its tutorials", call. = FALSE)
  if (file.exists(dest)) {
    stop("'", dest, "' already exists: remove it or call pull_tutorials() in another folder",
         call. = FALSE)
  }
  dir.create(dest, recursive = TRUE)
  ok <- file.copy(list.files(src, full.names = TRUE), dest, recursive = TRUE)
  if (!all(ok)) stop("could not copy the tutorials into '", dest, "'", call. = FALSE)
  message("Tutorials copied to ", normalizePath(dest), ": see its README.md")
  invisible(dest)
}

#' Not needed here: Metaflow's Python installer
#'
#' Metaflow R needed Python's metaflow; this package runs flows with its own
#' engine (\code{metaflow-engine}), so there is nothing to install from R.
#'
#' @param ... ignored.
#' @return Nothing: always an error that says what to do instead.
#' @export
install_metaflow <- function(...) {
  stop("install_metaflow() is not needed: this metaflow runs flows with its Go engine, not ",
       "Python; install the engine with `make install` in the metaflow repository ",
       "(metaflow::test() checks the set-up)", call. = FALSE)
}

#' @rdname install_metaflow
#' @export
remove_metaflow_env <- function(...) {
  stop("remove_metaflow_env() has nothing to remove: this metaflow uses no Python ",
       "environment", call. = FALSE)
}
