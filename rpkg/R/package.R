# The run's code package (Metaflow's --package-suffixes): the files under the
# flow file's folder whose names end with one of the suffixes travel with the
# run, and every AWS Batch task finds them at the same relative paths in its
# working directory (read.csv("./movies.csv") works there as it does locally).
# The engine validates the paths again, stores each distinct content once as
# a blob of the flow and records the run's manifest (_package.json).

# Metaflow's DEFAULT_PACKAGE_SUFFIXES (metaflow/metaflow_config.py).
metaflow_default_suffixes <- ".py,.R,.RDS"

# The most a code package may hold, in bytes (the engine refuses more too).
package_max_bytes <- 100 * 2^20

#' Parse code package suffixes
#'
#' Accepts what Metaflow and its R package accept: one string with
#' comma-separated suffixes (\code{".R,.csv"}, also with a trailing comma or
#' spaces) or a character vector (\code{c(".R", ".csv")}), or a mix. A suffix
#' given without its leading dot gets one (\code{"R,.csv"} is
#' \code{".R,.csv"}): Metaflow matches the text as given, so its \code{"csv"}
#' would also take \code{"mycsv"}; here it takes \code{"x.csv"} (and a file
#' named exactly \code{"csv"}).
#'
#' @param x character, or NULL.
#' @return the suffixes, each starting with ".", without duplicates (compared
#'   ignoring case); \code{character(0)} for NULL or nothing.
#' @noRd
parse_package_suffixes <- function(x) {
  if (is.null(x)) return(character(0))
  if (!is.character(x) || anyNA(x)) {
    stop("package suffixes must be text, e.g. \".R,.csv\" or c(\".R\", \".csv\")", call. = FALSE)
  }
  s <- trimws(unlist(strsplit(x, ",", fixed = TRUE)))
  s <- s[nzchar(s)]
  bad <- s[s == "." | grepl("[/\\\\]", s)]
  if (length(bad)) {
    stop(sprintf("invalid package suffix %s: a suffix ends file names, e.g. .csv (--package-suffixes=.R,.csv)",
                 encodeString(bad[1], quote = "\"")), call. = FALSE)
  }
  nodot <- !startsWith(s, ".")
  s[nodot] <- paste0(".", s[nodot])
  s[!duplicated(tolower(s))]
}

#' The suffixes a code package uses
#'
#' Metaflow's defaults (\code{METAFLOW_DEFAULT_PACKAGE_SUFFIXES} from the
#' environment or the Metaflow config file, else \code{.py,.R,.RDS}) plus the
#' given ones: like Metaflow, given suffixes add to the defaults.
#' @param suffixes see \code{parse_package_suffixes}.
#' @noRd
package_suffixes <- function(suffixes = NULL) {
  defaults <- mf_config("METAFLOW_DEFAULT_PACKAGE_SUFFIXES")
  if (is.null(defaults)) defaults <- metaflow_default_suffixes
  s <- c(parse_package_suffixes(defaults), parse_package_suffixes(suffixes))
  s[!duplicated(tolower(s))]
}

# Whether file names (not paths) end with one of the suffixes, ignoring case
# as Metaflow does; a name equal to a suffix without its dot matches too.
package_name_matches <- function(names, suffixes) {
  n <- tolower(names)
  hit <- logical(length(n))
  for (s in tolower(suffixes)) hit <- hit | endsWith(n, s) | n == substring(s, 2)
  hit
}

# The visible files under dir, as "/"-separated paths relative to it: hidden
# files and folders (.metaflow, .git, ...) are skipped; symbolic links are
# followed unless they lead back into a folder of their own branch (a cycle),
# as Metaflow's walk does, so a link to a sibling folder lists its files twice.
package_walk <- function(dir) {
  files <- character(0)
  queue <- list(list(rel = "", chain = character(0)))
  while (length(queue)) {
    item <- queue[[1]]
    queue <- queue[-1]
    full <- if (nzchar(item$rel)) file.path(dir, item$rel) else dir
    real <- normalizePath(full, mustWork = FALSE)
    if (real %in% item$chain) next
    chain <- c(item$chain, real)
    names <- list.files(full, all.files = FALSE, no.. = TRUE)
    names <- names[!startsWith(names, ".")]
    if (!length(names)) next
    paths <- if (nzchar(item$rel)) paste(item$rel, names, sep = "/") else names
    isdir <- dir.exists(file.path(dir, paths))
    files <- c(files, paths[!isdir])
    queue <- c(queue, lapply(paths[isdir], function(p) list(rel = p, chain = chain)))
  }
  files
}

# Sizes as the engine writes them: whole MB, else one decimal.
format_mb <- function(bytes) {
  mb <- bytes / 2^20
  ifelse(bytes %% 2^20 == 0, sprintf("%d MB", as.integer(mb)), sprintf("%.1f MB", mb))
}

#' Collect a run's code package
#'
#' Finds the files under \code{dir} (recursively; hidden files and folders
#' such as \code{.metaflow/} are skipped) whose names end with one of the
#' suffixes (Metaflow's defaults plus \code{suffixes}, see
#' \code{package_suffixes}), and reads them. A package over 100 MB fails
#' before anything runs, with one line naming its size, its largest files and
#' the option to change.
#'
#' @param dir the flow file's folder.
#' @param suffixes extra suffixes (\code{--package-suffixes} /
#'   \code{run(package_suffixes =)}), or NULL for the defaults only.
#' @return a list of \code{list(path = <"/"-separated path relative to dir>,
#'   content = <raw>)}, sorted by path (byte order), for
#'   \code{flow$package} of the RunRequest.
#' @noRd
collect_code_package <- function(dir, suffixes = NULL) {
  if (!is.character(dir) || length(dir) != 1 || is.na(dir) || !dir.exists(dir)) {
    stop(sprintf("the code package's folder %s does not exist",
                 encodeString(as.character(dir)[1], quote = "\"")), call. = FALSE)
  }
  suffixes <- package_suffixes(suffixes)
  paths <- package_walk(dir)
  paths <- paths[package_name_matches(basename(paths), suffixes)]
  full <- file.path(dir, paths)
  sizes <- file.size(full)
  keep <- !is.na(sizes) # dangling links
  paths <- paths[keep]
  full <- full[keep]
  sizes <- sizes[keep]
  utf8 <- enc2utf8(paths)
  if (!all(validUTF8(utf8))) {
    stop(sprintf("the code package file %s has a name that is not valid UTF-8: rename it",
                 encodeString(paths[!validUTF8(utf8)][1], quote = "\"")), call. = FALSE)
  }
  total <- sum(sizes)
  if (total > package_max_bytes) {
    big <- order(-sizes, method = "radix")[seq_len(min(3, length(sizes)))]
    stop(sprintf("the code package is %.1f MB, over the limit of %s: largest files %s; choose the files with --package-suffixes (run(package_suffixes = ...); now %s)",
                 ceiling(total / 2^20 * 10) / 10, format_mb(package_max_bytes),
                 paste0(utf8[big], " (", format_mb(sizes[big]), ")", collapse = ", "),
                 paste(suffixes, collapse = ",")), call. = FALSE)
  }
  ord <- order(utf8, method = "radix")
  lapply(ord, function(i) {
    list(path = utf8[[i]], content = readBin(full[[i]], "raw", n = max(sizes[[i]], 1)))
  })
}
